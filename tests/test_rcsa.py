"""RCSA register and the new-business review board (RISK_METHODS §7 "RCSA"), on SQLite and on
PostgreSQL where every review step is taken by that person's own database login."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from models import schema as S
from services import audit, auth, rcsa, risk_runs, stress
from services.auth import User
from services.demo import make_demo_book
from services.rcsa import RcsaError
from services.store import Store

ROLES = (("rita", "risk_officer"), ("sam", "supervisor"), ("cora", "cro"), ("tom", "trader"),
         ("olga", "operations"), ("abe", "auditor"), ("ivy", "risk_officer"), ("ned", "supervisor"))


@dataclass
class Env:
    owner: Store
    users: dict[str, User]
    stores: dict[str, Store]  # each user's own connection (PostgreSQL: their own login)

    def as_(self, name: str) -> tuple[Store, User]:
        return self.stores[name], self.users[name]


def _env(url: str, pg: bool) -> Iterator[Env]:
    owner = Store(url)
    owner.migrate()
    auth.ensure_permissions(owner)
    suffix = "_" + uuid.uuid4().hex[:6] if pg else ""
    users, stores = {}, {}
    for login, role in ROLES:
        auth.create_user(owner, login + suffix, role, login.title(), password=f"{login}-pw")
        users[login] = User(login + suffix, login.title(), role)
        stores[login] = (Store(url.replace("postgres@", f"{login + suffix}@"), password=f"{login}-pw")
                         if pg else owner)
    yield Env(owner, users, stores)
    for st in {id(s): s for s in stores.values()}.values():
        st.dispose()
    owner.dispose()


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated store with the users (argon2 hashing is slow), copied fresh for each test."""
    path = tmp_path_factory.mktemp("rcsa") / "template.db"
    for _ in _env(f"sqlite:///{path}", False):
        pass
    return path


def _local(template: Path, tmp_path: Path) -> Iterator[Env]:
    path = tmp_path / "store.db"
    shutil.copy(template, path)
    owner = Store(f"sqlite:///{path}")
    users = {login: User(login, login.title(), role) for login, role in ROLES}
    yield Env(owner, users, dict.fromkeys(users, owner))
    owner.dispose()


@pytest.fixture
def local(sqlite_template: Path, tmp_path: Path) -> Iterator[Env]:
    yield from _local(sqlite_template, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path) -> Iterator[Env]:
    if request.param == "sqlite":
        yield from _local(sqlite_template, tmp_path)
    else:
        yield from _env(request.getfixturevalue("pg_url"), True)


def _count(store: Store, table: object) -> int:
    with store.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def _step(p: rcsa.Proposal, name: str) -> dict:
    s = p.step(name)
    assert s is not None, f"no {name} step"
    return s


def _audit(store: Store, entity: str, key: str) -> list[tuple[str, str, str, str]]:
    a = S.audit_log
    with store.begin() as conn:
        return [tuple(r) for r in conn.execute(select(a.c.actor, a.c.action, a.c.before, a.c.after).where(
            a.c.entity == entity, a.c.entity_key == key).order_by(a.c.id))]


# ---------------------------------------------------------------------------------- register
@pytest.mark.parametrize(("likelihood", "impact", "want_score", "want_priority"), [
    (1, 1, 1, "Low"), (2, 2, 4, "Low"), (1, 4, 4, "Low"), (4, 1, 4, "Low"),  # Low ≤ 4
    (5, 1, 5, "Medium"), (1, 5, 5, "Medium"), (2, 3, 6, "Medium"), (3, 3, 9, "Medium"),  # Medium 5–9
    (2, 5, 10, "High"), (5, 2, 10, "High"), (3, 4, 12, "High"), (5, 5, 25, "High"),  # High ≥ 10
])
def test_score_and_priority_at_every_band_boundary(local: Env, likelihood: int, impact: int, want_score: int,
                                                   want_priority: str) -> None:
    st, rita = local.as_("rita")
    rid = rcsa.add_risk(st, rita, "Some risk", "Head of Risk", likelihood, impact)
    row = next(r for r in rcsa.risks(st) if r["id"] == rid)
    assert (row["score"], row["priority"]) == (want_score, want_priority)


