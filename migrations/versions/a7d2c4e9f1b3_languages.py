"""languages: a page's language, a broadcast's footer language

Revision ID: a7d2c4e9f1b3
Revises: a22c4e6f8b10
Create Date: 2026-12-10 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7d2c4e9f1b3'
down_revision = 'a22c4e6f8b10'
branch_labels = None
depends_on = None


def upgrade():
    # Every page so far spoke English.
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))
    op.execute("UPDATE pages SET language = 'en'")
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.alter_column('language', existing_type=sa.String(length=8), nullable=False)
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=True))


def downgrade():
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_column('language')
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.drop_column('language')
