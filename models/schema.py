"""The store's tables (SQLAlchemy Core). Alembic migrations in models/migrations bring a store here.

Core tables, not ORM classes: bulk paths use `executemany` and read straight into numpy, and the
same definitions serve SQLite and PostgreSQL. Every mutable risk parameter carries a `version`
(optimistic locking; four-eyes approvals re-check it).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _version() -> Column:
    return Column("version", Integer, nullable=False, server_default="1")


store_meta = Table(
    "store_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

company_parameters = Table(
    "company_parameters", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Float, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    _version(),
    Column("updated_at", DateTime(timezone=True)),
    Column("updated_by", String(64)),
)

currencies = Table(
    "currencies", metadata,
    Column("code", String(8), primary_key=True),
    Column("fx_rate", Float, nullable=False),  # base units per one unit
    Column("is_base", Boolean, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True)),
    CheckConstraint("fx_rate > 0", name="fx_positive"),
)

securities = Table(
    "securities", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(128), nullable=False, server_default=""),
    Column("market", String(8), nullable=False),
    Column("currency", String(8), ForeignKey("currencies.code"), nullable=False),
    Column("lot_size", Integer, nullable=False, server_default="1"),
    Column("suspended", Boolean, nullable=False, server_default="0"),
    Column("suspended_since", Date),
    Column("level", Integer, nullable=False, server_default="3"),  # derived from index membership
    Column("halted", Boolean, nullable=False, server_default="0"),  # trading halt (intraday), from the exchange
    Column("normal_qty", Float),  # pre-trade "normal order size"; none: default_normal_lots × lot_size
    _version(),
    CheckConstraint("lot_size >= 1", name="lot_positive"),
    CheckConstraint("level in (1, 2, 3)", name="level_range"),
)

prices = Table(
    "prices", metadata,
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
    Column("price", Float, nullable=False),
    Column("ts", Float, nullable=False),  # unix seconds of the last update
    CheckConstraint("price > 0", name="price_positive"),
)

haircuts = Table(
    "haircuts", metadata,
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
    Column("haircut", Float, nullable=False),
    Column("effective_from", DateTime(timezone=True)),
    _version(),
    CheckConstraint("haircut >= 0 and haircut <= 1", name="haircut_range"),
)

indices = Table(
    "indices", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(128), nullable=False),
    Column("market", String(8), nullable=False),
    Column("level", Integer, nullable=False),
    Column("preset", Boolean, nullable=False, server_default="0"),
    _version(),
    CheckConstraint("level in (1, 2, 3)", name="level_range"),
)

index_members = Table(
    "index_members", metadata,
    Column("index_id", Integer, ForeignKey("indices.id", ondelete="CASCADE"), primary_key=True),
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
)

clients = Table(
    "clients", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("name", String(128), nullable=False, server_default=""),
    Column("category", String(32), nullable=False, server_default="retail"),
    Column("email", String(254), nullable=False, server_default=""),  # where notices go; "" = none on file
    _version(),
)

accounts = Table(
    "accounts", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("client_id", Integer, ForeignKey("clients.id"), nullable=False, index=True),
    Column("type", String(16), nullable=False),
    Column("frozen", Boolean, nullable=False, server_default="0"),
    Column("restricted", Boolean, nullable=False, server_default="0"),
    Column("closed", Boolean, nullable=False, server_default="0"),
    _version(),
    CheckConstraint("type in ('cash', 'margin', 'intraday')", name="type_known"),
)

financing_limits = Table(
    "financing_limits", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("amount", Float, nullable=False),
    _version(),
    Column("updated_at", DateTime(timezone=True)),
    CheckConstraint("amount >= 0", name="amount_non_negative"),
)

cash_balances = Table(
    "cash_balances", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("currency", String(8), ForeignKey("currencies.code"), primary_key=True),
    Column("amount", Float, nullable=False),
)

positions = Table(
    "positions", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
    Column("qty", Float, nullable=False),
)

# ratio tables: 'long', 'short' (short-sell) and 'intraday'
stock_margin_ratios = Table(
    "stock_margin_ratios", metadata,
    Column("id", Integer, primary_key=True),
    Column("security_id", Integer, ForeignKey("securities.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("im_ratio", Float, nullable=False),
    Column("mm_ratio", Float, nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("effective_from", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    _version(),
    CheckConstraint("kind in ('long', 'short', 'intraday')", name="kind_known"),
    CheckConstraint("status in ('pending', 'active', 'revoked', 'expired')", name="status_known"),
    CheckConstraint("mm_ratio <= im_ratio", name="mm_le_im"),
    CheckConstraint("im_ratio >= 0 and mm_ratio >= 0", name="non_negative"),
    Index("ix_stock_margin_ratios_lookup", "security_id", "kind", "status"),
)

client_groups = Table(
    "client_groups", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    _version(),
)
client_group_members = Table(
    "client_group_members", metadata,
    Column("group_id", Integer, ForeignKey("client_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True),
)
stock_groups = Table(
    "stock_groups", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    _version(),
)
stock_group_members = Table(
    "stock_group_members", metadata,
    Column("group_id", Integer, ForeignKey("stock_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
)

client_margin_ratios = Table(
    "client_margin_ratios", metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id")),
    Column("client_group_id", Integer, ForeignKey("client_groups.id")),
    Column("security_id", Integer, ForeignKey("securities.id")),
    Column("stock_group_id", Integer, ForeignKey("stock_groups.id")),
    Column("side", String(8), nullable=False, server_default="long"),
    Column("im_ratio", Float, nullable=False),
    Column("mm_ratio", Float, nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("effective_from", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    _version(),
    CheckConstraint("(account_id is null) <> (client_group_id is null)", name="one_subject"),
    CheckConstraint("(security_id is null) <> (stock_group_id is null)", name="one_target"),
    CheckConstraint("side in ('long', 'short')", name="side_known"),
    CheckConstraint("status in ('pending', 'active', 'revoked', 'expired')", name="status_known"),
    CheckConstraint("mm_ratio <= im_ratio", name="mm_le_im"),
)

holidays = Table(
    "holidays", metadata,
    Column("day", Date, primary_key=True),
    Column("market", String(8), primary_key=True, server_default="HK"),
    Column("name", String(128), nullable=False, server_default=""),
)

margin_calls = Table(
    "margin_calls", metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False, index=True),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("trigger_status", String(16), nullable=False),
    Column("trigger_amount", Float, nullable=False),
    Column("deadline", Date, nullable=False),
    Column("state", String(16), nullable=False, server_default="open"),
    Column("current_status", String(16), nullable=False),
    Column("current_amount", Float, nullable=False),
    Column("force_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("close_reason", String(32)),
    Column("remark", Text),
    _version(),
    CheckConstraint("state in ('open', 'met', 'closed', 'liquidated')", name="state_known"),
)
# at most one open call per account
Index("uq_margin_calls_open_account", margin_calls.c.account_id, unique=True,
      sqlite_where=margin_calls.c.state == "open", postgresql_where=margin_calls.c.state == "open")

margin_call_events = Table(
    "margin_call_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", Integer, ForeignKey("margin_calls.id"), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),  # open, force, met, closed, liquidated, notice
    Column("status", String(16), nullable=False),
    Column("amount", Float, nullable=False),
    Column("equity", Float, nullable=False),
    Column("im", Float, nullable=False),
    Column("mm", Float, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
)

margin_call_snapshots = Table(
    "margin_call_snapshots", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", Integer, ForeignKey("margin_calls.id"), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),  # trigger, force, notice, eod, end
    Column("payload", Text, nullable=False),
    UniqueConstraint("call_id", "kind", "ts", name="uq_snapshot_call_kind_ts"),
)

PARAMETER_TABLES = ("company_parameters", "haircuts", "financing_limits", "stock_margin_ratios",
                    "client_margin_ratios", "client_groups", "stock_groups", "indices")

# ---------------------------------------------------------------- four-eyes, users, audit (issue 3)
ROLES = ("trader", "risk_officer", "supervisor", "cro", "operations", "auditor", "administrator")
ACTIONS = ("view", "request", "approve", "administer")

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("display_name", String(128), nullable=False, server_default=""),
    Column("role", String(32), nullable=False),
    Column("password_hash", Text),  # local (SQLite) stores only; PostgreSQL authenticates logins itself
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True)),
    _version(),
    CheckConstraint("role in ('trader', 'risk_officer', 'supervisor', 'cro', 'operations', 'auditor', "
                    "'administrator')", name="role_known"),
)

role_permissions = Table(
    "role_permissions", metadata,
    Column("role", String(32), primary_key=True),
    Column("action", String(16), primary_key=True),
    Column("kind", String(64), primary_key=True),  # a change kind, or '*'
)

approval_flows = Table(
    "approval_flows", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False),  # e.g. credit.credit_adjust
    Column("kind", String(64), nullable=False),
    Column("min_amount", Float),  # the request's amount range this flow covers (null = open)
    Column("max_amount", Float),
    Column("steps", Text, nullable=False),  # JSON list of roles, in order, e.g. ["supervisor", "cro"]
    _version(),
)

change_requests = Table(
    "change_requests", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("op", String(8), nullable=False, server_default="update"),
    Column("target_table", String(64), nullable=False),
    Column("target_key", Text, nullable=False),  # JSON object of key columns
    Column("before", Text, nullable=False, server_default="{}"),
    Column("after", Text, nullable=False, server_default="{}"),
    Column("target_version", Integer),
    Column("amount", Float),  # what the approval flow is chosen by (e.g. a limit increase)
    Column("reason", Text, nullable=False),
    Column("context", Text, nullable=False, server_default="{}"),  # shown to the checker
    Column("maker", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("flow_code", String(64), nullable=False, server_default="default"),
    Column("flow_steps", Text, nullable=False, server_default='["supervisor"]'),
    Column("step", Integer, nullable=False, server_default="0"),
    Column("checker", String(64)),
    Column("decided_at", DateTime(timezone=True)),
    Column("comment", Text),
    Column("workstation", String(128), nullable=False, server_default=""),
    _version(),
    CheckConstraint("status in ('pending', 'approved', 'rejected', 'cancelled', 'expired')",
                    name="status_known"),
    CheckConstraint("op in ('update', 'insert', 'delete')", name="op_known"),
    CheckConstraint("checker is null or checker <> maker", name="checker_not_maker"),
    Index("ix_change_requests_status", "status"),
)

change_request_approvals = Table(
    "change_request_approvals", metadata,
    Column("request_id", Integer, ForeignKey("change_requests.id"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("role", String(32), nullable=False),
    Column("checker", String(64), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("comment", Text),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("entity", String(64), nullable=False),
    Column("entity_key", Text, nullable=False, server_default=""),
    Column("before", Text, nullable=False, server_default=""),
    Column("after", Text, nullable=False, server_default=""),
    Column("request_id", Integer),
    Column("workstation", String(128), nullable=False, server_default=""),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_audit_log_ts", "ts"),
)

# ---------------------------------------------------------------- credit and lists (issue 4)
credit_groups = Table(
    "credit_groups", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("limit_amount", Float, nullable=False),
    _version(),
    CheckConstraint("limit_amount >= 0", name="limit_non_negative"),
)
credit_group_members = Table(
    "credit_group_members", metadata,
    Column("group_id", Integer, ForeignKey("credit_groups.id", ondelete="CASCADE"), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), primary_key=True, unique=True),
    _version(),
)

company_limits = Table(
    "company_limits", metadata,
    Column("dimension", String(32), primary_key=True),  # total_financing, per_client_max, ...
    Column("amount", Float, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    _version(),
    CheckConstraint("amount >= 0", name="amount_non_negative"),
)

blacklist = Table(
    "blacklist", metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id")),
    Column("client_id", Integer, ForeignKey("clients.id")),
    Column("tag", String(32), nullable=False),  # Credit | Asset Transfer
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("remark", Text, nullable=False, server_default=""),
    _version(),
    CheckConstraint("(account_id is null) <> (client_id is null)", name="one_subject"),
    CheckConstraint("tag in ('Credit', 'Asset Transfer')", name="tag_known"),
)

client_trading_limits = Table(
    "client_trading_limits", metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("limit_type", String(32), nullable=False),  # one of each type per client
    Column("amount", Float, nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("expire_on_call", Boolean, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False, server_default="active"),
    _version(),
    UniqueConstraint("account_id", "limit_type", name="uq_trading_limit_type"),
    CheckConstraint("amount >= 0", name="amount_non_negative"),
    CheckConstraint("status in ('active', 'invalid', 'expired')", name="status_known"),
)

# ---------------------------------------------------------------- short-sell status (issue 4)
short_sell_rules = Table(  # a risk parameter: changed through four-eyes
    "short_sell_rules", metadata,
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
    Column("status", String(16), nullable=False, server_default="sellable"),  # manual: sellable | prohibited
    Column("closure_threshold", Float),  # inventory below this → auto-prohibited
    Column("recovery_threshold", Float),  # inventory at or above this → sellable again
    _version(),
    CheckConstraint("status in ('sellable', 'prohibited')", name="status_known"),
    CheckConstraint("recovery_threshold is null or closure_threshold is null "
                    "or recovery_threshold >= closure_threshold", name="recovery_ge_closure"),
)
lending_inventory = Table(  # operational: moves with the lending desk's positions
    "lending_inventory", metadata,
    Column("security_id", Integer, ForeignKey("securities.id"), primary_key=True),
    Column("qty", Float, nullable=False),
    Column("auto_prohibited", Boolean, nullable=False, server_default="0"),
    Column("changed_at", DateTime(timezone=True)),
)
short_sell_history = Table(
    "short_sell_history", metadata,
    Column("id", Integer, primary_key=True),
    Column("security_id", Integer, ForeignKey("securities.id"), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("event", String(32), nullable=False),  # auto_prohibit, auto_recover
    Column("inventory", Float, nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
)

# ---------------------------------------------------------------- issue 4: index haircuts, sessions, batches
index_haircuts = Table(  # a risk parameter (four-eyes): the SFC test's haircut for an index's members
    "index_haircuts", metadata,
    Column("index_id", Integer, ForeignKey("indices.id"), primary_key=True),
    Column("haircut", Float, nullable=False),
    Column("effective_from", DateTime(timezone=True)),
    _version(),
    CheckConstraint("haircut >= 0 and haircut <= 1", name="haircut_range"),
)
trading_sessions = Table(  # a risk parameter (four-eyes): when intraday-financing ratios apply
    "trading_sessions", metadata,
    Column("id", Integer, primary_key=True),
    Column("market", String(8), nullable=False, server_default="HK"),
    Column("name", String(64), nullable=False),
    Column("start_hhmm", Integer, nullable=False),  # local exchange time, e.g. 930
    Column("end_hhmm", Integer, nullable=False),  # exclusive
    Column("intraday", Boolean, nullable=False, server_default="1"),  # intraday ratios apply inside
    Column("enabled", Boolean, nullable=False, server_default="1"),
    _version(),
    UniqueConstraint("market", "name", name="uq_trading_session_name"),
    CheckConstraint("start_hhmm >= 0 and end_hhmm <= 2400 and start_hhmm < end_hhmm", name="hours_order"),
)
limit_batches = Table(  # operational: a bulk financing-limit upload under review (not yet requests)
    "limit_batches", metadata,
    Column("id", Integer, primary_key=True),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("file_name", String(255), nullable=False, server_default=""),
    Column("file_sha256", String(64), nullable=False, server_default=""),
    Column("status", String(16), nullable=False, server_default="open"),  # open | submitted | discarded
    Column("reason", Text, nullable=False, server_default=""),
    Column("decided_at", DateTime(timezone=True)),
    CheckConstraint("status in ('open', 'submitted', 'discarded')", name="status_known"),
)
limit_batch_rows = Table(
    "limit_batch_rows", metadata,
    Column("id", Integer, primary_key=True),
    Column("batch_id", Integer, ForeignKey("limit_batches.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("row_no", Integer, nullable=False),  # the file's row number
    Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
    Column("amount", Float, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Column("removed", Boolean, nullable=False, server_default="0"),
    Column("request_id", Integer),  # set when the batch is submitted
    CheckConstraint("amount >= 0", name="amount_non_negative"),
)

# ---------------------------------------------------------------- issue 5: pre-trade limits and decisions
LIMIT_METRICS = ("order_qty", "order_notional", "daily_qty", "daily_notional", "position_notional",
                 "order_count", "price_deviation")
LIMIT_DIMENSIONS = ("company", "client", "security", "trader", "client_category", "multi")
LIMIT_ACTIONS = ("prompt", "approval", "reject")

limit_codes = Table(  # a risk parameter (four-eyes): the global catalogue
    "limit_codes", metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("metric", String(24), nullable=False),
    Column("dimension", String(24), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("action", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    _version(),
    CheckConstraint("metric in ('order_qty', 'order_notional', 'daily_qty', 'daily_notional', "
                    "'position_notional', 'order_count', 'price_deviation')", name="metric_known"),
    CheckConstraint("dimension in ('company', 'client', 'security', 'trader', 'client_category', 'multi')",
                    name="dimension_known"),
    CheckConstraint("action in ('prompt', 'approval', 'reject')", name="action_known"),
    CheckConstraint("threshold >= 0", name="threshold_non_negative"),
)
limit_rules = Table(  # a risk parameter (four-eyes): specific rules for a code
    "limit_rules", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("code", String(32), ForeignKey("limit_codes.code"), nullable=False, index=True),
    Column("account_id", Integer, ForeignKey("accounts.id")),
    Column("security_id", Integer, ForeignKey("securities.id")),
    Column("trader", String(64)),
    Column("client_category", String(32)),
    Column("threshold", Float, nullable=False),
    Column("action", String(16)),  # none: the code's action
    Column("active", Boolean, nullable=False, server_default="1"),
    _version(),
    CheckConstraint("threshold >= 0", name="threshold_non_negative"),
    CheckConstraint("action is null or action in ('prompt', 'approval', 'reject')", name="action_known"),
    CheckConstraint("account_id is not null or security_id is not null or trader is not null "
                    "or client_category is not null", name="has_subject"),
)
pretrade_decisions = Table(  # written by the check service; released only by an approved request
    "pretrade_decisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False, index=True),
    Column("trading_day", Date, nullable=False),
    Column("client_order_id", String(64), nullable=False, server_default=""),
    Column("account", String(32), nullable=False),
    Column("trader", String(64), nullable=False, server_default=""),
    Column("code", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("qty", Float, nullable=False),
    Column("price", Float, nullable=False),
    Column("notional", Float, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reasons", Text, nullable=False, server_default="[]"),  # JSON list of {rule, threshold, observed, message}
    Column("request_id", Integer),  # the order-release request of an 'approval' decision
    Column("released", Boolean, nullable=False, server_default="0"),
    _version(),
    # not an IN list: SQLite builds one into a temporary index again for every row inserted (4–5 µs)
    CheckConstraint("decision = 'accept' or decision = 'prompt' or decision = 'approval' or decision = 'reject'",
                    name="decision_known"),
)
pretrade_fills = Table(
    "pretrade_fills", metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("trading_day", Date, nullable=False, index=True),
    Column("client_order_id", String(64), nullable=False, server_default=""),
    Column("account", String(32), nullable=False),
    Column("trader", String(64), nullable=False, server_default=""),
    Column("code", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("qty", Float, nullable=False),
    Column("price", Float, nullable=False),
)

# ---------------------------------------------------------------- issue 6: stress scenarios, runs, exemptions
stress_scenarios = Table(  # every saved version of a scenario is kept (name, version)
    "stress_scenarios", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),  # the scenario file's JSON
    Column("saved_by", String(64), nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="0"),
    UniqueConstraint("name", "version", name="uq_stress_scenario_version"),
)
stress_exemptions = Table(  # a risk parameter (four-eyes): never shocked / left out of stress summaries
    "stress_exemptions", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # security | account
    Column("code", String(32), nullable=False),
    Column("remark", Text, nullable=False, server_default=""),
    _version(),
    UniqueConstraint("kind", "code", name="uq_stress_exemption"),
    CheckConstraint("kind in ('security', 'account')", name="kind_known"),
)
risk_runs = Table(  # a stress or LCS run with everything needed to reopen and re-run it
    "risk_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # stress | lcs
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # running | done | failed | cancelled
    Column("started_by", String(64), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("as_of", String(40), nullable=False, server_default=""),
    Column("inputs", Text, nullable=False),  # JSON: scenario / LC, RLC, parameters, custom ratios
    Column("book", LargeBinary),  # gzip of the book file (JSON) the run used
    Column("summary", Text, nullable=False, server_default="{}"),
    Column("results", LargeBinary),  # gzip JSON of the per-account / per-stock results
    Column("error", Text, nullable=False, server_default=""),
    Index("ix_risk_runs_kind_started", "kind", "started_at"),
    CheckConstraint("kind in ('stress', 'lcs')", name="kind_known"),
    CheckConstraint("status in ('running', 'done', 'failed', 'cancelled')", name="status_known"),
)

# ---------------------------------------------------------------- issue 7: operational risk
corrective_actions = Table(
    "corrective_actions", metadata,
    Column("id", Integer, primary_key=True),
    Column("source_kind", String(16), nullable=False),  # incident | trade_error | break | kri | audit | loss_event
    Column("source_id", Integer),
    Column("title", Text, nullable=False),
    Column("owner", String(64), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("notes", Text, nullable=False, server_default=""),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("verified_by", String(64)),
    Column("verified_at", DateTime(timezone=True)),
    _version(),
    # incidents and corrective actions (0010): when work on the action started
    Column("started_at", DateTime(timezone=True)),
    Index("ix_corrective_actions_source", "source_kind", "source_id"),
    CheckConstraint("status in ('open', 'in_progress', 'completed', 'verified')", name="status_known"),
    CheckConstraint("verified_by is null or verified_by <> owner", name="verifier_not_owner"),
)
incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("detected_by", String(64), nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("systems", Text, nullable=False, server_default=""),
    Column("desks", Text, nullable=False, server_default=""),
    Column("severity", Integer),  # 1..4 once triaged
    Column("state", String(16), nullable=False, server_default="detect"),
    Column("commander", String(64)),
    Column("containment", Text, nullable=False, server_default=""),
    Column("recovery", Text, nullable=False, server_default=""),
    Column("root_cause_method", String(16)),  # five_whys | fishbone
    Column("root_cause", Text, nullable=False, server_default="{}"),  # JSON
    Column("review", Text, nullable=False, server_default=""),  # post-incident review
    Column("created_by", String(64), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    _version(),
    # incidents and corrective actions (0010): the response clock and the post-incident review sign-off
    Column("triaged_at", DateTime(timezone=True)),
    Column("response_due_at", DateTime(timezone=True)),  # detected_at + the severity's response time
    Column("responded_at", DateTime(timezone=True)),  # left triage: escalation list told, commander named
    Column("reviewed_by", String(64)),
    Column("reviewed_at", DateTime(timezone=True)),
    CheckConstraint("severity is null or severity between 1 and 4", name="severity_range"),
    CheckConstraint("state in ('detect', 'triage', 'communicate', 'contain', 'resolve', 'recover', 'review', "
                    "'closed')", name="state_known"),
)
incident_events = Table(
    "incident_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("note", Text, nullable=False, server_default=""),
)
loss_events = Table(
    "loss_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_type", String(48), nullable=False),  # Basel level-1 event type
    Column("business_line", String(48), nullable=False),
    Column("cause", String(16), nullable=False),  # people | process | system | external
    Column("occurred_on", Date, nullable=False),
    Column("discovered_on", Date, nullable=False),
    Column("resolved_on", Date),
    Column("gross_loss", Float, nullable=False),
    Column("recoveries", Float, nullable=False, server_default="0"),
    Column("currency", String(8), nullable=False, server_default="HKD"),
    Column("near_miss", Boolean, nullable=False, server_default="0"),
    Column("description", Text, nullable=False, server_default=""),
    Column("incident_id", Integer, ForeignKey("incidents.id")),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    _version(),
    CheckConstraint("gross_loss >= 0 and recoveries >= 0", name="amounts_non_negative"),
    CheckConstraint("cause in ('people', 'process', 'system', 'external')", name="cause_known"),
)
notification_matrix = Table(  # a risk parameter (four-eyes): event type × amount → regulatory duty
    "notification_matrix", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_type", String(48), nullable=False),  # or '*'
    Column("min_amount", Float, nullable=False),
    Column("duty", Text, nullable=False),
    Column("due_hours", Integer),
    _version(),
)
trade_errors = Table(
    "trade_errors", metadata,
    Column("id", Integer, primary_key=True),
    Column("error_type", String(32), nullable=False),
    Column("desk", String(64), nullable=False, server_default=""),
    Column("account", String(32), nullable=False, server_default=""),
    Column("code", String(32), nullable=False, server_default=""),
    Column("trade_date", Date, nullable=False),
    Column("detected_at", DateTime(timezone=True), nullable=False),
    Column("erroneous_trade", Text, nullable=False, server_default="{}"),  # JSON
    Column("correct_trade", Text, nullable=False, server_default="{}"),  # JSON
    Column("est_pnl", Float, nullable=False),
    Column("client_impact", Boolean, nullable=False, server_default="0"),
    Column("clients_affected", Integer, nullable=False, server_default="0"),
    Column("large_wrong_side", Boolean, nullable=False, server_default="0"),
    Column("severity", String(2), nullable=False),  # L1 | L2 | L3 (computed)
    Column("severity_override", String(2)),
    Column("override_reason", Text, nullable=False, server_default=""),
    Column("error_account_transfer", Boolean, nullable=False, server_default="0"),
    Column("client_notified", Boolean, nullable=False, server_default="0"),
    Column("pnl_resolution", Text, nullable=False, server_default=""),
    Column("gains_policy", Text, nullable=False, server_default=""),
    Column("recovery", Float, nullable=False, server_default="0"),
    Column("root_cause", Text, nullable=False, server_default="[]"),  # 5 whys
    Column("root_cause_category", String(16)),  # people | process | system | external
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_by", String(64), nullable=False),
    _version(),
)
trade_error_signoffs = Table(
    "trade_error_signoffs", metadata,
    Column("id", Integer, primary_key=True),
    Column("error_id", Integer, ForeignKey("trade_errors.id"), nullable=False, index=True),
    Column("role", String(32), nullable=False),  # supervisor | desk_head | compliance | cro
    Column("signed_by", String(64), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    UniqueConstraint("error_id", "role", name="uq_trade_error_signoff_role"),
)
recon_sources = Table(  # column mapping saved per source
    "recon_sources", metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("mapping", Text, nullable=False, server_default="{}"),
)
recon_imports = Table(
    "recon_imports", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("ours_sha256", String(64), nullable=False),
    Column("theirs_sha256", String(64), nullable=False),
    Column("as_of", Date, nullable=False),
    Column("imported_by", String(64), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    Column("matched", Integer, nullable=False),
    Column("auto_resolved", Integer, nullable=False),
    Column("breaks", Integer, nullable=False),
    UniqueConstraint("kind", "ours_sha256", "theirs_sha256", "as_of", name="uq_recon_import_files"),
)
recon_breaks = Table(
    "recon_breaks", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("key", String(128), nullable=False),
    Column("type", String(16), nullable=False),  # missing_ours | missing_theirs | mismatch
    Column("field", String(32), nullable=False),
    Column("ours", Text),
    Column("theirs", Text),
    Column("difference", Float),
    Column("item_date", Date, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("assignee", String(64)),
    Column("root_cause", Text, nullable=False, server_default=""),
    Column("resolution", Text, nullable=False, server_default=""),
    Column("resolved_by", String(64)),
    Column("resolved_at", DateTime(timezone=True)),
    _version(),
    Index("ix_recon_breaks_open", "kind", "key", "type", "field", "status"),
    CheckConstraint("status in ('open', 'assigned', 'investigating', 'resolved')", name="status_known"),
)
kris = Table(  # a risk parameter (four-eyes): the KRI catalogue and thresholds
    "kris", metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("unit", String(16), nullable=False, server_default=""),
    Column("direction", String(16), nullable=False),  # higher_worse | lower_worse
    Column("amber", Float, nullable=False),  # amber from here (in the worse direction)
    Column("red", Float, nullable=False),  # red from here
    Column("source", String(16), nullable=False, server_default="entered"),  # computed | entered
    Column("description", Text, nullable=False, server_default=""),
    _version(),
    CheckConstraint("direction in ('higher_worse', 'lower_worse')", name="direction_known"),
)
kri_readings = Table(
    "kri_readings", metadata,
    Column("kri_code", String(32), ForeignKey("kris.code"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("value", Float, nullable=False),
    Column("source", String(16), nullable=False, server_default="entered"),
    Column("entered_by", String(64), nullable=False, server_default=""),
    Column("comment", Text, nullable=False, server_default=""),
)
kri_tasks = Table(
    "kri_tasks", metadata,
    Column("id", Integer, primary_key=True),
    Column("kri_code", String(32), ForeignKey("kris.code"), nullable=False, index=True),
    Column("kind", String(24), nullable=False),  # investigation | cro_escalation
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),  # open | done
    Column("owner", String(64)),
    Column("note", Text, nullable=False, server_default=""),
)
rcsa_risks = Table(
    "rcsa_risks", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("owner", String(64), nullable=False),
    Column("likelihood", Integer, nullable=False),
    Column("impact", Integer, nullable=False),
    Column("controls", Text, nullable=False, server_default=""),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    _version(),
    CheckConstraint("likelihood between 1 and 5 and impact between 1 and 5", name="scores_range"),
)
nb_proposals = Table(  # new-business review board
    "nb_proposals", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("stage", String(16), nullable=False, server_default="rationale"),
    Column("rationale", Text, nullable=False, server_default=""),
    Column("compliance", Text, nullable=False, server_default=""),
    Column("risk_assessment", Text, nullable=False, server_default=""),
    Column("stress_run_id", Integer, ForeignKey("risk_runs.id")),
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(64)),
    Column("decided_at", DateTime(timezone=True)),
    _version(),
    CheckConstraint("stage in ('rationale', 'compliance', 'risk', 'committee', 'approved', 'vetoed')",
                    name="stage_known"),
)

# ---------------------------------------------------------------- issue 7: RCSA new-business review steps
nb_proposal_steps = Table(  # one row per completed step of a proposal: what was written, by whom, when
    "nb_proposal_steps", metadata,
    Column("id", Integer, primary_key=True),
    Column("proposal_id", Integer, ForeignKey("nb_proposals.id"), nullable=False),
    Column("step", String(16), nullable=False),  # rationale | compliance | risk | committee
    Column("outcome", String(16), nullable=False),  # done | approved | vetoed
    Column("note", Text, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("stress_run_id", Integer, ForeignKey("risk_runs.id")),
    UniqueConstraint("proposal_id", "step"),  # a step is taken once: no going back
    CheckConstraint("step in ('rationale', 'compliance', 'risk', 'committee')", name="step_known"),
    CheckConstraint("outcome in ('done', 'approved', 'vetoed')", name="outcome_known"),
)

# ---------------------------------------------------------------- issue 7: loss events and trade errors (migration 0010)
loss_events.append_column(Column("discovered_at", DateTime(timezone=True)))  # reporting due times count from here
loss_events.append_column(Column("accounted_on", Date))  # the day the loss was booked
loss_events.append_column(Column("fx_rate", Float, nullable=False, server_default="1"))  # to HKD when recorded
loss_events.append_column(Column("reporting_route", Text, nullable=False, server_default=""))  # as routed
loss_events.append_column(Column("report_due_at", DateTime(timezone=True)))
loss_events.append_column(Column("regulatory_duty", Text, nullable=False, server_default=""))  # matrix duties
loss_events.append_column(Column("duty_due_at", DateTime(timezone=True)))
loss_events.append_column(Column("reported_at", DateTime(timezone=True)))  # the route's reports were made
loss_events.append_column(Column("reported_by", String(64)))
trade_errors.append_column(Column("severity_override_by", String(64)))
trade_errors.append_column(Column("client_notified_at", DateTime(timezone=True)))
trade_errors.append_column(Column("error_account_at", DateTime(timezone=True)))  # moved to the error account
trade_errors.append_column(Column("final_pnl", Float))  # realised P&L once resolved (est_pnl until then)
trade_errors.append_column(Column("resolved_by", String(64)))
trade_errors.append_column(Column("resolved_at", DateTime(timezone=True)))
trade_errors.append_column(Column("closed_at", DateTime(timezone=True)))
trade_errors.append_column(Column("description", Text, nullable=False, server_default=""))
trade_volumes = Table(  # trades done per month: the denominator of the error rate (errors per 1,000 trades)
    "trade_volumes", metadata,
    Column("month", Date, primary_key=True),  # first day of the month
    Column("trades", Integer, nullable=False),
    Column("entered_by", String(64), nullable=False),
    Column("entered_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("trades >= 0", name="trades_non_negative"),
)

# ---------------------------------------------------------------- issue 8: working margin calls (notices, remarks,
# exceptions). Operational records, written directly and audited; a call's deadline changes only through
# change requests of kind "call_deadline" on margin_calls.
margin_call_notices = Table(  # the outbox: one templated notice to the client per row
    "margin_call_notices", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", Integer, ForeignKey("margin_calls.id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("template", String(64), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("call_amount", Float, nullable=False),  # as stated in the notice
    Column("deadline", Date, nullable=False),  # as stated in the notice
    Column("status", String(16), nullable=False, server_default="queued"),
    Column("error", Text, nullable=False, server_default=""),
    Column("channel", String(32), nullable=False, server_default=""),  # the sender that delivered it
    Column("location", Text, nullable=False, server_default=""),  # where it went (file, message id)
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("sent_at", DateTime(timezone=True)),
    Column("snapshot_id", Integer, ForeignKey("margin_call_snapshots.id")),
    CheckConstraint("status in ('queued', 'sent', 'failed')", name="status_known"),
)
margin_call_remarks = Table(
    "margin_call_remarks", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", Integer, ForeignKey("margin_calls.id"), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("author", String(64), nullable=False),
    Column("text", Text, nullable=False),
)
margin_call_exceptions = Table(  # a call marked as an exception (e.g. client's funds in transit), until cleared
    "margin_call_exceptions", metadata,
    Column("id", Integer, primary_key=True),
    Column("call_id", Integer, ForeignKey("margin_calls.id"), nullable=False, index=True),
    Column("marked_at", DateTime(timezone=True), nullable=False),
    Column("marked_by", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("cleared_at", DateTime(timezone=True)),
    Column("cleared_by", String(64)),
    Column("clear_reason", Text),
)
# at most one active (not cleared) exception per call
Index("uq_margin_call_exceptions_active", margin_call_exceptions.c.call_id, unique=True,
      sqlite_where=margin_call_exceptions.c.cleared_at.is_(None),
      postgresql_where=margin_call_exceptions.c.cleared_at.is_(None))

# ---------------------------------------------------------------- issue 8: options, stock collections, short
# recalls, currency borrowing reminders. Records keep account and security codes as text (like the
# pre-trade decisions) so a book replaced by `book import` never orphans or blocks them.
option_series = Table(  # an option series on a stock; kept beside the stock book, not in `securities`
    "option_series", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, unique=True),
    Column("underlying_id", Integer, ForeignKey("securities.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("option_type", String(4), nullable=False),  # call | put
    Column("strike", Float, nullable=False),  # in the underlying's currency, per share
    Column("expiry", Date, nullable=False, index=True),
    Column("contract_size", Integer, nullable=False),  # shares per contract
    Column("premium", Float, nullable=False),  # last premium per share, in the underlying's currency
    _version(),
    CheckConstraint("option_type in ('call', 'put')", name="type_known"),
    CheckConstraint("strike > 0", name="strike_positive"),
    CheckConstraint("contract_size >= 1", name="contract_size_positive"),
    CheckConstraint("premium >= 0", name="premium_non_negative"),
)
option_positions = Table(  # contracts held (long > 0) or written (short < 0)
    "option_positions", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("series_id", Integer, ForeignKey("option_series.id", ondelete="CASCADE"), primary_key=True),
    Column("contracts", Float, nullable=False),
)
option_exercises = Table(  # exercise, assignment or lapse of one account's position in one series
    "option_exercises", metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("batch", String(40), nullable=False),  # one exercise run (per option or per client)
    Column("account", String(32), nullable=False, index=True),
    Column("option_code", String(32), nullable=False, index=True),
    Column("underlying", String(32), nullable=False),
    Column("option_type", String(4), nullable=False),
    Column("strike", Float, nullable=False),
    Column("expiry", Date, nullable=False),
    Column("contracts", Float, nullable=False),  # signed: short positions are assigned
    Column("units", Float, nullable=False),  # signed shares under the contracts
    Column("underlying_price", Float, nullable=False),
    Column("in_the_money", Boolean, nullable=False),
    Column("action", String(16), nullable=False),  # exercised | assigned | lapsed
    Column("stock_change", Float, nullable=False),  # underlying shares delivered (+) or taken (−)
    Column("cash_change", Float, nullable=False),  # in the underlying's currency
    Column("currency", String(8), nullable=False),
    Column("intrinsic_value", Float, nullable=False),  # (S − K)⁺ or (K − S)⁺ × |units|
    Column("by", String(64), nullable=False),
    CheckConstraint("action in ('exercised', 'assigned', 'lapsed')", name="action_known"),
)
stock_collections = Table(  # shares to collect from a client (short stock without cover, covered calls)
    "stock_collections", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # short_stock | covered_option
    Column("account", String(32), nullable=False),
    Column("code", String(32), nullable=False),  # the stock to collect
    Column("source", String(32), nullable=False, server_default=""),  # option series for covered_option
    Column("qty", Float, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("remark", Text, nullable=False, server_default=""),
    _version(),
    Index("ix_stock_collections_open", "kind", "account", "code", "source", "status"),
    CheckConstraint("kind in ('short_stock', 'covered_option')", name="kind_known"),
    CheckConstraint("status in ('open', 'collected', 'resolved', 'cancelled')", name="status_known"),
    CheckConstraint("qty > 0", name="qty_positive"),
)
short_recalls = Table(  # the lender recalls a security: each short client gets a notice or a buy-in
    "short_recalls", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(32), nullable=False, index=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("by", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # notice | liquidation
    Column("due_date", Date, nullable=False),
    Column("reason", Text, nullable=False),
    CheckConstraint("action in ('notice', 'liquidation')", name="action_known"),
)
short_recall_items = Table(
    "short_recall_items", metadata,
    Column("id", Integer, primary_key=True),
    Column("recall_id", Integer, ForeignKey("short_recalls.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("account", String(32), nullable=False),
    Column("short_qty", Float, nullable=False),  # shares short when recalled
    Column("buy_qty", Float, nullable=False),  # shares to buy back (whole lots) for a liquidation
    Column("price", Float, nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),  # pending | sent | proposed | done
    Column("ref", String(64), nullable=False, server_default=""),  # the notice / order made from it
    Column("updated_by", String(64)),
    Column("updated_at", DateTime(timezone=True)),
    CheckConstraint("status in ('pending', 'sent', 'proposed', 'done', 'cancelled')", name="status_known"),
)
borrowing_rules = Table(  # a risk parameter (four-eyes): when a client is reminded to cover a currency debit
    "borrowing_rules", metadata,
    Column("id", Integer, primary_key=True),
    Column("currency", String(8), nullable=False, unique=True),  # a currency, or '*' for every non-base one
    Column("currency_threshold", Float),  # debit in the currency itself at or above which the rule matches
    Column("base_threshold", Float),  # debit's base-currency (HKD) equivalent at or above which it matches
    Column("enabled", Boolean, nullable=False, server_default="1"),
    _version(),
    CheckConstraint("currency_threshold is null or currency_threshold >= 0", name="currency_threshold_range"),
    CheckConstraint("base_threshold is null or base_threshold >= 0", name="base_threshold_range"),
    CheckConstraint("currency_threshold is not null or base_threshold is not null", name="has_threshold"),
)
currency_exchanges = Table(  # a manual exchange for a client; cash balances move in the same transaction
    "currency_exchanges", metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("account", String(32), nullable=False, index=True),
    Column("from_currency", String(8), nullable=False),
    Column("to_currency", String(8), nullable=False),
    Column("from_amount", Float, nullable=False),  # sold, in from_currency
    Column("rate", Float, nullable=False),  # to_currency units per one from_currency unit
    Column("to_amount", Float, nullable=False),  # bought, in to_currency
    Column("by", String(64), nullable=False),
    Column("remark", Text, nullable=False, server_default=""),
    CheckConstraint("from_amount > 0 and rate > 0 and to_amount > 0", name="amounts_positive"),
    CheckConstraint("from_currency <> to_currency", name="currencies_differ"),
)
borrowing_reminders = Table(  # one reminder sent to a client about a currency debit
    "borrowing_reminders", metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False, index=True),
    Column("account", String(32), nullable=False, index=True),
    Column("currency", String(8), nullable=False),
    Column("debit", Float, nullable=False),  # in the currency
    Column("debit_base", Float, nullable=False),  # base-currency equivalent
    Column("rule", String(64), nullable=False),  # which rule matched (text: rules change)
    Column("channel", String(16), nullable=False, server_default="message"),
    Column("message", Text, nullable=False),
    Column("by", String(64), nullable=False),
)

# ---------------------------------------------------------------- issue 8: liquidation orders (proposals confirmed,
# batch and automatic liquidation). Operational records, written directly and audited. Account and security are kept
# as codes (like the pre-trade decisions) and the call id without a foreign key, so a book replaced by `book import`
# never orphans or blocks them. Liquidation orders are day orders: outstanding ones (confirmed or sent today) reserve
# their quantity against new proposals.
liquidation_orders = Table(
    "liquidation_orders", metadata,
    Column("id", Integer, primary_key=True),
    Column("ticket", String(32), nullable=False, index=True),  # the lines confirmed together share a ticket
    Column("account", String(32), nullable=False, index=True),
    Column("call_id", Integer, index=True),  # margin_calls.id of the call it works (none: no open call)
    Column("code", String(32), nullable=False),
    Column("qty", Float, nullable=False),
    Column("lot_size", Integer, nullable=False, server_default="1"),
    Column("order_type", String(8), nullable=False, server_default="market"),
    Column("limit_price", Float),
    Column("ref_price", Float, nullable=False),  # price when proposed, security currency
    Column("currency", String(8), nullable=False, server_default="HKD"),
    Column("im_release", Float, nullable=False),  # IM released at ref_price, HKD
    Column("state", String(16), nullable=False, server_default="confirmed"),
    Column("reason", Text, nullable=False, server_default=""),  # manual reason, "batch: …" or "auto"
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("trade_day", Date, nullable=False, index=True),  # HK date the order is for (day order)
    Column("sent_at", DateTime(timezone=True)),
    Column("cancelled_by", String(64)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_reason", Text),
    # fills recorded from dealing (issue 8, call close): shares sold so far and their proceeds (security currency)
    Column("filled_qty", Float, nullable=False, server_default="0"),
    Column("fill_value", Float, nullable=False, server_default="0"),
    Column("filled_at", DateTime(timezone=True)),
    Column("filled_by", String(64)),
    _version(),
    CheckConstraint("qty > 0", name="qty_positive"),
    CheckConstraint("order_type in ('market', 'limit')", name="order_type_known"),
    CheckConstraint("order_type = 'market' or limit_price > 0", name="limit_price_given"),
    CheckConstraint("state in ('proposed', 'confirmed', 'cancelled', 'sent', 'partly filled', 'filled')",
                    name="state_known"),
    CheckConstraint("filled_qty >= 0 and filled_qty <= qty", name="filled_within_qty"),
)
liquidation_auto_runs = Table(  # automatic liquidation handled this call on this day (at most once)
    "liquidation_auto_runs", metadata,
    Column("call_id", Integer, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("account", String(32), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("orders", Integer, nullable=False),
    Column("shortfall_after", Float, nullable=False),  # IM shortfall left after the orders (HKD)
)
