"""proof of work: the page setting and the challenges already used

Revision ID: a7c3e9f1b254
Revises: f19a7c2e4b60
Create Date: 2026-12-05 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c3e9f1b254'
down_revision = 'f19a7c2e4b60'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('proof_of_work', sa.Boolean(), nullable=True))
    op.execute("UPDATE pages SET proof_of_work = false")
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.alter_column('proof_of_work', existing_type=sa.Boolean(), nullable=False)
    # Solved challenges a sign-up used, until they expire: a second use is refused.
    op.create_table(
        'spent_challenges',
        sa.Column('signature', sa.String(length=128), nullable=False),
        sa.Column('expires_at', sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint('signature'),
    )
    with op.batch_alter_table('spent_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spent_challenges_expires_at'), ['expires_at'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('spent_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spent_challenges_expires_at'))
    op.drop_table('spent_challenges')
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.drop_column('proof_of_work')
