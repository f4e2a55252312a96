"""positions (options, exercise, stock collections, currency borrowing reminders)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ---- positions and collections (issue 8): options, exercises, stock collections, short recalls,
    # currency borrowing rules, exchanges and reminders
    op.create_table('option_series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('underlying_id', sa.Integer(), nullable=False),
    sa.Column('option_type', sa.String(length=4), nullable=False),
    sa.Column('strike', sa.Float(), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=False),
    sa.Column('contract_size', sa.Integer(), nullable=False),
    sa.Column('premium', sa.Float(), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.CheckConstraint("option_type in ('call', 'put')", name=op.f('ck_option_series_type_known')),
    sa.CheckConstraint('strike > 0', name=op.f('ck_option_series_strike_positive')),
    sa.CheckConstraint('contract_size >= 1', name=op.f('ck_option_series_contract_size_positive')),
    sa.CheckConstraint('premium >= 0', name=op.f('ck_option_series_premium_non_negative')),
    sa.ForeignKeyConstraint(['underlying_id'], ['securities.id'], ondelete='CASCADE',
                            name=op.f('fk_option_series_underlying_id_securities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_option_series')),
    sa.UniqueConstraint('code', name=op.f('uq_option_series_code')))
    op.create_index('ix_option_series_underlying_id', 'option_series', ['underlying_id'])
    op.create_index('ix_option_series_expiry', 'option_series', ['expiry'])
    op.create_table('option_positions',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('contracts', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE',
                            name=op.f('fk_option_positions_account_id_accounts')),
    sa.ForeignKeyConstraint(['series_id'], ['option_series.id'], ondelete='CASCADE',
                            name=op.f('fk_option_positions_series_id_option_series')),
    sa.PrimaryKeyConstraint('account_id', 'series_id', name=op.f('pk_option_positions')))
    op.create_table('option_exercises',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('batch', sa.String(length=40), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('option_code', sa.String(length=32), nullable=False),
    sa.Column('underlying', sa.String(length=32), nullable=False),
    sa.Column('option_type', sa.String(length=4), nullable=False),
    sa.Column('strike', sa.Float(), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=False),
    sa.Column('contracts', sa.Float(), nullable=False),
    sa.Column('units', sa.Float(), nullable=False),
    sa.Column('underlying_price', sa.Float(), nullable=False),
    sa.Column('in_the_money', sa.Boolean(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('stock_change', sa.Float(), nullable=False),
    sa.Column('cash_change', sa.Float(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('intrinsic_value', sa.Float(), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.CheckConstraint("action in ('exercised', 'assigned', 'lapsed')", name=op.f('ck_option_exercises_action_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_option_exercises')))
    op.create_index('ix_option_exercises_account', 'option_exercises', ['account'])
    op.create_index('ix_option_exercises_option_code', 'option_exercises', ['option_code'])
    op.create_table('stock_collections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=32), server_default='', nullable=False),
    sa.Column('qty', sa.Float(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.Column('remark', sa.Text(), server_default='', nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.CheckConstraint("kind in ('short_stock', 'covered_option')", name=op.f('ck_stock_collections_kind_known')),
    sa.CheckConstraint("status in ('open', 'collected', 'resolved', 'cancelled')",
                       name=op.f('ck_stock_collections_status_known')),
    sa.CheckConstraint('qty > 0', name=op.f('ck_stock_collections_qty_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stock_collections')))
    op.create_index('ix_stock_collections_open', 'stock_collections', ['kind', 'account', 'code', 'source', 'status'])
    op.create_table('short_recalls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.CheckConstraint("action in ('notice', 'liquidation')", name=op.f('ck_short_recalls_action_known')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_short_recalls')))
    op.create_index('ix_short_recalls_code', 'short_recalls', ['code'])
    op.create_table('short_recall_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recall_id', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('short_qty', sa.Float(), nullable=False),
    sa.Column('buy_qty', sa.Float(), nullable=False),
    sa.Column('price', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('ref', sa.String(length=64), server_default='', nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status in ('pending', 'sent', 'proposed', 'done', 'cancelled')",
                       name=op.f('ck_short_recall_items_status_known')),
    sa.ForeignKeyConstraint(['recall_id'], ['short_recalls.id'], ondelete='CASCADE',
                            name=op.f('fk_short_recall_items_recall_id_short_recalls')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_short_recall_items')))
    op.create_index('ix_short_recall_items_recall_id', 'short_recall_items', ['recall_id'])
    op.create_table('borrowing_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('currency_threshold', sa.Float(), nullable=True),
    sa.Column('base_threshold', sa.Float(), nullable=True),
    sa.Column('enabled', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.CheckConstraint('currency_threshold is null or currency_threshold >= 0',
                       name=op.f('ck_borrowing_rules_currency_threshold_range')),
    sa.CheckConstraint('base_threshold is null or base_threshold >= 0',
                       name=op.f('ck_borrowing_rules_base_threshold_range')),
    sa.CheckConstraint('currency_threshold is not null or base_threshold is not null',
                       name=op.f('ck_borrowing_rules_has_threshold')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_borrowing_rules')),
    sa.UniqueConstraint('currency', name=op.f('uq_borrowing_rules_currency')))
    op.create_table('currency_exchanges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('from_currency', sa.String(length=8), nullable=False),
    sa.Column('to_currency', sa.String(length=8), nullable=False),
    sa.Column('from_amount', sa.Float(), nullable=False),
    sa.Column('rate', sa.Float(), nullable=False),
    sa.Column('to_amount', sa.Float(), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('remark', sa.Text(), server_default='', nullable=False),
    sa.CheckConstraint('from_amount > 0 and rate > 0 and to_amount > 0',
                       name=op.f('ck_currency_exchanges_amounts_positive')),
    sa.CheckConstraint('from_currency <> to_currency', name=op.f('ck_currency_exchanges_currencies_differ')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_currency_exchanges')))
    op.create_index('ix_currency_exchanges_account', 'currency_exchanges', ['account'])
    op.create_table('borrowing_reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('account', sa.String(length=32), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('debit', sa.Float(), nullable=False),
    sa.Column('debit_base', sa.Float(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), server_default='message', nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_borrowing_reminders')))
    op.create_index('ix_borrowing_reminders_ts', 'borrowing_reminders', ['ts'])
    op.create_index('ix_borrowing_reminders_account', 'borrowing_reminders', ['account'])
    params = sa.table("company_parameters", sa.column("name"), sa.column("value"), sa.column("description"))
    have = {r[0] for r in op.get_bind().execute(sa.text("select name from company_parameters"))}
    op.bulk_insert(params, [{"name": n, "value": v, "description": d} for n, v, d in (
        ("npl_days_past_deadline", 5.0, "non-performing credit: an open call this many business days past its "
                                        "deadline (or more)"),
        ("option_near_expiry_days", 5.0, "options expiring within this many calendar days are near expiry"),
    ) if n not in have])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON option_series, borrowing_rules TO riskdesk_app")  # rules: only rd_decide
        op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON option_positions, option_exercises, stock_collections, short_recalls, "
                   "short_recall_items, currency_exchanges, borrowing_reminders TO riskdesk_app")
        op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO riskdesk_app")
    # ---- end positions and collections


def downgrade() -> None:
    # ---- positions and collections (issue 8)
    op.execute("delete from company_parameters where name in ('npl_days_past_deadline', 'option_near_expiry_days')")
    for t in ('borrowing_reminders', 'currency_exchanges', 'borrowing_rules', 'short_recall_items', 'short_recalls',
              'stock_collections', 'option_exercises', 'option_positions', 'option_series'):
        op.drop_table(t)
    # ---- end positions and collections
