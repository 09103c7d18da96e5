"""sequence entries: a lead may go through a `reenter: true` sequence again

Revision ID: d18a9c4f2b30
Revises: 3c1e7a9b5d21
Create Date: 2026-12-04 14:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd18a9c4f2b30'
down_revision = '3c1e7a9b5d21'
branch_labels = None
depends_on = None


def upgrade():
    # Each time through a sequence is an entry; a step is sent once per entry.
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry', sa.Integer(), server_default='1',
                                      nullable=False))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry', sa.Integer(), server_default='1',
                                      nullable=False))
        batch_op.drop_constraint('uq_deliveries_lead_step', type_='unique')
        batch_op.create_unique_constraint('uq_deliveries_lead_step',
                                          ['lead_id', 'sequence', 'step', 'entry'])


def downgrade():
    # Later entries' deliveries cannot fit the old key: only the first entry's stay.
    # Their children go first, as the foreign keys say (SQLite migrations run with the
    # keys off, and env.py's check after the migration would find orphans): their
    # links are deleted, their events keep their place on the timeline, unlinked.
    later = "SELECT id FROM deliveries WHERE entry > 1"
    op.execute(f"DELETE FROM links WHERE delivery_id IN ({later})")
    op.execute(f"UPDATE events SET delivery_id = NULL WHERE delivery_id IN ({later})")
    op.execute("DELETE FROM deliveries WHERE entry > 1")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('uq_deliveries_lead_step', type_='unique')
        batch_op.create_unique_constraint('uq_deliveries_lead_step',
                                          ['lead_id', 'sequence', 'step'])
        batch_op.drop_column('entry')
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_column('entry')