def test_priority_bands_over_the_whole_grid() -> None:
    # 25 cells: scores 1..25 that occur; 8 and 7 do not sit on a band edge, 4/5 and 9/10 do
    pri = {(lk, im): rcsa.priority(rcsa.score(lk, im)) for lk in range(1, 6) for im in range(1, 6)}
    assert sum(p == "Low" for p in pri.values()) == 8  # 1·1..4, 2·1, 2·2, 3·1, 4·1
    assert sum(p == "Medium" for p in pri.values()) == 7  # 1·5, 2·3, 2·4, 3·2, 3·3, 4·2, 5·1
    assert sum(p == "High" for p in pri.values()) == 10
    assert rcsa.priority(4) == "Low" and rcsa.priority(5) == "Medium"
    assert rcsa.priority(9) == "Medium" and rcsa.priority(10) == "High"


@pytest.mark.parametrize(("field", "args", "message"), [
    ("likelihood", ("R", "O", 0, 3), "likelihood must be a whole number 1–5"),
    ("likelihood", ("R", "O", 6, 3), "likelihood must be a whole number 1–5"),
    ("impact", ("R", "O", 3, 2.5), "impact must be a whole number 1–5"),
    ("impact", ("R", "O", 3, "x"), "impact must be a whole number 1–5"),
    ("impact", ("R", "O", 3, True), "impact must be a whole number 1–5"),
    ("risk", ("  ", "O", 3, 3), "risk: name the risk"),
    ("owner", ("R", "", 3, 3), "owner: name the risk owner"),
    ("owner", ("R", "x" * 65, 3, 3), "owner: at most 64 characters"),
])
def test_bad_register_input_is_named_and_nothing_written(local: Env, field: str, args: tuple, message: str) -> None:
    st, rita = local.as_("rita")
    before = _count(st, S.audit_log)
    with pytest.raises(RcsaError, match=message):
        rcsa.add_risk(st, rita, *args)
    assert _count(st, S.rcsa_risks) == 0 and _count(st, S.audit_log) == before


def test_scale_accepts_typed_text() -> None:
    assert rcsa.check_scale("impact", " 4 ") == 4 and rcsa.check_scale("impact", 5.0) == 5


def test_heat_map_counts_and_cell_risks(local: Env) -> None:
    st, rita = local.as_("rita")
    cells = [(1, 1), (1, 1), (5, 5), (5, 4), (4, 5), (2, 3), (2, 3), (2, 3), (3, 2)]
    for n, (lk, im) in enumerate(cells):
        rcsa.add_risk(st, rita, f"risk {n}", "Owner", lk, im)
    rows = rcsa.risks(st)
    grid = rcsa.heat_map(rows)
    assert grid.shape == (5, 5) and grid.sum() == 9
    assert grid[0, 0] == 2 and grid[4, 4] == 1 and grid[4, 3] == 1 and grid[3, 4] == 1
    assert grid[1, 2] == 3 and grid[2, 1] == 1  # likelihood 2 × impact 3 is not likelihood 3 × impact 2
    assert grid[2, 2] == 0
    assert sorted(r["title"] for r in rcsa.in_cell(rows, 2, 3)) == ["risk 5", "risk 6", "risk 7"]
    assert rcsa.in_cell(rows, 3, 3) == []
    assert [r["score"] for r in rows][:3] == [25, 20, 20]  # highest first
    assert rcsa.heat_map([]).sum() == 0


