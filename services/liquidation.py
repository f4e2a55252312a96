"""Which holdings to sell first to restore IM, respecting lot sizes (drill-down, liquidation).

Selling long MV x of a holding with IM ratio r leaves equity unchanged (cash rises by x, MV falls
by x) and lowers IM by r·x, so the deficit IM − E shrinks by r·x. Holdings with the largest IM
ratio (the largest haircut in margin terms) restore IM fastest and are proposed first; ties go to
the larger market value. Quantities are rounded up to whole lots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.margin import MarginEngine


@dataclass
class SaleProposal:
    code: str
    qty: float  # shares to sell (whole lots, ≤ holding)
    price: float
    proceeds: float  # base currency
    im_release: float  # IM released by the sale, base currency


def restore_im_proposal(engine: MarginEngine, a: int) -> tuple[float, list[SaleProposal]]:
    """(deficit to cover, proposals in order); empty when the account already meets IM."""
    deficit = float(engine.im[a] - engine.equity[a])
    if deficit <= 0:
        return 0.0, []
    b = engine.book
    p = engine.positions_of(a)
    longs = np.flatnonzero((p["qty"] > 0) & (p["im_ratio"] > 0))
    if longs.size == 0:
        return deficit, []
    order = longs[np.lexsort((-p["mv"][longs], -p["im_ratio"][longs]))]
    out: list[SaleProposal] = []
    left = deficit
    for i in order.tolist():
        if left <= 0:
            break
        s = int(p["sec"][i])
        unit = float(engine.pxb[s])
        r = float(p["im_ratio"][i])
        lot = int(b.lot_size[s])
        need_mv = left / r
        qty = min(float(p["qty"][i]), float(np.ceil(need_mv / unit / lot) * lot))
        proceeds = qty * unit
        out.append(SaleProposal(b.sec_codes[s], qty, float(p["price"][i]), proceeds, proceeds * r))
        left -= proceeds * r
    return deficit, out
