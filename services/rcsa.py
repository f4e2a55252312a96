"""RCSA risk register and the new-business review board (RISK_METHODS §7 "RCSA", issue 7).

Register: score = likelihood (1–5) × impact (1–5); priority High ≥ 10, Medium 5–9, Low ≤ 4; the
5×5 heat map counts risks per (likelihood, impact) cell. Risks are operational records: written
directly (no four-eyes) and audited in the same transaction; a rescore names its reason and checks
the version the user saw, so two people rescoring the same risk cannot silently overwrite each other.

New-business review: a proposal passes business rationale → compliance check → risk assessment
(which may attach a finished stress run) → committee, which approves or vetoes it. Each step is taken
by a role allowed to take it (`STEP_ROLES`), only at the stage it belongs to (no skipping, no going
back: one `nb_proposal_steps` row per step, unique), by someone who took no earlier step of the same
proposal (the business cannot check its own proposal), and is audited in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, insert, select, update

from models import schema as S
from services import audit
from services.auth import User
from services.store import Store, _as_dt

# ---------------------------------------------------------------------- vocabulary
PRIORITIES = ("High", "Medium", "Low")
REGISTER_ROLES = ("risk_officer", "supervisor", "cro", "operations")  # may add and rescore risks
STEPS = ("rationale", "compliance", "risk", "committee")
STAGES = (*STEPS, "approved", "vetoed")
NEXT = {"rationale": "compliance", "compliance": "risk", "risk": "committee"}
STEP_ROLES: dict[str, tuple[str, ...]] = {  # who may take the step a proposal is at
    "rationale": ("trader", "supervisor"),  # the business proposes and argues the case
    "compliance": ("supervisor",),  # the licensed supervisor signs the compliance check
    "risk": ("risk_officer", "cro"),
    "committee": ("cro",),  # the CRO records the committee's decision
}
STEP_LABELS = {"rationale": "Business rationale", "compliance": "Compliance check", "risk": "Risk assessment",
               "committee": "Committee decision", "approved": "Approved", "vetoed": "Vetoed"}
STEP_FIELD = {"rationale": "rationale", "compliance": "compliance", "risk": "risk_assessment"}
TITLE_MAX, OWNER_MAX = 200, 64


class RcsaError(ValueError):
    """A register or review action that is not allowed; the message names the field or the rule."""


# ---------------------------------------------------------------------- register
def score(likelihood: int, impact: int) -> int:
    return int(likelihood) * int(impact)


def priority(s: int) -> str:
    """RISK_METHODS §7: High ≥ 10, Medium 5–9, Low ≤ 4."""
    return "High" if s >= 10 else "Medium" if s >= 5 else "Low"


def check_scale(name: str, v: Any) -> int:
    """A likelihood or impact as typed or picked: a whole number 1–5, else an error naming it."""
    if isinstance(v, bool):
        raise RcsaError(f"{name} must be a whole number 1–5, not {v!r}")
    if isinstance(v, str):
        v = v.strip()
        if not v.isdigit():
            raise RcsaError(f"{name} must be a whole number 1–5, not {v!r}")
        v = int(v)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int | np.integer) or not 1 <= int(v) <= 5:
        raise RcsaError(f"{name} must be a whole number 1–5, not {v!r}")
    return int(v)


def check_risk(title: str, owner: str, likelihood: Any, impact: Any) -> tuple[str, str, int, int]:
    """The register form's fields checked in order; the first bad one is named."""
    t, o = (title or "").strip(), (owner or "").strip()
    if not t:
        raise RcsaError("risk: name the risk")
    if len(t) > TITLE_MAX:
        raise RcsaError(f"risk: at most {TITLE_MAX} characters ({len(t)})")
    if not o:
        raise RcsaError("owner: name the risk owner")
    if len(o) > OWNER_MAX:
        raise RcsaError(f"owner: at most {OWNER_MAX} characters ({len(o)})")
    return t, o, check_scale("likelihood", likelihood), check_scale("impact", impact)


def _may_edit(user: User) -> None:
    if user.role not in REGISTER_ROLES:
        raise RcsaError(f"{user.login} ({user.role_label}) may not edit the risk register; "
                        f"it is for {_roles_text(REGISTER_ROLES)}")


def _scored(lk: int, im: int) -> str:
    return f"L{lk} × I{im} = {lk * im} ({priority(lk * im)})"


