"""erased addresses kept as keyed hashes in the suppression list

Revision ID: b18e2a5d7c10
Revises: d18a9c4f2b30
Create Date: 2026-12-10 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b18e2a5d7c10'
down_revision = 'd18a9c4f2b30'
branch_labels = None
depends_on = None


def upgrade():
    # An erased person's row holds only the keyed hash of the address (no address):
    # capture.leads.suppression. Rows written before keep their address and still count.
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_hash', sa.String(length=64), nullable=True))
        batch_op.alter_column('email', existing_type=sa.String(length=254), nullable=True)
        batch_op.create_unique_constraint('uq_suppressions_email_hash', ['email_hash'])


def downgrade():
    # The hashed rows cannot become addresses again: they go.
    op.execute("DELETE FROM suppressions WHERE email IS NULL")
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_suppressions_email_hash', type_='unique')
        batch_op.alter_column('email', existing_type=sa.String(length=254), nullable=False)
        batch_op.drop_column('email_hash')
