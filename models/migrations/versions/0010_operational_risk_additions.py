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
    # --- RCSA / new-business review (issue 7): one row per completed review step
    op.create_table('nb_proposal_steps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('stress_run_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("outcome in ('done', 'approved', 'vetoed')", name=op.f('ck_nb_proposal_steps_outcome_known')),
    sa.CheckConstraint("step in ('rationale', 'compliance', 'risk', 'committee')", name=op.f('ck_nb_proposal_steps_step_known')),
    sa.ForeignKeyConstraint(['proposal_id'], ['nb_proposals.id'], name=op.f('fk_nb_proposal_steps_proposal_id_nb_proposals')),
    sa.ForeignKeyConstraint(['stress_run_id'], ['risk_runs.id'], name=op.f('fk_nb_proposal_steps_stress_run_id_risk_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_nb_proposal_steps')),
    sa.UniqueConstraint('proposal_id', 'step', name=op.f('uq_nb_proposal_steps_proposal_id'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT, INSERT ON nb_proposal_steps TO riskdesk_app")
        op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO riskdesk_app")
    # --- end RCSA / new-business review
    # --- loss events and trade errors (issue 7): due times, routing as recorded, resolution, trade volumes
    for name, col in (
            ("loss_events", sa.Column('discovered_at', sa.DateTime(timezone=True), nullable=True)),
            ("loss_events", sa.Column('accounted_on', sa.Date(), nullable=True)),
            ("loss_events", sa.Column('fx_rate', sa.Float(), server_default='1', nullable=False)),
            ("loss_events", sa.Column('reporting_route', sa.Text(), server_default='', nullable=False)),
            ("loss_events", sa.Column('report_due_at', sa.DateTime(timezone=True), nullable=True)),
            ("loss_events", sa.Column('regulatory_duty', sa.Text(), server_default='', nullable=False)),
            ("loss_events", sa.Column('duty_due_at', sa.DateTime(timezone=True), nullable=True)),
            ("loss_events", sa.Column('reported_at', sa.DateTime(timezone=True), nullable=True)),
            ("loss_events", sa.Column('reported_by', sa.String(length=64), nullable=True)),
            ("trade_errors", sa.Column('severity_override_by', sa.String(length=64), nullable=True)),
            ("trade_errors", sa.Column('client_notified_at', sa.DateTime(timezone=True), nullable=True)),
            ("trade_errors", sa.Column('error_account_at', sa.DateTime(timezone=True), nullable=True)),
            ("trade_errors", sa.Column('final_pnl', sa.Float(), nullable=True)),
            ("trade_errors", sa.Column('resolved_by', sa.String(length=64), nullable=True)),
            ("trade_errors", sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True)),
            ("trade_errors", sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True)),
            ("trade_errors", sa.Column('description', sa.Text(), server_default='', nullable=False))):
        op.add_column(name, col)
    op.create_table('trade_volumes',
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('trades', sa.Integer(), nullable=False),
    sa.Column('entered_by', sa.String(length=64), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('trades >= 0', name=op.f('ck_trade_volumes_trades_non_negative')),
    sa.PrimaryKeyConstraint('month', name=op.f('pk_trade_volumes'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT, INSERT, UPDATE ON trade_volumes TO riskdesk_app")
    # --- end loss events and trade errors
    # --- incidents and corrective actions (issue 7): the response clock, the review sign-off, action start
    for name, col in (
            ("incidents", sa.Column('triaged_at', sa.DateTime(timezone=True), nullable=True)),
            ("incidents", sa.Column('response_due_at', sa.DateTime(timezone=True), nullable=True)),
            ("incidents", sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True)),
            ("incidents", sa.Column('reviewed_by', sa.String(length=64), nullable=True)),
            ("incidents", sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True)),
            ("corrective_actions", sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))):
        op.add_column(name, col)
    # --- end incidents and corrective actions
    # --- liquidation fills and call close (issue 8): filled quantity and proceeds, states partly filled / filled
    with op.batch_alter_table('liquidation_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('filled_qty', sa.Float(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('fill_value', sa.Float(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('filled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('filled_by', sa.String(length=64), nullable=True))
        batch_op.drop_constraint(op.f('ck_liquidation_orders_state_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_liquidation_orders_state_known'),
            "state in ('proposed', 'confirmed', 'cancelled', 'sent', 'partly filled', 'filled')")
        batch_op.create_check_constraint(op.f('ck_liquidation_orders_filled_within_qty'),
                                         'filled_qty >= 0 and filled_qty <= qty')
    # --- end liquidation fills and call close


def downgrade() -> None:
    # --- liquidation fills and call close (issue 8)
    op.execute("update liquidation_orders set state = 'sent' where state in ('partly filled', 'filled')")
    with op.batch_alter_table('liquidation_orders', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_liquidation_orders_filled_within_qty'), type_='check')
        batch_op.drop_constraint(op.f('ck_liquidation_orders_state_known'), type_='check')
        batch_op.create_check_constraint(op.f('ck_liquidation_orders_state_known'),
                                         "state in ('proposed', 'confirmed', 'cancelled', 'sent')")
        for c in ('filled_by', 'filled_at', 'fill_value', 'filled_qty'):
            batch_op.drop_column(c)
    # --- end liquidation fills and call close
    # --- incidents and corrective actions (issue 7)
    for name, cols in (("corrective_actions", ('started_at',)),
                       ("incidents", ('reviewed_at', 'reviewed_by', 'responded_at', 'response_due_at',
                                      'triaged_at'))):
        with op.batch_alter_table(name, schema=None) as batch_op:
            for c in cols:
                batch_op.drop_column(c)
    # --- end incidents and corrective actions
    # --- loss events and trade errors (issue 7)
    op.drop_table('trade_volumes')
    for name, cols in (("trade_errors", ('description', 'closed_at', 'resolved_at', 'resolved_by', 'final_pnl', 'error_account_at',
                                         'client_notified_at', 'severity_override_by')),
                       ("loss_events", ('reported_by', 'reported_at', 'duty_due_at', 'regulatory_duty', 'report_due_at', 'reporting_route',
                                        'fx_rate', 'accounted_on', 'discovered_at'))):
        with op.batch_alter_table(name, schema=None) as batch_op:
            for c in cols:
                batch_op.drop_column(c)
    # --- end loss events and trade errors
    # --- RCSA / new-business review (issue 7)
    op.drop_table('nb_proposal_steps')
    # --- end RCSA / new-business review