def add_risk(store: Store, user: User, title: str, owner: str, likelihood: Any, impact: Any,
             controls: str = "", description: str = "") -> int:
    """A new register entry; its id."""
    _may_edit(user)
    t, o, lk, im = check_risk(title, owner, likelihood, impact)
    with store.begin() as conn:
        rid = int(conn.execute(insert(S.rcsa_risks).values(
            title=t, owner=o, likelihood=lk, impact=im, controls=(controls or "").strip(),
            description=(description or "").strip(), created_by=user.login, updated_at=datetime.now(UTC))
            .returning(S.rcsa_risks.c.id)).scalar_one())
        audit.append(conn, store.kind, user.login, "create", "rcsa_risks", str(rid),
                     after=f"{t} · owner {o} · {_scored(lk, im)}")
    return rid


def rescore(store: Store, user: User, risk_id: int, likelihood: Any, impact: Any, reason: str,
            controls: str | None = None, expected_version: int | None = None) -> int:
    """Re-assess a risk (new likelihood / impact, optionally new controls) for ``reason``; the new
    version. Refused when someone changed the risk since ``expected_version`` was read."""
    _may_edit(user)
    lk, im = check_scale("likelihood", likelihood), check_scale("impact", impact)
    if not (reason or "").strip():
        raise RcsaError("reason: say why the risk is rescored")
    t = S.rcsa_risks
    with store.begin() as conn:
        r = conn.execute(select(t.c.likelihood, t.c.impact, t.c.controls, t.c.version)
                         .where(t.c.id == risk_id)).first()
        if r is None:
            raise RcsaError(f"risk {risk_id} does not exist")
        if expected_version is not None and int(r.version) != int(expected_version):
            raise RcsaError(f"risk {risk_id} was changed by someone else (version {r.version}, you saw "
                            f"{expected_version}): refresh and rescore again")
        values: dict[str, Any] = {"likelihood": lk, "impact": im, "updated_at": datetime.now(UTC),
                                  "version": int(r.version) + 1}
        if controls is not None:
            values["controls"] = controls.strip()
        done = conn.execute(update(t).where(t.c.id == risk_id, t.c.version == r.version).values(**values))
        if done.rowcount != 1:
            raise RcsaError(f"risk {risk_id} was changed by someone else meanwhile: refresh and rescore again")
        before, after = _scored(r.likelihood, r.impact), _scored(lk, im)
        if controls is not None and controls.strip() != r.controls:
            after += f" · controls: {controls.strip()}"
        audit.append(conn, store.kind, user.login, "rescore", "rcsa_risks", str(risk_id), before=before,
                     after=f"{after} · reason: {reason.strip()}")
    return int(values["version"])


def risks(store: Store) -> list[dict[str, Any]]:
    """The register with score and priority, highest score first (then oldest first)."""
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(S.rcsa_risks).order_by(S.rcsa_risks.c.id))]
    for r in rows:
        r["score"] = score(r["likelihood"], r["impact"])
        r["priority"] = priority(r["score"])
        r["updated_at"] = _as_dt(r["updated_at"])
    return sorted(rows, key=lambda r: (-r["score"], r["id"]))


def heat_map(rows: list[dict[str, Any]]) -> np.ndarray:
    """5×5 counts, ``grid[likelihood - 1, impact - 1]``."""
    grid = np.zeros((5, 5), np.int64)
    if rows:
        lk = np.fromiter((r["likelihood"] for r in rows), np.int64, len(rows)) - 1
        im = np.fromiter((r["impact"] for r in rows), np.int64, len(rows)) - 1
        np.add.at(grid, (lk, im), 1)
    return grid


def in_cell(rows: list[dict[str, Any]], likelihood: int, impact: int) -> list[dict[str, Any]]:
    """The risks of one heat-map cell."""
    return [r for r in rows if r["likelihood"] == likelihood and r["impact"] == impact]


# ---------------------------------------------------------------------- new-business review
@dataclass
class Proposal:
    id: int
    title: str
    description: str
    stage: str
    created_by: str
    created_at: datetime | None
    stress_run_id: int | None
    version: int
    steps: list[dict[str, Any]] = field(default_factory=list)  # completed steps, oldest first

    @property
    def stage_label(self) -> str:
        return STEP_LABELS.get(self.stage, self.stage)

    @property
    def closed(self) -> bool:
        return self.stage in ("approved", "vetoed")

    def step(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.steps if s["step"] == name), None)

    def participants(self) -> set[str]:
        return {self.created_by, *(s["actor"] for s in self.steps)}


def _roles_text(roles: tuple[str, ...]) -> str:
    from services.auth import ROLE_LABELS

    return " or ".join(ROLE_LABELS.get(r, r) for r in roles)


def who_may(stage: str) -> str:
    """Tooltip wording: who may take the step a proposal is at."""
    if stage not in STEP_ROLES:
        return "the proposal is closed"
    return f"{STEP_LABELS[stage]}: {_roles_text(STEP_ROLES[stage])}" + (
        "" if stage == "rationale" else ", not someone who took an earlier step")


