"""Users, roles and permissions (issue 3).

PostgreSQL: a user is a database login (member of `riskdesk_app`); the database authenticates them
and knows who acts (`session_user`). SQLite (local, single desk): users log in to the app with an
argon2-hashed password. Both keep the user's RiskDesk role in `users`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, text, update

from models import schema as S
from services import audit
from services.errors import AuthError
from services.store import Store

ROLE_LABELS = {
    "trader": "Trader", "risk_officer": "Risk officer", "supervisor": "Supervisor", "cro": "CRO",
    "operations": "Operations", "auditor": "Auditor", "administrator": "Administrator",
}

# (role, action, kind): '*' is every kind of change
DEFAULT_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("trader", "view", "*"), ("trader", "request", "order_release"),
    ("trader", "request", "call_deadline"), ("trader", "request", "margin_call_work"),  # issue 8 call work
    ("trader", "request", "client_email"), ("operations", "request", "client_email"),  # a client's e-mail
    ("risk_officer", "view", "*"), ("risk_officer", "request", "*"),
    ("supervisor", "view", "*"), ("supervisor", "request", "*"), ("supervisor", "approve", "*"),
    ("cro", "view", "*"), ("cro", "request", "*"), ("cro", "approve", "*"),
    ("operations", "view", "*"), ("operations", "request", "incident"),
    ("operations", "request", "currency_exchange"),  # issue 8: manual exchanges and borrowing reminders
    ("auditor", "view", "*"), ("auditor", "view", "audit"),
    ("administrator", "view", "users"), ("administrator", "administer", "users"),
)


@dataclass(frozen=True)
class User:
    login: str
    display_name: str
    role: str

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def ensure_permissions(store: Store) -> None:
    with store.begin() as conn:
        have = {tuple(r) for r in conn.execute(select(S.role_permissions))}
        rows = [{"role": r, "action": a, "kind": k} for r, a, k in DEFAULT_PERMISSIONS if (r, a, k) not in have]
        if rows:
            conn.execute(insert(S.role_permissions), rows)


def create_user(store: Store, login: str, role: str, display_name: str = "", password: str | None = None,
                actor: str = "system") -> None:
    """Add a user (SQLite: with a password hash; PostgreSQL: also the login role, as the store owner)."""
    if role not in S.ROLES:
        raise AuthError(f"unknown role {role!r}: one of {', '.join(S.ROLES)}")
    if not login or not login.replace("_", "").replace(".", "").isalnum():
        raise AuthError(f"a login is letters, digits, '.' and '_' only, got {login!r}")
    with store.begin() as conn:
        if store.kind == "postgresql":
            exists = conn.execute(text("select 1 from pg_roles where rolname = :n"), {"n": login}).first()
            pw = (password or "").replace("'", "''")
            if not exists:
                conn.execute(text(f'create role "{login}" login password \'{pw}\' in role riskdesk_app'))
            else:
                conn.execute(text(f'grant riskdesk_app to "{login}"'))
        conn.execute(insert(S.users).values(
            login=login, display_name=display_name or login, role=role, active=True,
            password_hash=hash_password(password) if password and store.kind == "sqlite" else None,
            created_at=datetime.now(UTC)))
        audit.append(conn, store.kind, actor, "create_user", "users", login, "", role)


def get_user(store: Store, login: str) -> User | None:
    with store.begin() as conn:
        r = conn.execute(select(S.users).where(S.users.c.login == login, S.users.c.active)).first()
    return None if r is None else User(r.login, r.display_name, r.role)


def login_local(store: Store, login: str, password: str) -> User:
    """SQLite: check the password; every success and failure is audited."""
    with store.begin() as conn:
        r = conn.execute(select(S.users).where(S.users.c.login == login)).first()
    ok = False
    if r is not None and r.active and r.password_hash:
        from argon2.exceptions import VerificationError

        try:
            ok = bool(_hasher().verify(r.password_hash, password))
        except VerificationError:
            ok = False
    if not ok or r is None:
        audit.record(store, login or "?", "login_failed", "users", login)
        raise AuthError("Unknown user or wrong password.")
    audit.record(store, login, "login", "users", login)
    return User(r.login, r.display_name, r.role)


def login_database(store: Store) -> User:
    """PostgreSQL: the connection already authenticated the login; find its RiskDesk role."""
    with store.begin() as conn:
        me = conn.execute(text("select session_user")).scalar_one()
    user = get_user(store, me)
    if user is None:
        audit.record(store, me, "login_failed", "users", me, after="no RiskDesk role")
        raise AuthError(f"{me} is a database login but not a RiskDesk user; ask an administrator.")
    audit.record(store, me, "login", "users", me)
    return user


def permitted(store: Store, user: User, action: str, kind: str = "*") -> bool:
    with store.begin() as conn:
        return conn.execute(select(S.role_permissions.c.role).where(
            S.role_permissions.c.role == user.role, S.role_permissions.c.action == action,
            S.role_permissions.c.kind.in_([kind, "*"]))).first() is not None


def set_active(store: Store, admin: User, login: str, active: bool) -> None:
    if not permitted(store, admin, "administer", "users"):
        raise AuthError(f"{admin.login} may not administer users")
    with store.begin() as conn:
        conn.execute(update(S.users).where(S.users.c.login == login).values(active=active))
        audit.append(conn, store.kind, admin.login, "activate" if active else "deactivate", "users", login)
