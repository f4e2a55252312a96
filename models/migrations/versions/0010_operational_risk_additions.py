"""operational risk additions (recon source mappings, review steps)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa  # noqa: F401


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
