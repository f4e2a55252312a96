"""Demo data for the RCSA register and the new-business review board (called by `rcsa.seed_rcsa`)."""

from __future__ import annotations

from sqlalchemy import func, select

from models import schema as S
from services.auth import User
from services.rcsa import add_risk, advance, decide, proposal, propose
from services.store import Store

DEMO_RISKS = (  # title, owner, likelihood, impact, controls
    ("Margin call not issued after a feed outage", "Head of Risk", 2, 5, "Stale-price alarm; manual call run"),
    ("Wrong-side order keyed by a dealer", "Head of Dealing", 4, 3, "Pre-trade side check; 4-eyes above 1m"),
    ("Settlement fail on CCASS cut-off", "Head of Operations", 3, 3, "Intraday settlement monitor"),
    ("Client data leak through e-mailed statements", "Compliance Officer", 2, 4, "Encrypted statements; DLP"),
    ("Concentrated collateral in one small cap", "Head of Risk", 4, 5, "Stock concentration limits; haircuts"),
    ("Trading system outage at the open", "Head of IT", 2, 5, "Hot standby; failover drill quarterly"),
    ("Unreconciled custodian position breaks", "Head of Operations", 3, 2, "Daily reconciliation; ageing"),
    ("Stale FX rate in margin valuation", "Head of Risk", 2, 3, "FX feed heartbeat; daily check"),
    ("Fat-finger quantity on a large order", "Head of Dealing", 3, 4, "Size prompts and rejects"),
    ("Late regulatory return (FRR)", "Financial Controller", 1, 4, "Reporting calendar; sign-off"),
    ("Key-person dependency in margin operations", "Head of Operations", 3, 2, "Cross-training; desk manual"),
    ("Unauthorised change to margin ratios", "Head of Risk", 1, 5, "Four-eyes change requests; audit chain"),
    ("Corporate action missed on a pledged stock", "Head of Operations", 2, 2, "Corporate-action feed review"),
    ("Phishing of a dealer's credentials", "Head of IT", 3, 3, "MFA; awareness training"),
    ("Client complaint on forced liquidation", "Compliance Officer", 4, 2, "Call notices logged; recorded lines"),
    ("Vendor price feed licence lapses", "Head of IT", 1, 2, "Contract calendar"),
    ("Duplicate order from a client app retry", "Head of Dealing", 2, 1, "Duplicate-order check"),
    ("Short sell without a borrow", "Compliance Officer", 1, 3, "Short-sell list; pre-trade check"),
    ("Error-account losses not escalated", "Financial Controller", 5, 1, "Monthly error report"),
    ("Disaster-recovery site not tested", "Head of IT", 5, 4, "Annual DR test (overdue)"),
    ("Cross-border tax withholding mis-applied", "Financial Controller", 1, 1, "Tax table review"),
)
DEMO_PROPOSALS = (  # title, description, steps taken: (who, text)
    ("Securities lending to third-party hedge funds",
     "Lend clients' pledged stock to two Cayman funds, 102% cash collateral, daily marking.",
     (("tom", "Fee income of about 3m a year on idle collateral; two funds asked for it."),
      ("sam", "Client consent clause exists in the margin agreement; SFO rehypothecation limits apply."),
      ("rita", "Under a 30% market fall the borrowers' collateral falls short and recall is slow; the "
               "stress run shows the shortfall landing on us."),
      ("cora", "Vetoed: counterparty and recall risk outweigh the fee; revisit with a tri-party agent."))),
    ("Stock Connect southbound margin financing",
     "Extend margin financing to clients' Shanghai / Shenzhen Connect holdings.",
     (("tom", "Clients hold 1.2bn of A-shares in cash accounts; competitors finance them."),
      ("sam", "Permitted under the Connect rules for eligible stocks; no short selling; KYC unchanged."))),
    ("Fractional US shares for cash clients",
     "Let cash clients buy US shares in fractions from 1 USD.",
     (("tom", "Younger clients want to buy Amazon or NVIDIA with small amounts; retail app feature."),)),
)


def seed(store: Store) -> int:
    """About twenty register risks across the grid and three proposals at different stages (one vetoed,
    with the newest stored stress run attached when there is one: seed the runs first). Does nothing
    when the register already has risks. On PostgreSQL the review steps are left to real logins (the
    owner cannot act in their names); the register and the proposals are seeded."""
    from services import risk_runs

    with store.begin() as conn:
        if conn.execute(select(func.count()).select_from(S.rcsa_risks)).scalar_one():
            return 0
    users = {"tom": User("tom", "Tom Ho", "trader"), "sam": User("sam", "Sam Wong", "supervisor"),
             "rita": User("rita", "Rita Chan", "risk_officer"), "cora": User("cora", "Cora Lee", "cro")}
    for title, owner, lk, im, controls in DEMO_RISKS:
        add_risk(store, users["rita"], title, owner, lk, im, controls)
    done = [r.id for r in risk_runs.runs(store, "stress", limit=20) if r.status == "done"]
    run_id = done[0] if done else None  # the morning's stress run, when the demo store has one
    for title, description, steps in DEMO_PROPOSALS:
        pid = propose(store, users[steps[0][0]], title, description)
        if store.kind != "sqlite":
            continue
        for login, note in steps:
            stage = proposal(store, pid).stage
            if stage == "committee":
                decide(store, users[login], pid, note.startswith("Approved"), note)
            else:
                advance(store, users[login], pid, stage, note, run_id if stage == "risk" else None)
    return len(DEMO_RISKS)