def test_rescore_moves_the_risk_audits_and_refuses_a_stale_version(env: Env) -> None:
    st, rita = env.as_("rita")
    rid = rcsa.add_risk(st, rita, "Settlement fail", "Head of Operations", 2, 2, "Daily monitor")
    assert next(r for r in rcsa.risks(st) if r["id"] == rid)["priority"] == "Low"
    with pytest.raises(RcsaError, match="reason"):
        rcsa.rescore(st, rita, rid, 4, 3, "  ")
    v = rcsa.rescore(st, rita, rid, 4, 3, "two fails this month", "Daily monitor; CCASS alert", expected_version=1)
    assert v == 2
    row = next(r for r in rcsa.risks(st) if r["id"] == rid)
    assert (row["likelihood"], row["impact"], row["score"], row["priority"]) == (4, 3, 12, "High")
    assert row["controls"] == "Daily monitor; CCASS alert"
    grid = rcsa.heat_map(rcsa.risks(st))
    assert grid[1, 1] == 0 and grid[3, 2] == 1
    sam_store, sam = env.as_("sam")
    with pytest.raises(RcsaError, match="changed by someone else"):
        rcsa.rescore(sam_store, sam, rid, 1, 1, "stale screen", expected_version=1)
    trail = _audit(env.owner, "rcsa_risks", str(rid))
    assert [(a[0], a[1]) for a in trail] == [(rita.login, "create"), (rita.login, "rescore")]
    assert trail[1][2] == "L2 × I2 = 4 (Low)"
    assert trail[1][3].startswith("L4 × I3 = 12 (High)") and "reason: two fails this month" in trail[1][3]
    assert audit.verify(env.owner).ok


def test_register_is_refused_to_traders_and_auditors(local: Env) -> None:
    for name in ("tom", "abe"):
        st, u = local.as_(name)
        with pytest.raises(RcsaError, match="may not edit the risk register"):
            rcsa.add_risk(st, u, "R", "O", 3, 3)
    st, olga = local.as_("olga")
    rid = rcsa.add_risk(st, olga, "Corporate action missed", "Head of Operations", 2, 2)
    st, tom = local.as_("tom")
    with pytest.raises(RcsaError, match="may not edit"):
        rcsa.rescore(st, tom, rid, 5, 5, "x")


# ---------------------------------------------------------------------------------- review board
def _stress_run(env: Env) -> int:
    env.owner.save_book(make_demo_book(30, seed=3))
    sc = stress.load_scenario(stress.SCENARIO_DIR / "market_down_30.json")
    st, rita = env.as_("rita")
    return risk_runs.run_stress(st, rita, sc)


def _to_stage(env: Env, stage: str) -> int:
    st, tom = env.as_("tom")
    pid = rcsa.propose(st, tom, "Stock Connect margin financing", "finance A-shares")
    steps = [("tom", "rationale", "clients ask for it"), ("sam", "compliance", "allowed for eligible stocks"),
             ("rita", "risk", "within appetite")]
    for name, frm, note in steps:
        if frm == stage:
            break
        s, u = env.as_(name)
        rcsa.advance(s, u, pid, frm, note)
    assert rcsa.proposal(env.owner, pid).stage == stage
    return pid


def test_full_review_with_stress_run_every_step_audited(env: Env) -> None:
    run_id = _stress_run(env)
    st, tom = env.as_("tom")
    pid = rcsa.propose(st, tom, "Securities lending to hedge funds", "102% cash collateral")
    assert rcsa.advance(st, tom, pid, "rationale", "fee income on idle collateral") == "compliance"
    s, sam = env.as_("sam")
    assert rcsa.advance(s, sam, pid, "compliance", "consent clause exists") == "risk"
    s, rita = env.as_("rita")
    rcsa.attach_stress_run(s, rita, pid, run_id)
    assert rcsa.proposal(env.owner, pid).stress_run_id == run_id
    assert rcsa.advance(s, rita, pid, "risk", "shortfall under −30%") == "committee"
    s, cora = env.as_("cora")
    assert rcsa.decide(s, cora, pid, True, "approved with a 50m cap") == "approved"
    p = rcsa.proposal(env.owner, pid)
    assert p.stage == "approved" and p.stress_run_id == run_id
    assert [(x["step"], x["actor"], x["role"], x["outcome"]) for x in p.steps] == [
        ("rationale", tom.login, "trader", "done"), ("compliance", sam.login, "supervisor", "done"),
        ("risk", rita.login, "risk_officer", "done"), ("committee", cora.login, "cro", "approved")]
    assert _step(p, "risk")["stress_run_id"] == run_id and _step(p, "committee")["note"] == "approved with a 50m cap"
    assert all(isinstance(x["at"], datetime) and x["at"].tzinfo is not None for x in p.steps)
    with env.owner.begin() as conn:
        row = conn.execute(select(S.nb_proposals).where(S.nb_proposals.c.id == pid)).one()
    assert (row.rationale, row.compliance, row.risk_assessment) == (
        "fee income on idle collateral", "consent clause exists", "shortfall under −30%")
    assert row.decided_by == cora.login
    hist = rcsa.history(env.owner, pid)
    assert [(h["actor"], h["action"]) for h in hist] == [
        (tom.login, "propose"), (tom.login, "rationale_done"), (sam.login, "compliance_done"),
        (rita.login, "attach_stress_run"), (rita.login, "risk_done"), (cora.login, "approved")]
    assert f"stress run #{run_id}" in hist[4]["after"] and hist[5]["after"] == "approved: approved with a 50m cap"
    assert audit.verify(env.owner).ok


