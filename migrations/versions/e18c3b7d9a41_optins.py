"""several opt-ins per lead: one row per (lead, page)

Revision ID: e18c3b7d9a41
Revises: b18e2a5d7c10
Create Date: 2026-12-04 17:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e18c3b7d9a41'
down_revision = 'b18e2a5d7c10'
branch_labels = None
depends_on = None

_COPIED = ("page_id", "visit_id", "imported", "created_at", "utm_source", "utm_medium",
           "utm_campaign", "utm_content", "utm_term", "ref", "referrer", "landing_url",
           "consent_text", "consent_at", "consent_ip", "review", "review_reason",
           "reviewed_at")


def upgrade():
    op.create_table(
        'optins',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('page_id', sa.Integer(), nullable=True),
        sa.Column('visit_id', sa.Integer(), nullable=True),
        sa.Column('first', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('imported', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('utm_source', sa.String(length=200), nullable=True),
        sa.Column('utm_medium', sa.String(length=200), nullable=True),
        sa.Column('utm_campaign', sa.String(length=200), nullable=True),
        sa.Column('utm_content', sa.String(length=200), nullable=True),
        sa.Column('utm_term', sa.String(length=200), nullable=True),
        sa.Column('ref', sa.String(length=200), nullable=True),
        sa.Column('referrer', sa.String(length=1000), nullable=True),
        sa.Column('landing_url', sa.String(length=2000), nullable=True),
        sa.Column('consent_text', sa.Text(), nullable=False),
        sa.Column('consent_at', sa.DateTime(), nullable=False),
        sa.Column('consent_ip', sa.String(length=45), nullable=True),
        sa.Column('review', sa.String(length=10), nullable=False),
        sa.Column('review_reason', sa.String(length=300), nullable=False),
        sa.Column('reviewed_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['visit_id'], ['visits.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('lead_id', 'page_id', name='uq_optins_lead_page'),
    )
    op.create_index('ix_optins_page_created', 'optins', ['page_id', 'created_at'])
    op.create_index('ix_optins_created', 'optins', ['created_at'])
    # Every lead so far opted in once: its own row holds that opt-in.
    columns = ", ".join(_COPIED)
    op.execute(f"INSERT INTO optins (lead_id, first, {columns}) "
               f"SELECT id, true, {columns} FROM leads ORDER BY id")
    with op.batch_alter_table('rollup_counts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('optins', sa.Integer(), server_default='0',
                                      nullable=False))
    # The rollups count opt-ins now: the next fold rebuilds them from the rows.
    op.execute("INSERT INTO rollup_queue (lead_id) VALUES (NULL)")


def downgrade():
    with op.batch_alter_table('rollup_counts', schema=None) as batch_op:
        batch_op.drop_column('optins')
    op.drop_index('ix_optins_created', table_name='optins')
    op.drop_index('ix_optins_page_created', table_name='optins')
    op.drop_table('optins')
    # The rollups counted later opt-ins: rebuilt without them.
    op.execute("INSERT INTO rollup_queue (lead_id) VALUES (NULL)")