def refusal(user: User, p: Proposal) -> str:
    """Why ``user`` may not take ``p``'s current step; empty when they may."""
    if p.closed:
        return f"proposal {p.id} is {p.stage}: the review is over"
    if user.role not in STEP_ROLES[p.stage]:
        return (f"{user.login} ({user.role_label}) may not take the {STEP_LABELS[p.stage].lower()}; "
                f"it is for {_roles_text(STEP_ROLES[p.stage])}")
    if p.stage != "rationale" and user.login in p.participants():
        return (f"{user.login} already took part in proposal {p.id}: the {STEP_LABELS[p.stage].lower()} "
                "needs someone independent")
    return ""


def propose(store: Store, user: User, title: str, description: str = "") -> int:
    """A new proposal, waiting for its business rationale; its id."""
    if user.role not in STEP_ROLES["rationale"]:
        raise RcsaError(f"{user.login} ({user.role_label}) may not propose new business; "
                        f"it is for {_roles_text(STEP_ROLES['rationale'])}")
    t = (title or "").strip()
    if not t:
        raise RcsaError("title: name the proposal (product or structure)")
    if len(t) > TITLE_MAX:
        raise RcsaError(f"title: at most {TITLE_MAX} characters ({len(t)})")
    with store.begin() as conn:
        pid = int(conn.execute(insert(S.nb_proposals).values(
            title=t, description=(description or "").strip(), stage="rationale", created_by=user.login,
            created_at=datetime.now(UTC)).returning(S.nb_proposals.c.id)).scalar_one())
        audit.append(conn, store.kind, user.login, "propose", "nb_proposals", str(pid), after=t)
    return pid


def _load(conn: Connection, proposal_id: int) -> Proposal:
    t, st = S.nb_proposals, S.nb_proposal_steps
    r = conn.execute(select(t).where(t.c.id == proposal_id)).first()
    if r is None:
        raise RcsaError(f"proposal {proposal_id} does not exist")
    steps = [dict(s._mapping) for s in conn.execute(select(st).where(st.c.proposal_id == proposal_id)
                                                     .order_by(st.c.id))]
    for s in steps:
        s["at"] = _as_dt(s["at"])
    return Proposal(int(r.id), r.title, r.description, r.stage, r.created_by, _as_dt(r.created_at),
                    r.stress_run_id, int(r.version), steps)


def _stress_run(conn: Connection, run_id: int) -> None:
    run = conn.execute(select(S.risk_runs.c.kind, S.risk_runs.c.status).where(S.risk_runs.c.id == run_id)).first()
    if run is None or run.kind != "stress":
        raise RcsaError(f"stress run: #{run_id} is not a stored stress run")
    if run.status != "done":
        raise RcsaError(f"stress run: #{run_id} is {run.status}, not done")


def attach_stress_run(store: Store, user: User, proposal_id: int, run_id: int | None) -> None:
    """During the risk assessment: attach a finished stress run (None detaches it)."""
    with store.begin() as conn:
        p = _load(conn, proposal_id)
        if p.stage != "risk":
            raise RcsaError(f"proposal {proposal_id} is at {p.stage_label.lower()}: a stress run is attached "
                            "during the risk assessment")
        why = refusal(user, p)
        if why:
            raise RcsaError(why)
        if run_id is not None:
            _stress_run(conn, int(run_id))
        t = S.nb_proposals
        conn.execute(update(t).where(t.c.id == proposal_id).values(stress_run_id=run_id, version=t.c.version + 1))
        audit.append(conn, store.kind, user.login, "attach_stress_run", "nb_proposals", str(proposal_id),
                     before="" if p.stress_run_id is None else f"stress run #{p.stress_run_id}",
                     after="" if run_id is None else f"stress run #{run_id}")


def advance(store: Store, user: User, proposal_id: int, from_stage: str, note: str,
            stress_run_id: int | None = None) -> str:
    """Complete the step the proposal is at (``from_stage``, as the user saw it) with its text; the new
    stage. The risk step may attach a finished stress run (else keeps the one attached before)."""
    if from_stage == "committee":
        raise RcsaError("the committee approves or vetoes")
    if from_stage not in NEXT:
        raise RcsaError(f"a proposal at {STEP_LABELS.get(from_stage, from_stage).lower()} has no next step")
    if stress_run_id is not None and from_stage != "risk":
        raise RcsaError("stress run: attached at the risk assessment")
    return _step(store, user, proposal_id, from_stage, "done", note, stress_run_id)


def decide(store: Store, user: User, proposal_id: int, approve: bool, note: str) -> str:
    """The committee's decision with its reasons: ``approved`` or ``vetoed`` (which ends the review)."""
    return _step(store, user, proposal_id, "committee", "approved" if approve else "vetoed", note, None)


