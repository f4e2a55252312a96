"""pre-trade decisions: the known-decision check written without an IN list

SQLite codes a CHECK's ``x in ('a', 'b', …)`` as a temporary index built again for every row
inserted: 4–5 µs a row, a third of the cost of storing a decision. The same rule as comparisons
costs nothing measurable. PostgreSQL gets the same definition (one schema for both).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

_NAME = 'ck_pretrade_decisions_decision_known'
_NEW = "decision = 'accept' or decision = 'prompt' or decision = 'approval' or decision = 'reject'"
_OLD = "decision in ('accept', 'prompt', 'approval', 'reject')"


def _replace(condition: str) -> None:
    with op.batch_alter_table('pretrade_decisions', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_NAME), type_='check')
        batch_op.create_check_constraint(op.f(_NAME), condition)


def upgrade() -> None:
    _replace(_NEW)


def downgrade() -> None:
    _replace(_OLD)
