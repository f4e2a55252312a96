"""margin call operations (notices, liquidation orders, remarks, exceptions, deadline changes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa  # noqa: F401


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