def test_stages_in_order_no_skipping_no_going_back(env: Env) -> None:
    pid = _to_stage(env, "rationale")
    s, rita = env.as_("rita")
    with pytest.raises(RcsaError, match="is at business rationale, not risk assessment"):
        rcsa.advance(s, rita, pid, "risk", "jumping ahead")
    s, cora = env.as_("cora")
    with pytest.raises(RcsaError, match="is at business rationale, not committee decision"):
        rcsa.decide(s, cora, pid, True, "approve early")
    s, tom = env.as_("tom")
    rcsa.advance(s, tom, pid, "rationale", "the case")
    with pytest.raises(RcsaError, match="is at compliance check, not business rationale"):
        rcsa.advance(s, tom, pid, "rationale", "again")  # no going back
    with pytest.raises(RcsaError, match="committee approves or vetoes"):
        rcsa.advance(s, cora, pid, "committee", "x")
    with pytest.raises(RcsaError, match="note: write the compliance check"):
        rcsa.advance(*env.as_("sam"), pid, "compliance", "  ")
    assert _count(env.owner, S.nb_proposal_steps) == 1
    assert [a[1] for a in _audit(env.owner, "nb_proposals", str(pid))] == ["propose", "rationale_done"]


@pytest.mark.parametrize(("stage", "who", "allowed"), [
    ("rationale", "rita", "Trader or Supervisor"),
    ("compliance", "tom", "Supervisor"),
    ("compliance", "rita", "Supervisor"),
    ("risk", "sam", "Risk officer or CRO"),
    ("risk", "olga", "Risk officer or CRO"),
    ("committee", "rita", "CRO"),
    ("committee", "sam", "CRO"),
])
def test_wrong_role_is_refused_and_nothing_written(local: Env, stage: str, who: str, allowed: str) -> None:
    pid = _to_stage(local, stage)
    n_audit, n_steps = _count(local.owner, S.audit_log), _count(local.owner, S.nb_proposal_steps)
    s, u = local.as_(who)
    with pytest.raises(RcsaError, match=f"may not take the .*it is for {allowed}$"):
        if stage == "committee":
            rcsa.decide(s, u, pid, True, "ok")
        else:
            rcsa.advance(s, u, pid, stage, "ok")
    assert rcsa.proposal(local.owner, pid).stage == stage
    assert (_count(local.owner, S.audit_log), _count(local.owner, S.nb_proposal_steps)) == (n_audit, n_steps)


def test_a_participant_cannot_check_their_own_proposal(local: Env) -> None:
    s, sam = local.as_("sam")
    pid = rcsa.propose(s, sam, "Fractional US shares")
    rcsa.advance(s, sam, pid, "rationale", "retail demand")
    with pytest.raises(RcsaError, match="already took part .* needs someone independent"):
        rcsa.advance(s, sam, pid, "compliance", "fine by me")
    s2, ned = local.as_("ned")  # another supervisor may
    assert rcsa.advance(s2, ned, pid, "compliance", "allowed") == "risk"


