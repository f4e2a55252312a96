"""The kinds of four-eyes change request and the table each one changes, in a module that imports
nothing heavy (the audit dock lists them before the store is opened). `services.changes` re-exports it."""

from __future__ import annotations

KIND_TABLES = {
    "company_parameter": "company_parameters", "financing_limit": "financing_limits", "haircut": "haircuts",
    "stock_margin_ratio": "stock_margin_ratios", "client_margin_ratio": "client_margin_ratios",
    "client_group": "client_groups", "stock_group": "stock_groups", "index": "indices",
    "approval_flow": "approval_flows", "credit_group": "credit_groups",
    "credit_group_member": "credit_group_members", "company_limit": "company_limits", "blacklist": "blacklist",
    "client_trading_limit": "client_trading_limits", "short_sell_rule": "short_sell_rules",
    "index_member": "index_members", "client_group_member": "client_group_members",
    "stock_group_member": "stock_group_members",
    "index_haircut": "index_haircuts", "trading_session": "trading_sessions",
    "limit_code": "limit_codes", "limit_rule": "limit_rules", "order_release": "pretrade_decisions",
    "stress_exemption": "stress_exemptions", "kri": "kris", "notification_rule": "notification_matrix",
    "call_deadline": "margin_calls",  # issue 8: a margin call's deadline (services/call_work.py)
    "borrowing_rule": "borrowing_rules",  # issue 8: currency borrowing reminder rules (services/borrowing.py)
    "client_email": "clients",  # where a client's notices go (services/notices.py)
}

SECURITY_KIND = "haircut"  # a security's haircut (services/haircuts.py)
INDEX_KIND = "index_haircut"  # an index's haircut for the liquid-capital test
