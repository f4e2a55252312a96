"""The book: everything the margin, stress and LCS calculations need, as a struct of numpy arrays.

A `Book` is the one in-memory shape shared by the store loader, the portable JSON book file, the
demo generator, the feed simulator and every engine. Arrays are indexed by dense integer ids
(security index, account index, currency index); codes are kept in lists beside them with a
code → index dict. Nothing here knows about SQL or Qt.

Conventions (RISK_METHODS §1):
- ratios that are absent or expired are NaN in the security tables; the resolver turns them into 1.0.
- `acct_type`: 0 cash, 1 margin, 2 intraday financing.
- quantities are signed (short < 0); cash is per account per currency (negative = lent to the client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACCOUNT_TYPES = ("cash", "margin", "intraday")
INDEX_LEVELS = (1, 2, 3)  # an index's level (services/indices.py); level 3: no index
# a client's trading limits (services/trading_limits.py)
TRADING_LIMIT_TYPES = ("daily_buy", "daily_sell", "order_notional", "position_notional")
ACCT_CASH, ACCT_MARGIN, ACCT_INTRADAY = 0, 1, 2
# an address's local part (RFC 5322 dot-atom, ASCII) and its domain once in ASCII (IDNA: xn-- labels)
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,}|xn--[A-Za-z0-9-]+)")
SIDE_LONG, SIDE_SHORT = 0, 1

DEFAULT_PARAMETERS: dict[str, float] = {
    "force_call_factor": 0.8,
    "call_deadline_days": 3.0,
    "lcs_decline_a": 0.15,
    "lcs_decline_b": 0.25,
    "lcs_decline_c": 0.30,
    "lcs_decline_d": 0.50,
}


class BookError(ValueError):
    """A book file or book dict is malformed; the message names the path of the bad value."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass
class ClientRatios:
    """Client-specific ratio rows (RISK_METHODS §1 step 1), already filtered to active ones.

    subject_kind 0 = account (subject = account index), 1 = client group (subject = group index);
    target_kind 0 = security (target = security index), 1 = stock group (target = group index).
    """

    subject_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    subject: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    target_kind: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    side: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    im: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    mm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def __len__(self) -> int:
        return int(self.im.shape[0])


@dataclass
class Book:
    as_of: str
    base_currency: str
    currencies: list[str]
    fx: np.ndarray  # float64[n_cur], base units per one unit of currency
    # securities
    sec_codes: list[str]
    sec_names: list[str]
    sec_currency: np.ndarray  # int16 index into currencies
    markets: list[str]
    sec_market: np.ndarray  # int16 index into markets
    price: np.ndarray  # float64, in the security's currency
    level: np.ndarray  # int8: 1, 2 or 3
    haircut: np.ndarray  # float64 0..1 (FRR haircut)
    suspended: np.ndarray  # bool
    lot_size: np.ndarray  # int32
    long_im: np.ndarray
    long_mm: np.ndarray
    short_im: np.ndarray
    short_mm: np.ndarray
    intraday_im: np.ndarray
    intraday_mm: np.ndarray
    # accounts
    acct_codes: list[str]
    client_codes: list[str]
    client_names: list[str]
    acct_type: np.ndarray  # int8
    financing_limit: np.ndarray  # float64, base currency
    frozen: np.ndarray  # bool
    cash: np.ndarray  # float64[n_acct, n_cur]
    # positions
    pos_acct: np.ndarray  # int32
    pos_sec: np.ndarray  # int32
    pos_qty: np.ndarray  # float64 signed
    # groups and overrides
    stock_groups: dict[str, np.ndarray] = field(default_factory=dict)  # name -> security indices
    client_groups: dict[str, np.ndarray] = field(default_factory=dict)  # name -> account indices
    client_ratios: ClientRatios = field(default_factory=ClientRatios)
    parameters: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PARAMETERS))
    # the client's e-mail per account ("" none on file); empty when the source has none at all
    client_emails: list[str] = field(default_factory=list)
    # store primary keys of securities / accounts (None for a book not loaded from a store)
    sec_ids: np.ndarray | None = None
    acct_ids: np.ndarray | None = None
    _sec_index: dict[str, int] | None = field(default=None, repr=False)
    _acct_index: dict[str, int] | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- lookups
    @property
    def n_sec(self) -> int:
        return len(self.sec_codes)

    @property
    def n_acct(self) -> int:
        return len(self.acct_codes)

    @property
    def n_pos(self) -> int:
        return int(self.pos_qty.shape[0])

    @property
    def sec_index(self) -> dict[str, int]:
        if self._sec_index is None:
            self._sec_index = {c: i for i, c in enumerate(self.sec_codes)}
        return self._sec_index

    @property
    def acct_index(self) -> dict[str, int]:
        if self._acct_index is None:
            self._acct_index = {c: i for i, c in enumerate(self.acct_codes)}
        return self._acct_index

    def client_email(self, a: int) -> str:
        """The e-mail on file for account index ``a``'s client ("" when none)."""
        return self.client_emails[a] if a < len(self.client_emails) else ""

    def currency_index(self, code: str) -> int:
        return self.currencies.index(code)

    def parameter(self, name: str) -> float:
        return float(self.parameters.get(name, DEFAULT_PARAMETERS.get(name, 0.0)))

    def copy(self) -> Book:
        """A deep copy of every array (engines mutate prices, positions and cash in place)."""
        out = Book(**{k: _copy_value(v) for k, v in self.__dict__.items() if not k.startswith("_")})
        return out


def _copy_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, list):
        return list(v)
    if isinstance(v, dict):
        return {k: _copy_value(x) for k, x in v.items()}
    if isinstance(v, ClientRatios):
        return ClientRatios(**{k: x.copy() for k, x in v.__dict__.items()})
    return v


def empty_book(base_currency: str = "HKD") -> Book:
    f = np.zeros(0, np.float64)
    return Book(
        as_of="", base_currency=base_currency, currencies=[base_currency], fx=np.ones(1),
        sec_codes=[], sec_names=[], sec_currency=np.zeros(0, np.int16), markets=[],
        sec_market=np.zeros(0, np.int16), price=f.copy(), level=np.zeros(0, np.int8),
        haircut=f.copy(), suspended=np.zeros(0, bool), lot_size=np.zeros(0, np.int32),
        long_im=f.copy(), long_mm=f.copy(), short_im=f.copy(), short_mm=f.copy(),
        intraday_im=f.copy(), intraday_mm=f.copy(), acct_codes=[], client_codes=[], client_names=[],
        acct_type=np.zeros(0, np.int8), financing_limit=f.copy(), frozen=np.zeros(0, bool),
        cash=np.zeros((0, 1)), pos_acct=np.zeros(0, np.int32), pos_sec=np.zeros(0, np.int32),
        pos_qty=f.copy(),
    )


def email_address(text: str) -> str:
    """A bare address ``user@domain.tld`` in the form a mail header can carry (an international domain
    as its ``xn--`` labels, lower case), or "" when ``text`` is not one: a display name, a comment,
    a second address, a non-ASCII user part or more than 254 characters are not."""
    local, at, domain = (text or "").strip().rpartition("@")
    if not at or not _LOCAL.fullmatch(local):
        return ""
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return ""
    out = f"{local}@{domain}"
    return out if _DOMAIN.fullmatch(domain) and len(out) <= 254 else ""

