"""A realistic, deterministic demo book for a seed (DESIGN.md `demo`).

Default ~3,000 accounts, 600 HK and US securities in three index levels and ~30,000 positions with
HKD/USD/CNH cash; ``clients=50_000`` gives ~1,000,000 positions. Holdings follow a Zipf-like
popularity, as at a real broker where a few blue chips are held by most clients. Cash is solved
per account so that a few percent sit in warning, call and force at the generated prices.
Everything is vectorised: 1M positions build in well under a second.
"""

from __future__ import annotations

import numpy as np

from models.book import ACCT_CASH, ACCT_INTRADAY, ACCT_MARGIN, DEFAULT_PARAMETERS, Book, ClientRatios

HK_NAMES = [
    ("700.HK", "Tencent Holdings", 380.0), ("5.HK", "HSBC Holdings", 68.0), ("9988.HK", "Alibaba Group", 82.0),
    ("1299.HK", "AIA Group", 58.0), ("388.HK", "HKEX", 300.0), ("941.HK", "China Mobile", 72.0),
    ("3690.HK", "Meituan", 120.0), ("2318.HK", "Ping An Insurance", 45.0), ("1810.HK", "Xiaomi", 18.0),
    ("16.HK", "Sun Hung Kai Properties", 80.0), ("1.HK", "CK Hutchison", 40.0), ("2.HK", "CLP Holdings", 64.0),
    ("3.HK", "HK & China Gas", 6.0), ("11.HK", "Hang Seng Bank", 95.0), ("27.HK", "Galaxy Entertainment", 35.0),
    ("1211.HK", "BYD Company", 260.0), ("883.HK", "CNOOC", 18.0), ("939.HK", "China Construction Bank", 5.6),
    ("1398.HK", "ICBC", 4.6), ("3988.HK", "Bank of China", 3.5), ("2388.HK", "BOC Hong Kong", 24.0),
    ("6.HK", "Power Assets", 47.0), ("12.HK", "Henderson Land", 24.0), ("17.HK", "New World Development", 9.0),
    ("66.HK", "MTR Corporation", 28.0), ("101.HK", "Hang Lung Properties", 8.0), ("175.HK", "Geely Auto", 13.0),
    ("267.HK", "CITIC", 9.0), ("288.HK", "WH Group", 5.5), ("386.HK", "Sinopec", 4.4),
]
US_NAMES = [
    ("AAPL.US", "Apple", 225.0), ("MSFT.US", "Microsoft", 420.0), ("NVDA.US", "NVIDIA", 130.0),
    ("AMZN.US", "Amazon", 185.0), ("GOOGL.US", "Alphabet", 165.0), ("META.US", "Meta Platforms", 520.0),
    ("TSLA.US", "Tesla", 240.0), ("JPM.US", "JPMorgan Chase", 210.0), ("V.US", "Visa", 280.0),
    ("BRK.B.US", "Berkshire Hathaway B", 450.0), ("JNJ.US", "Johnson & Johnson", 160.0),
    ("XOM.US", "Exxon Mobil", 115.0), ("WMT.US", "Walmart", 80.0), ("PG.US", "Procter & Gamble", 170.0),
    ("MA.US", "Mastercard", 470.0), ("HD.US", "Home Depot", 380.0), ("KO.US", "Coca-Cola", 70.0),
    ("PEP.US", "PepsiCo", 170.0), ("BAC.US", "Bank of America", 40.0), ("NFLX.US", "Netflix", 680.0),
]
SURNAMES = ["Chan", "Wong", "Lee", "Cheung", "Lau", "Ho", "Ng", "Leung", "Lam", "Tang", "Chow", "Yip",
            "Tsang", "Kwok", "Fung", "Mak", "Yeung", "Law", "Cheng", "Choi", "Poon", "Siu", "Lo", "Tam"]
GIVEN = ["Tai Man", "Siu Ming", "Ka Yan", "Wing Kei", "Chi Keung", "Mei Ling", "Kin Wah", "Hoi Yan",
         "Ka Ho", "Wai Lun", "Suk Fan", "Chun Kit", "Yuk Lan", "Man Kit", "Hiu Tung", "Kwok Wing"]


