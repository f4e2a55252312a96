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
    # ---- working margin calls (notices, remarks, exceptions) — issue 8, call-work helper
    op.create_table(
        'margin_call_notices',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('template', sa.String(length=64), nullable=False),
        sa.Column('recipient', sa.String(length=320), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('call_amount', sa.Float(), nullable=False),
        sa.Column('deadline', sa.Date(), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
        sa.Column('error', sa.Text(), server_default='', nullable=False),
        sa.Column('channel', sa.String(length=32), server_default='', nullable=False),
        sa.Column('location', sa.Text(), server_default='', nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('snapshot_id', sa.Integer(), nullable=True),
        sa.CheckConstraint("status in ('queued', 'sent', 'failed')",
                           name=op.f('ck_margin_call_notices_status_known')),
        sa.ForeignKeyConstraint(['call_id'], ['margin_calls.id'],
                                name=op.f('fk_margin_call_notices_call_id_margin_calls')),
        sa.ForeignKeyConstraint(['snapshot_id'], ['margin_call_snapshots.id'],
                                name=op.f('fk_margin_call_notices_snapshot_id_margin_call_snapshots')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_margin_call_notices')),
    )
    op.create_index(op.f('ix_margin_call_notices_call_id'), 'margin_call_notices', ['call_id'])
    op.create_table(
        'margin_call_remarks',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
        sa.Column('author', sa.String(length=64), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['call_id'], ['margin_calls.id'],
                                name=op.f('fk_margin_call_remarks_call_id_margin_calls')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_margin_call_remarks')),
    )
    op.create_index(op.f('ix_margin_call_remarks_call_id'), 'margin_call_remarks', ['call_id'])
    op.create_table(
        'margin_call_exceptions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('marked_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('marked_by', sa.String(length=64), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('cleared_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cleared_by', sa.String(length=64), nullable=True),
        sa.Column('clear_reason', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['call_id'], ['margin_calls.id'],
                                name=op.f('fk_margin_call_exceptions_call_id_margin_calls')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_margin_call_exceptions')),
    )
    op.create_index(op.f('ix_margin_call_exceptions_call_id'), 'margin_call_exceptions', ['call_id'])
    op.create_index('uq_margin_call_exceptions_active', 'margin_call_exceptions', ['call_id'], unique=True,
                    sqlite_where=sa.text('cleared_at IS NULL'), postgresql_where=sa.text('cleared_at IS NULL'))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("GRANT SELECT, INSERT, UPDATE ON margin_call_notices, margin_call_remarks, "
                   "margin_call_exceptions TO riskdesk_app")
        op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO riskdesk_app")
    # ---- end of working margin calls
    _liquidation_upgrade()  # issue 8, liquidation helper


def downgrade() -> None:
    _liquidation_downgrade()  # issue 8, liquidation helper
    # ---- working margin calls (notices, remarks, exceptions) — issue 8, call-work helper
    op.drop_index('uq_margin_call_exceptions_active', table_name='margin_call_exceptions')
    op.drop_index(op.f('ix_margin_call_exceptions_call_id'), table_name='margin_call_exceptions')
    op.drop_table('margin_call_exceptions')
    op.drop_index(op.f('ix_margin_call_remarks_call_id'), table_name='margin_call_remarks')
    op.drop_table('margin_call_remarks')
    op.drop_index(op.f('ix_margin_call_notices_call_id'), table_name='margin_call_notices')
    op.drop_table('margin_call_notices')
    # ---- end of working margin calls


# ---- liquidation orders, batch and automatic liquidation — issue 8, liquidation helper
def _liquidation_upgrade() -> None:
    op.create_table(
        'liquidation_orders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ticket', sa.String(length=32), nullable=False),
        sa.Column('account', sa.String(length=32), nullable=False),
        sa.Column('call_id', sa.Integer(), nullable=True),
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('qty', sa.Float(), nullable=False),
        sa.Column('lot_size', sa.Integer(), server_default='1', nullable=False),
        sa.Column('order_type', sa.String(length=8), server_default='market', nullable=False),
        sa.Column('limit_price', sa.Float(), nullable=True),
        sa.Column('ref_price', sa.Float(), nullable=False),
        sa.Column('currency', sa.String(length=8), server_default='HKD', nullable=False),
        sa.Column('im_release', sa.Float(), nullable=False),
        sa.Column('state', sa.String(length=16), server_default='confirmed', nullable=False),
        sa.Column('reason', sa.Text(), server_default='', nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('trade_day', sa.Date(), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cancelled_by', sa.String(length=64), nullable=True),
        sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cancel_reason', sa.Text(), nullable=True),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.CheckConstraint('qty > 0', name=op.f('ck_liquidation_orders_qty_positive')),
        sa.CheckConstraint("order_type in ('market', 'limit')", name=op.f('ck_liquidation_orders_order_type_known')),
        sa.CheckConstraint("order_type = 'market' or limit_price > 0",
                           name=op.f('ck_liquidation_orders_limit_price_given')),
        sa.CheckConstraint("state in ('proposed', 'confirmed', 'cancelled', 'sent')",
                           name=op.f('ck_liquidation_orders_state_known')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_liquidation_orders')),
    )
    for col in ('ticket', 'account', 'call_id', 'trade_day'):
        op.create_index(op.f(f'ix_liquidation_orders_{col}'), 'liquidation_orders', [col])
    op.create_table(
        'liquidation_auto_runs',
        sa.Column('call_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('account', sa.String(length=32), nullable=False),
        sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
        sa.Column('orders', sa.Integer(), nullable=False),
        sa.Column('shortfall_after', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('call_id', 'day', name=op.f('pk_liquidation_auto_runs')),
    )
    # data step: the company parameters (changed only through four-eyes), off / 10:00 HK by default
    params = sa.table('company_parameters', sa.column('name'), sa.column('value'), sa.column('description'))
    have = set(op.get_bind().execute(sa.select(params.c.name)).scalars())
    rows = [r for r in (
        {'name': 'batch_liquidation_enabled', 'value': 0.0,
         'description': '1: liquidation can be proposed and confirmed for many calls at once'},
        {'name': 'auto_liquidation_enabled', 'value': 1.0,
         'description': '1: calls past their deadline get liquidation orders automatically at auto_liquidation_time'},
        {'name': 'auto_liquidation_time', 'value': 600.0,
         'description': 'automatic liquidation time, minutes after midnight HK time (600 = 10:00)'},
    ) if r['name'] not in have]
    if rows:
        op.bulk_insert(params, rows)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("GRANT SELECT, INSERT, UPDATE ON liquidation_orders, liquidation_auto_runs TO riskdesk_app")
        op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO riskdesk_app")


def _liquidation_downgrade() -> None:
    op.execute("delete from company_parameters where name in ('batch_liquidation_enabled', "
               "'auto_liquidation_enabled', 'auto_liquidation_time')")
    op.drop_table('liquidation_auto_runs')
    for col in ('ticket', 'account', 'call_id', 'trade_day'):
        op.drop_index(op.f(f'ix_liquidation_orders_{col}'), table_name='liquidation_orders')
    op.drop_table('liquidation_orders')
# ---- end of liquidation
