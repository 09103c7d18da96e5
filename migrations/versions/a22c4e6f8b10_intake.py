"""the intake: accepted sign-ups waiting for the scheduler's processor

Revision ID: a22c4e6f8b10
Revises: a7c3e9f1b254
Create Date: 2026-12-04 20:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a22c4e6f8b10'
down_revision = 'a7c3e9f1b254'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'intake',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('page_id', sa.Integer(), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('error', sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_intake_state_id', 'intake', ['state', 'id'])


def downgrade():
    op.drop_index('ix_intake_state_id', table_name='intake')
    op.drop_table('intake')