def _step(store: Store, user: User, proposal_id: int, from_stage: str, outcome: str, note: str,
          stress_run_id: int | None) -> str:
    text_ = (note or "").strip()
    if not text_:
        raise RcsaError(f"note: write the {STEP_LABELS[from_stage].lower()}"
                        + (" (the committee's reasons)" if from_stage == "committee" else ""))
    t = S.nb_proposals
    now = datetime.now(UTC)
    with store.begin() as conn:
        p = _load(conn, proposal_id)
        if p.stage != from_stage:
            if p.closed:
                raise RcsaError(f"proposal {proposal_id} is {p.stage}: the review is over")
            raise RcsaError(f"proposal {proposal_id} is at {p.stage_label.lower()}, not "
                            f"{STEP_LABELS[from_stage].lower()}: steps are taken in order")
        why = refusal(user, p)
        if why:
            raise RcsaError(why)
        run_id = p.stress_run_id
        if stress_run_id is not None:
            _stress_run(conn, int(stress_run_id))
            run_id = int(stress_run_id)
        to = NEXT[from_stage] if outcome == "done" else outcome
        values: dict[str, Any] = {"stage": to, "version": p.version + 1, "stress_run_id": run_id}
        if from_stage in STEP_FIELD:
            values[STEP_FIELD[from_stage]] = text_
        if from_stage == "committee":
            values.update(decided_by=user.login, decided_at=now)
        done = conn.execute(update(t).where(t.c.id == proposal_id, t.c.stage == from_stage,
                                            t.c.version == p.version).values(**values))
        if done.rowcount != 1:
            raise RcsaError(f"proposal {proposal_id} was moved on by someone else meanwhile: refresh")
        conn.execute(insert(S.nb_proposal_steps).values(
            proposal_id=proposal_id, step=from_stage, outcome=outcome, note=text_, actor=user.login,
            role=user.role, at=now, stress_run_id=run_id if from_stage == "risk" else None))
        action = outcome if from_stage == "committee" else f"{from_stage}_done"
        audit.append(conn, store.kind, user.login, action, "nb_proposals", str(proposal_id), before=from_stage,
                     after=f"{to}: {text_}" + (f" (stress run #{run_id})" if from_stage == "risk" and run_id
                                                else ""))
    return to


def proposals(store: Store) -> list[Proposal]:
    """Every proposal with its completed steps, newest first."""
    t, st = S.nb_proposals, S.nb_proposal_steps
    with store.begin() as conn:
        rows = conn.execute(select(t).order_by(t.c.id.desc())).all()
        steps = [dict(s._mapping) for s in conn.execute(select(st).order_by(st.c.id))]
    by: dict[int, list[dict[str, Any]]] = {}
    for s in steps:
        s["at"] = _as_dt(s["at"])
        by.setdefault(int(s["proposal_id"]), []).append(s)
    return [Proposal(int(r.id), r.title, r.description, r.stage, r.created_by, _as_dt(r.created_at),
                     r.stress_run_id, int(r.version), by.get(int(r.id), [])) for r in rows]


def proposal(store: Store, proposal_id: int) -> Proposal:
    with store.begin() as conn:
        return _load(conn, proposal_id)


def history(store: Store, proposal_id: int) -> list[dict[str, Any]]:
    """The audit records of one proposal, oldest first: ts, actor, action, before, after."""
    a = S.audit_log
    with store.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            select(a.c.ts, a.c.actor, a.c.action, a.c.before, a.c.after).where(
                a.c.entity == "nb_proposals", a.c.entity_key == str(proposal_id)).order_by(a.c.id))]
    for r in rows:
        r["ts"] = _as_dt(r["ts"])
    return rows


def stage_counts(store: Store) -> dict[str, int]:
    t = S.nb_proposals
    with store.begin() as conn:
        return {r.stage: int(r.n) for r in conn.execute(select(t.c.stage, func.count().label("n"))
                                                       .group_by(t.c.stage))}


def seed_rcsa(store: Store) -> int:
    """The demo register and review board (`services.rcsa_demo`); how many risks it added."""
    from services.rcsa_demo import seed

    return seed(store)

__all__ = ["NEXT", "PRIORITIES", "REGISTER_ROLES", "STAGES", "STEPS", "STEP_LABELS", "STEP_ROLES", "Proposal",
           "RcsaError", "add_risk", "advance", "attach_stress_run", "check_risk", "check_scale", "decide",
           "heat_map", "history", "in_cell", "priority", "proposal", "proposals", "propose", "refusal", "rescore",
           "risks", "score", "seed_rcsa", "stage_counts", "who_may"]
