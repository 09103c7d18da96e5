"""imported leads: a column that tells them from opt-ins, and their rollup numbers

Revision ID: cbb06d97631b
Revises: 0e9437a8b9f2
Create Date: 2026-12-03 21:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'cbb06d97631b'
down_revision = '0e9437a8b9f2'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN with a constant default: a batch on SQLite would copy the leads
    # table and drop the old one, and the drop would cascade to every event.
    op.add_column('leads', sa.Column('imported', sa.Boolean(), server_default='0',
                                     nullable=False))
    for name in ('imported', 'imported_approved'):
        op.add_column('rollup_counts', sa.Column(name, sa.Integer(), server_default='0',
                                                 nullable=False))
    op.add_column('rollup_counts', sa.Column('imported_upgrade_cents', sa.BigInteger(),
                                             server_default='0', nullable=False))

    # A lead an import created has the import's entry on its timeline.
    bind = op.get_bind()
    bind.execute(sa.text(
        "UPDATE leads SET imported = :yes WHERE id IN (SELECT lead_id FROM events "
        "WHERE kind = 'import')").bindparams(yes=True))

    from capture.numbers import rollup_queue

    filled = bind.execute(sa.text('SELECT COUNT(*) FROM rollup_state')).scalar()
    if filled:
        # The leads' numbers move from opt-ins to imported at the next fold.
        lead_ids = bind.execute(sa.text('SELECT id FROM leads WHERE imported')).scalars().all()
        if lead_ids:
            rollup_queue.note_changed(bind, lead_ids)
    else:
        # Coming from before the rollups: the next fold fills them from the rows
        # already there, as `flask rollups rebuild` would (not here: today's code reads
        # tables later migrations add).
        rollup_queue.note_changed(bind, [None])


def downgrade():
    # Plain DROP COLUMN (SQLite 3.35+), for the reason given in upgrade().
    for name in ('imported_upgrade_cents', 'imported_approved', 'imported'):
        op.drop_column('rollup_counts', name)
    op.drop_column('leads', 'imported')
    # Imported leads count as opt-ins again.
    op.execute("DELETE FROM rollup_queue")
    op.execute("INSERT INTO rollup_queue (lead_id) VALUES (NULL)")
