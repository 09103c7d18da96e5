"""the money loop: page and subject tests, ad spend

Revision ID: f19a7c2e4b60
Revises: e18c3b7d9a41
Create Date: 2026-12-04 17:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f19a7c2e4b60'
down_revision = 'e18c3b7d9a41'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('variants', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('variant_a_weight', sa.Integer(), nullable=True))
    op.execute("UPDATE pages SET variants = '[]'")
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.alter_column('variants', existing_type=sa.JSON(), nullable=False)
    for table in ('visits', 'leads', 'optins'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('variant', sa.String(length=20), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject_index', sa.Integer(), nullable=True))
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subjects', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('test', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('test_phase', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('test_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('winner', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('test_result', sa.JSON(), nullable=True))
    op.execute("UPDATE broadcasts SET subjects = '[]'")
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.alter_column('subjects', existing_type=sa.JSON(), nullable=False)
    op.create_table(
        'costs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=False),
        sa.Column('campaign', sa.String(length=200), nullable=False),
        sa.Column('page_id', sa.Integer(), nullable=True),
        sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['page_id'], ['pages.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_costs_day', 'costs', ['day', 'page_id'])
    op.create_index('ix_costs_key', 'costs', ['day', 'source', 'campaign', 'page_id'])


def downgrade():
    op.drop_index('ix_costs_key', table_name='costs')
    op.drop_index('ix_costs_day', table_name='costs')
    op.drop_table('costs')
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        for name in ('test_result', 'winner', 'test_until', 'test_phase', 'test', 'subjects'):
            batch_op.drop_column(name)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('subject_index')
    for table in ('optins', 'leads', 'visits'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('variant')
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.drop_column('variant_a_weight')
        batch_op.drop_column('variants')
