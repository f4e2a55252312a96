"""The demo store's incidents and their corrective actions: a realistic desk week.

A closed SEV-1 with its 5-whys, review and verified actions; a SEV-2 triaged but not responded to
(overdue); a SEV-3 being contained with a fishbone in progress; a SEV-4 recovering whose action is
completed but not yet verified (so Close says why not); a SEV-2 in review with an overdue action; a
fresh untriaged one; an older closed SEV-3. Timestamps are relative to ``now``, written as they would
have been (one timestamped event per transition) and audited once per incident as seeded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from models import schema as S
from services import audit
from services.incidents import RESPONSE_TIMES
from services.store import Store

H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)

# title, description, detected_by, systems, desks, detected (ago), severity, commander,
# [(state, after detection, actor, note)], containment, recovery, root cause (method, data), review,
# [(title, owner, due in days from now, status, verified_by)]
DEMO: tuple[tuple[Any, ...], ...] = (
    ("OCG gateway disconnect: HK orders rejected for 22 min",
     "Exchange gateway session dropped at 10:02; the failover did not take over; 214 client orders rejected.",
     "tom", "OCG gateway, order router", "HK equities", 12 * D, 1, "sam",
     [("triage", 3 * M, "rita", "SEV-1: respond immediately"), ("communicate", 6 * M, "sam", "desk heads, CRO paged"),
      ("contain", 12 * M, "sam", "manual order entry via broker terminal"),
      ("resolve", 24 * M, "sam", "session re-established on the standby line"),
      ("recover", 2 * H, "olga", "rejected orders re-entered with clients' consent"),
      ("review", 3 * D, "sam", "review meeting held"), ("closed", 9 * D, "cora", "actions verified")],
     "Orders routed through the broker terminal; clients told by the dealing desk.",
     "Standby line primary; 214 orders re-entered, 3 clients compensated (see loss event).",
     ("five_whys", {"problem": "Orders rejected for 22 minutes",
                    "whys": ["The gateway session dropped", "The primary line flapped",
                             "The failover needed a manual switch", "The auto-failover flag was off after the upgrade",
                             "The upgrade runbook did not re-check the flag"],
                    "root_cause": "Upgrade runbook missing the failover check"}),
     "Detected in 2 min by the desk; failover gap was the cause. Runbook fixed, monthly failover drill added.",
     [("Add the failover flag check to the upgrade runbook", "olga", -8, "verified", "sam"),
      ("Monthly gateway failover drill", "rita", -5, "verified", "cora")]),
    ("US price feed stale for 40 names", "Vendor feed stopped ticking for NASDAQ names; margin uses last prices.",
     "rita", "Market data feed", "US equities, Margin", 40 * M, 2, None,
     [("triage", 4 * M, "rita", "SEV-2: respond within 15 min")], "", "", None, "", []),
    ("Margin-call notices batch failed to send", "The 08:30 notice batch stopped after 120 of 310 notices.",
     "olga", "Notice sender, e-mail relay", "Margin", 5 * H, 3, "rita",
     [("triage", 10 * M, "rita", "SEV-3: respond within 1 h"), ("communicate", 25 * M, "rita", "risk officers told"),
      ("contain", 40 * M, "rita", "remaining calls phoned by the desk")],
     "Desk phoned the 190 clients not notified; relay quota raised temporarily.", "",
     ("fishbone", {"problem": "Notice batch stopped", "branches": {
         "technology": ["Relay quota reached"], "process": ["No alert on a partial batch"]},
      "root_cause": "Relay quota too low for month-end volume"}), "",
     [("Alert when a notice batch stops part-way", "olga", 5, "in_progress", None)]),
    ("Client statement PDF shows the wrong date", "Statements for 02 Dec dated 01 Dec in the footer.",
     "olga", "Statement generator", "Operations", 2 * D, 4, "olga",
     [("triage", 1 * H, "olga", "SEV-4: respond within 4 h"), ("communicate", 2 * H, "olga", ""),
      ("contain", 3 * H, "olga", ""), ("resolve", 1 * D, "olga", "template fixed"),
      ("recover", 1 * D + 2 * H, "olga", "statements re-issued")],
     "Statements held.", "Corrected statements re-issued to 42 clients.", None, "",
     [("Add a date check to the statement template test", "olga", 3, "completed", None)]),
    ("Rights issue not applied to 14 accounts", "1-for-5 rights of 2388.HK missing in 14 margin accounts.",
     "rita", "Corporate actions, book", "HK equities, Margin", 6 * D, 2, "sam",
     [("triage", 8 * M, "sam", "SEV-2: respond within 15 min"), ("communicate", 12 * M, "sam", "CRO informed"),
      ("contain", 1 * H, "sam", ""), ("resolve", 1 * D, "olga", "entitlements booked"),
      ("recover", 2 * D, "olga", ""), ("review", 4 * D, "sam", "")],
     "Affected accounts' margin recomputed by hand.", "Entitlements booked; margin recomputed.",
     ("five_whys", {"problem": "Rights not applied", "whys": ["The CA file was not loaded",
                                                             "The vendor file arrived after the batch"],
                    "root_cause": "No check that the CA file arrived before the batch"}), "",
     [("Block the CA batch until the vendor file has arrived", "olga", -3, "open", None)]),
    ("Custodian MT535 file arrived late", "Daily custody statement not received by 07:00.",
     "olga", "Custodian SWIFT", "Operations", 5 * M, None, None, [], "", "", None, "", []),
    ("Trade blotter export empty for one desk", "The 18:00 blotter for the US desk had no rows.",
     "rita", "Reporting", "US equities", 30 * D, 3, "rita",
     [("triage", 20 * M, "rita", "SEV-3: respond within 1 h"), ("communicate", 30 * M, "rita", ""),
      ("contain", 50 * M, "rita", ""), ("resolve", 3 * H, "rita", "desk code mapping fixed"),
      ("recover", 4 * H, "rita", ""), ("closed", 2 * D, "sam", "")],
     "Blotter produced by hand.", "Export re-run.", None, "", []),
)


def seed_incidents(store: Store, now: datetime | None = None) -> int:
    """The demo incidents (only into a store without any); how many were written."""
    now = now or datetime.now(UTC)
    t = S.incidents
    with store.begin() as conn:
        if conn.execute(select(func.count()).select_from(t)).scalar():
            return 0
        for (title, desc, by, systems, desks, ago, sev, commander, steps, containment, recovery, rc, review,
             acts) in DEMO:
            detected = now - ago
            times = {state: detected + after for state, after, _a, _n in steps}
            responded = next((detected + after for state, after, _a, _n in steps if state == "communicate"), None)
            state = steps[-1][0] if steps else "detect"
            inc_id = int(conn.execute(insert(t).values(
                title=title, description=desc, detected_by=by, detected_at=detected, systems=systems, desks=desks,
                severity=sev, state=state, commander=commander, containment=containment, recovery=recovery,
                root_cause_method=rc[0] if rc else None, root_cause=json.dumps(rc[1]) if rc else "{}",
                review=review, created_by=by, closed_at=times.get("closed"), triaged_at=times.get("triage"),
                response_due_at=detected + RESPONSE_TIMES[sev] if sev else None, responded_at=responded,
                reviewed_by=commander if review else None, reviewed_at=times.get("review") if review else None,
            ).returning(t.c.id)).scalar_one())
            events = [{"incident_id": inc_id, "ts": detected, "state": "detect", "actor": by,
                       "note": f"logged; detected by {by}"}]
            events += [{"incident_id": inc_id, "ts": detected + after, "state": s, "actor": a, "note": n}
                       for s, after, a, n in steps]
            if commander:
                events.append({"incident_id": inc_id, "ts": times.get("triage", detected) + M, "state": "triage",
                               "actor": steps[0][2], "note": f"commander: {commander}"})
            for a_title, owner, due_in, status, verifier in acts:
                created = times.get("contain", detected + H)
                done = status in ("completed", "verified")
                aid = int(conn.execute(insert(S.corrective_actions).values(
                    source_kind="incident", source_id=inc_id, title=a_title, owner=owner,
                    due_date=(now + due_in * D).date(), status=status, created_by=commander or by, created_at=created,
                    started_at=created + H if status != "open" else None,
                    completed_at=now + (due_in - 1) * D if done and due_in < 0 else (now - H if done else None),
                    verified_by=verifier, verified_at=now + due_in * D if verifier else None,
                    notes="").returning(S.corrective_actions.c.id)).scalar_one())
                events.append({"incident_id": inc_id, "ts": created, "state": "contain", "actor": commander or by,
                               "note": f"corrective action #{aid}: {a_title} (owner {owner})"})
            conn.execute(insert(S.incident_events), events)
            audit.append(conn, store.kind, "demo", "seed", "incidents", str(inc_id), after=title)
    return len(DEMO)