def test_veto_ends_the_review(env: Env) -> None:
    pid = _to_stage(env, "committee")
    s, cora = env.as_("cora")
    with pytest.raises(RcsaError, match="committee's reasons"):
        rcsa.decide(s, cora, pid, False, "")
    assert rcsa.decide(s, cora, pid, False, "counterparty risk too high") == "vetoed"
    p = rcsa.proposal(env.owner, pid)
    assert p.closed and p.stage == "vetoed" and _step(p, "committee")["outcome"] == "vetoed"
    assert rcsa.refusal(cora, p) == f"proposal {pid} is vetoed: the review is over"
    with pytest.raises(RcsaError, match="vetoed: the review is over"):
        rcsa.decide(s, cora, pid, True, "changed my mind")
    s, tom = env.as_("tom")
    with pytest.raises(RcsaError, match="vetoed: the review is over"):
        rcsa.advance(s, tom, pid, "rationale", "try again")
    s, ivy = env.as_("ivy")
    with pytest.raises(RcsaError, match="during the risk assessment"):
        rcsa.attach_stress_run(s, ivy, pid, None)
    assert [a[1] for a in _audit(env.owner, "nb_proposals", str(pid))][-1] == "vetoed"
    assert _count(env.owner, S.nb_proposal_steps) == 4


def test_only_finished_stress_runs_attach_and_only_at_the_risk_step(env: Env) -> None:
    run_id = _stress_run(env)
    with env.owner.begin() as conn:
        def add_run(kind: str, status: str) -> int:
            return int(conn.execute(insert(S.risk_runs).values(
                kind=kind, name="x", status=status, started_by="rita", started_at=datetime.now(UTC), inputs="{}")
                .returning(S.risk_runs.c.id)).scalar_one())
        failed, lcs_run = add_run("stress", "failed"), add_run("lcs", "done")
    pid = _to_stage(env, "compliance")
    s, sam = env.as_("sam")
    with pytest.raises(RcsaError, match="stress run: attached at the risk assessment"):
        rcsa.advance(s, sam, pid, "compliance", "ok", stress_run_id=run_id)
    rcsa.advance(s, sam, pid, "compliance", "ok")
    s, rita = env.as_("rita")
    with pytest.raises(RcsaError, match=f"#{failed} is failed, not done"):
        rcsa.attach_stress_run(s, rita, pid, failed)
    with pytest.raises(RcsaError, match=f"#{lcs_run} is not a stored stress run"):
        rcsa.advance(s, rita, pid, "risk", "see run", stress_run_id=lcs_run)
    with pytest.raises(RcsaError, match="#99999 is not a stored stress run"):
        rcsa.attach_stress_run(s, rita, pid, 99999)
    assert rcsa.proposal(env.owner, pid).stage == "risk" and rcsa.proposal(env.owner, pid).stress_run_id is None
    assert rcsa.advance(s, rita, pid, "risk", "see run", stress_run_id=run_id) == "committee"
    p = rcsa.proposal(env.owner, pid)
    assert p.stress_run_id == run_id and _step(p, "risk")["stress_run_id"] == run_id
    assert _step(p, "compliance")["stress_run_id"] is None


def test_who_may_tooltips() -> None:
    assert rcsa.who_may("committee") == "Committee decision: CRO, not someone who took an earlier step"
    assert rcsa.who_may("rationale") == "Business rationale: Trader or Supervisor"
    assert rcsa.who_may("vetoed") == "the proposal is closed"


def test_demo_seed_spreads_the_grid_and_stages(sqlite_url: str) -> None:
    st = Store(sqlite_url)
    st.migrate()
    st.save_book(make_demo_book(30, seed=3))
    sc = stress.load_scenario(stress.SCENARIO_DIR / "market_down_30.json")
    run_id = risk_runs.run_stress(st, User("rita", "Rita", "risk_officer"), sc)
    n = rcsa.seed_rcsa(st)
    rows = rcsa.risks(st)
    assert n == len(rows) >= 18
    assert {r["priority"] for r in rows} == {"High", "Medium", "Low"}
    grid = rcsa.heat_map(rows)
    assert (grid > 0).sum() >= 15 and grid[:, 4].sum() > 0 and grid[4, :].sum() > 0
    stages = sorted(p.stage for p in rcsa.proposals(st))
    assert stages == ["compliance", "risk", "vetoed"]
    vetoed = next(p for p in rcsa.proposals(st) if p.stage == "vetoed")
    assert vetoed.stress_run_id == run_id and len(vetoed.steps) == 4
    assert rcsa.seed_rcsa(st) == 0  # never twice
    st.dispose()
