"""Margin-ratio resolution (RISK_METHODS §1), vectorised over any number of (account, security, side).

First match wins:
1. an active client-specific ratio for the account, then for a client group containing it
   (within each, a security-specific row beats a stock-group row);
2. the security's active ratio: the intraday table during intraday sessions for intraday-financing
   accounts (longs), else the long table (q > 0) or the short-sell table (q < 0);
3. otherwise 1.0 for IM and MM (not marginable).
A cash account's long positions use 1.0 whatever the tables say.
"""

from __future__ import annotations

import numpy as np

from models.book import ACCT_CASH, ACCT_INTRADAY, Book

SOURCE_CLIENT, SOURCE_CLIENT_GROUP, SOURCE_STOCK, SOURCE_DEFAULT, SOURCE_CASH_ACCOUNT = 0, 1, 2, 3, 4
SOURCE_NAMES = ("client", "client group", "stock", "default", "cash account")


class ClientRatioIndex:
    """Client ratio rows expanded to (account, security, side) keys, best priority per key, sorted.

    Built once per book (or when client ratios change); lookups are one `searchsorted`.
    """

    def __init__(self, book: Book) -> None:
        self.n_sec = max(book.n_sec, 1)
        cr = book.client_ratios
        sg = list(book.stock_groups.values())
        cg = list(book.client_groups.values())
        keys: list[np.ndarray] = []
        prio: list[np.ndarray] = []
        im: list[np.ndarray] = []
        mm: list[np.ndarray] = []
        src: list[np.ndarray] = []
        for i in range(len(cr)):
            accts = (np.array([cr.subject[i]], np.int64) if cr.subject_kind[i] == 0
                     else cg[cr.subject[i]].astype(np.int64))
            secs = (np.array([cr.target[i]], np.int64) if cr.target_kind[i] == 0
                    else sg[cr.target[i]].astype(np.int64))
            k = ((accts[:, None] * self.n_sec + secs[None, :]) * 2 + int(cr.side[i])).ravel()
            keys.append(k)
            n = k.shape[0]
            prio.append(np.full(n, int(cr.subject_kind[i]) * 2 + int(cr.target_kind[i]), np.int8))
            im.append(np.full(n, cr.im[i]))
            mm.append(np.full(n, cr.mm[i]))
            src.append(np.full(n, SOURCE_CLIENT if cr.subject_kind[i] == 0 else SOURCE_CLIENT_GROUP, np.int8))
        if keys:
            k_all = np.concatenate(keys)
            p_all = np.concatenate(prio)
            order = np.lexsort((p_all, k_all))
            k_sorted = k_all[order]
            first = np.ones(k_sorted.shape[0], bool)
            first[1:] = k_sorted[1:] != k_sorted[:-1]
            sel = order[first]
            self.keys = k_all[sel]
            self.im = np.concatenate(im)[sel]
            self.mm = np.concatenate(mm)[sel]
            self.source = np.concatenate(src)[sel]
        else:
            self.keys = np.zeros(0, np.int64)
            self.im = self.mm = np.zeros(0)
            self.source = np.zeros(0, np.int8)

    def lookup(self, acct: np.ndarray, sec: np.ndarray, side: np.ndarray) -> np.ndarray:
        """Index into the rows for each query, or -1 where no client ratio applies."""
        if self.keys.shape[0] == 0:
            return np.full(acct.shape[0], -1, np.int64)
        q = (acct.astype(np.int64) * self.n_sec + sec.astype(np.int64)) * 2 + side.astype(np.int64)
        pos = np.searchsorted(self.keys, q)
        pos_c = np.minimum(pos, self.keys.shape[0] - 1)
        hit = self.keys[pos_c] == q
        return np.where(hit, pos_c, -1)


def resolve(book: Book, acct: np.ndarray, sec: np.ndarray, qty: np.ndarray,
            index: ClientRatioIndex | None = None, intraday_session: bool = False,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(im_ratio, mm_ratio, source) for each position; arrays of the positions' length."""
    if index is None:
        index = ClientRatioIndex(book)
    short = qty < 0
    side = short.astype(np.int8)
    im = np.where(short, book.short_im[sec], book.long_im[sec]) if sec.size else np.zeros(0)
    mm = np.where(short, book.short_mm[sec], book.long_mm[sec]) if sec.size else np.zeros(0)
    if intraday_session:
        intra = (book.acct_type[acct] == ACCT_INTRADAY) & ~short
        im = np.where(intra, book.intraday_im[sec], im)
        mm = np.where(intra, book.intraday_mm[sec], mm)
    source = np.where(np.isnan(im), SOURCE_DEFAULT, SOURCE_STOCK).astype(np.int8)
    im = np.where(np.isnan(im), 1.0, im)
    mm = np.where(np.isnan(mm), 1.0, mm)
    hit = index.lookup(acct, sec, side)
    has = hit >= 0
    if has.any():
        h = hit[has]
        im[has] = index.im[h]
        mm[has] = index.mm[h]
        source[has] = index.source[h]
    cash_long = (book.acct_type[acct] == ACCT_CASH) & ~short
    im[cash_long] = 1.0
    mm[cash_long] = 1.0
    source[cash_long] = SOURCE_CASH_ACCOUNT
    return im, mm, source