def default_positions(clients: int) -> int:
    """10 positions per account for a desk-sized book, rising to 20 for a 50,000-account one."""
    return int(clients * min(20, 10 + clients // 5000))


def make_demo_book(clients: int = 3000, seed: int = 7, positions: int | None = None,
                   securities: int | None = None, as_of: str = "2026-11-20T16:10:00+08:00") -> Book:
    rng = np.random.default_rng(seed)
    n_acct = int(clients)
    n_pos_target = int(positions if positions is not None else default_positions(n_acct))
    n_sec = int(securities if securities is not None else max(600, min(10_000, n_acct // 5)))
    currencies = ["HKD", "CNH", "USD"]
    fx = np.array([1.0, 1.08, 7.8])
    markets = ["HK", "US"]

    # ---- securities: 70% HK (a few RMB counters), 30% US; levels by popularity rank
    n_us = int(round(n_sec * 0.3))
    n_hk = n_sec - n_us
    codes: list[str] = []
    names: list[str] = []
    price: np.ndarray = np.empty(n_sec)
    taken = {c for c, _, _ in HK_NAMES}
    hk_numbers = (f"{k}.HK" for k in range(20, 100_000) if f"{k}.HK" not in taken)
    for i in range(n_hk):
        if i < len(HK_NAMES):
            c, nm, p = HK_NAMES[i]
        else:
            c, nm, p = next(hk_numbers), f"HK Listed Co {i}", float(rng.lognormal(2.0, 1.2))
        codes.append(c)
        names.append(nm)
        price[i] = p
    for j in range(n_us):
        if j < len(US_NAMES):
            c, nm, p = US_NAMES[j]
        else:
            a = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            c = a[j % 26] + a[(j // 26) % 26] + a[(j // 676) % 26]
            c, nm, p = f"{c}X.US", f"US Listed Corp {j}", float(rng.lognormal(3.8, 0.9))
        codes.append(c)
        names.append(nm)
        price[n_hk + j] = p
    price = np.round(np.clip(price, 0.05, 5000.0), 3).astype(np.float64)
    sec_market = np.r_[np.zeros(n_hk, np.int16), np.ones(n_us, np.int16)]
    sec_currency = np.where(sec_market == 1, 2, 0).astype(np.int16)
    rmb = np.arange(n_hk)[len(HK_NAMES):][::37][:12]
    sec_currency[rmb] = 1
    for i in rmb:
        names[i] = names[i] + " (RMB counter)"

    # popularity: blue chips first in each market, interleaved so both markets are held
    pop_rank = np.empty(n_sec)
    pop_rank[:n_hk] = np.arange(n_hk) * (n_sec / n_hk)
    pop_rank[n_hk:] = np.arange(n_us) * (n_sec / n_us) + 0.5
    weight = 1.0 / (1.0 + pop_rank) ** 0.9
    weight /= weight.sum()
    order = np.argsort(pop_rank)
    level = np.full(n_sec, 3, np.int8)
    level[order[: max(60, n_sec // 10)]] = 2
    level[order[: max(30, n_sec // 20)]] = 1
    level[:len(HK_NAMES)] = 1
    level[n_hk:n_hk + len(US_NAMES)] = 1

    long_im = np.where(level == 1, rng.choice([0.3, 0.35, 0.4], n_sec),
                       np.where(level == 2, rng.choice([0.5, 0.55, 0.6], n_sec),
                                rng.choice([0.7, 0.8, 0.9, np.nan], n_sec, p=[0.35, 0.3, 0.2, 0.15])))
    long_mm = np.round(long_im - 0.1, 4)
    shortable = (level <= 2) & (rng.random(n_sec) < 0.8)
    short_im = np.where(shortable, rng.choice([1.3, 1.4, 1.5], n_sec), np.nan)
    short_mm = np.where(shortable, short_im - 0.1, np.nan)
    intraday_im = np.where(level == 1, np.round(long_im * 0.5, 4), np.nan)
    intraday_mm = np.where(level == 1, np.round(long_mm * 0.5, 4), np.nan)
    haircut = np.where(level == 1, 0.15, np.where(level == 2, 0.2, rng.choice([0.3, 0.4, 0.5], n_sec)))
    suspended = np.zeros(n_sec, bool)
    suspended[order[-max(2, n_sec // 300):]] = True
    haircut[suspended] = 1.0
    lot = np.where(sec_market == 0, rng.choice([100, 200, 400, 500, 1000, 2000], n_sec), 1).astype(np.int32)
    lot[: len(HK_NAMES)] = [100, 400, 100, 200, 100, 500, 100, 500, 200, 500, 500, 500, 1000, 100, 1000,
                            500, 1000, 1000, 1000, 1000, 500, 500, 1000, 1000, 500, 1000, 1000, 1000, 500,
                            2000][: min(n_hk, len(HK_NAMES))]

    # ---- accounts
    acct_codes = [f"M{i + 1:06d}" for i in range(n_acct)]
    client_codes = [f"C{i + 1:06d}" for i in range(n_acct)]
    sn = rng.integers(0, len(SURNAMES), n_acct)
    gn = rng.integers(0, len(GIVEN), n_acct)
    client_names = [f"{SURNAMES[a]} {GIVEN[b]}" for a, b in zip(sn.tolist(), gn.tolist(), strict=True)]
    # every 25th client has no e-mail on file (a notice to them needs the address typed in)
    client_emails = ["" if i % 25 == 24 else f"{n.lower().replace(' ', '.')}.{c[1:]}@example.com"
                     for i, (n, c) in enumerate(zip(client_names, client_codes, strict=True))]
    acct_type = rng.choice([ACCT_MARGIN, ACCT_CASH, ACCT_INTRADAY], n_acct, p=[0.70, 0.22, 0.08]).astype(np.int8)
    for i in np.flatnonzero(acct_type == ACCT_CASH).tolist():
        acct_codes[i] = "C" + acct_codes[i][1:]
    for i in np.flatnonzero(acct_type == ACCT_INTRADAY).tolist():
        acct_codes[i] = "I" + acct_codes[i][1:]

    # ---- positions: per-account counts, Zipf-picked securities, de-duplicated
    per = np.maximum(1, rng.poisson(n_pos_target / n_acct, n_acct))
    pa = np.repeat(np.arange(n_acct, dtype=np.int32), per)
    ps = rng.choice(n_sec, pa.shape[0], p=weight).astype(np.int32)
    key = pa.astype(np.int64) * n_sec + ps
    key = np.unique(key)
    pa = (key // n_sec).astype(np.int32)
    ps = (key % n_sec).astype(np.int32)
    pxb = price * fx[sec_currency]
    target_mv = rng.lognormal(np.log(150_000), 1.0, pa.shape[0])
    lots = np.maximum(1, np.round(target_mv / (pxb[ps] * lot[ps])))
    qty = lots * lot[ps]
    short = (acct_type[pa] == ACCT_MARGIN) & shortable[ps] & (rng.random(pa.shape[0]) < 0.03)
    qty = np.where(short, -qty, qty).astype(np.float64)

    # ---- cash: solve per account for a target coverage so the status mix is realistic
    cash = np.zeros((n_acct, 3))
    fin = np.zeros(n_acct)
    book = Book(
        as_of=as_of, base_currency="HKD", currencies=currencies, fx=fx, sec_codes=codes, sec_names=names,
        sec_currency=sec_currency, markets=markets, sec_market=sec_market, price=price, level=level,
        haircut=haircut, suspended=suspended, lot_size=lot, long_im=long_im, long_mm=long_mm,
        short_im=short_im, short_mm=short_mm, intraday_im=intraday_im, intraday_mm=intraday_mm,
        acct_codes=acct_codes, client_codes=client_codes, client_names=client_names, acct_type=acct_type,
        financing_limit=fin, frozen=np.zeros(n_acct, bool), cash=cash, pos_acct=pa, pos_sec=ps, pos_qty=qty,
        parameters=dict(DEFAULT_PARAMETERS), client_emails=client_emails,
    )
    _add_groups_and_overrides(book, rng, weight)

    from services.margin import MarginEngine  # local: the engine resolves ratios exactly as live

    eng = MarginEngine(book)
    net, im, mm = eng.sums[0], eng.sums[2], eng.sums[3]
    fc = book.parameter("force_call_factor") * mm
    u = rng.random(n_acct)
    bucket = np.select([u < 0.86, u < 0.915, u < 0.96], [0, 1, 2], 3)
    v = rng.random(n_acct)
    safe_e = im * (1.05 + 1.5 * v) + np.where(acct_type == ACCT_CASH, 0.0, 0.0)
    target_e = np.select(
        [bucket == 0, bucket == 1, bucket == 2],
        [safe_e, mm + (im - mm) * (0.1 + 0.8 * v), fc + (mm - fc) * (0.1 + 0.8 * v)],
        fc * (0.4 + 0.5 * v))
    is_cash_acct = acct_type == ACCT_CASH
    # cash accounts: a credit balance, or (the call buckets) an unpaid purchase of 1–25% of holdings,
    # which puts E below MM = MV (call) or below FC = 0.8·MV (force)
    target_e = np.where(is_cash_acct & (bucket <= 1), im + np.abs(net) * 0.1 * v + 10_000, target_e)
    target_e = np.where(is_cash_acct & (bucket >= 2), net * (1.0 - (0.01 + 0.24 * v)), target_e)
    hkd = np.round(target_e - net, 2)
    # some accounts also hold USD / CNH cash (the HKD leg is adjusted so the total is unchanged)
    usd = np.where(rng.random(n_acct) < 0.15, np.round(rng.normal(0, 20_000, n_acct), 2), 0.0)
    cnh = np.where(rng.random(n_acct) < 0.05, np.round(rng.normal(0, 50_000, n_acct), 2), 0.0)
    cash[:, 2] = usd
    cash[:, 1] = cnh
    cash[:, 0] = np.round(hkd - usd * fx[2] - cnh * fx[1], 2)
    loan = np.maximum(0.0, -(cash @ fx))
    fin[:] = np.where(is_cash_acct, 0.0, np.ceil(np.maximum(loan * rng.uniform(1.05, 1.6, n_acct), 100_000)
                                                 / 50_000) * 50_000)
    over = (~is_cash_acct) & (loan > 0) & (rng.random(n_acct) < 0.02)
    fin[over] = np.floor(loan[over] * 0.9 / 50_000) * 50_000
    book.cash = cash
    book.financing_limit = fin
    return book


def _add_groups_and_overrides(book: Book, rng: np.random.Generator, weight: np.ndarray) -> None:
    n_sec, n_acct = book.n_sec, book.n_acct
    hk_l1 = np.flatnonzero((book.level == 1) & (book.sec_market == 0)).astype(np.int32)
    us_l1 = np.flatnonzero((book.level == 1) & (book.sec_market == 1)).astype(np.int32)
    tech = np.array([book.sec_index[c] for c in ("700.HK", "9988.HK", "3690.HK", "1810.HK", "AAPL.US",
                                                  "MSFT.US", "NVDA.US", "GOOGL.US", "META.US")
                     if c in book.sec_index], np.int32)
    book.stock_groups = {"HSI Core": hk_l1, "US Mega Cap": us_l1, "Technology": tech}
    margin_accts = np.flatnonzero(book.acct_type == ACCT_MARGIN)
    vip = np.sort(rng.choice(margin_accts, min(40, margin_accts.shape[0]), replace=False)).astype(np.int32)
    watch = np.sort(rng.choice(margin_accts, min(25, margin_accts.shape[0]), replace=False)).astype(np.int32)
    book.client_groups = {"VIP": vip, "Watch list": watch}
    # account-level overrides on concentrated holdings, group-level ones on stock groups
    n_acct_rows = min(60, book.n_pos)
    rows = rng.choice(book.n_pos, n_acct_rows, replace=False) if book.n_pos else np.zeros(0, int)
    keep = (book.pos_qty[rows] > 0) & (book.acct_type[book.pos_acct[rows]] != 0)
    rows = rows[keep]
    im_rows = np.round(np.minimum(1.0, np.nan_to_num(book.long_im[book.pos_sec[rows]], nan=0.9) + 0.15), 4)
    sk = [0] * rows.shape[0] + [1, 1]
    s = book.pos_acct[rows].tolist() + [0, 1]
    tk = [0] * rows.shape[0] + [1, 1]
    t = book.pos_sec[rows].tolist() + [0, 2]
    side = [0] * (rows.shape[0] + 2)
    im = im_rows.tolist() + [0.25, 0.6]
    mm = np.round(np.array(im) - 0.1, 4).tolist()
    book.client_ratios = ClientRatios(
        subject_kind=np.array(sk, np.int8), subject=np.array(s, np.int32), target_kind=np.array(tk, np.int8),
        target=np.array(t, np.int32), side=np.array(side, np.int8), im=np.array(im), mm=np.array(mm))
    del n_sec, n_acct, weight
