"""tags, saved segments and broadcasts

Revision ID: 3c1e7a9b5d21
Revises: 9d3e5a7c1f20
Create Date: 2026-12-04 09:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c1e7a9b5d21'
down_revision = '9d3e5a7c1f20'
branch_labels = None
depends_on = None


def upgrade():
    # Tags: a page's list for its opt-ins, a link's tag for human clicks, lead × tag.
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.JSON(), nullable=True))
    op.execute("UPDATE pages SET tags = '[]'")
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.alter_column('tags', existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tag', sa.String(length=40), nullable=True))
    op.create_table(
        'lead_tags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('lead_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=40), nullable=False),
        sa.Column('cause', sa.String(length=80), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('lead_id', 'tag', name='uq_lead_tags_lead_tag'),
    )
    op.create_index('ix_lead_tags_tag_lead', 'lead_tags', ['tag', 'lead_id'], unique=False)

    # Saved segments of the dashboard.
    op.create_table(
        'saved_segments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('definition', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )

    # Broadcasts and their deliveries.
    op.create_table(
        'broadcasts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('state', sa.String(length=10), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('preheader', sa.String(length=300), nullable=False),
        sa.Column('sender', sa.String(length=300), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('segment', sa.JSON(), nullable=False),
        sa.Column('file_hash', sa.String(length=64), nullable=False),
        sa.Column('send_at', sa.DateTime(), nullable=False),
        sa.Column('send_window', sa.String(length=11), nullable=True),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('taken_through', sa.BigInteger(), nullable=False),
        sa.Column('taken_at', sa.DateTime(), nullable=True),
        sa.Column('recipients', sa.Integer(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('cancelled_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_index('ix_broadcasts_state_send_at', 'broadcasts', ['state', 'send_at'],
                    unique=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('broadcast_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_deliveries_broadcast_id', 'broadcasts',
                                    ['broadcast_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index('ix_deliveries_broadcast_status', ['broadcast_id', 'status'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_broadcast_status')
        batch_op.drop_constraint('fk_deliveries_broadcast_id', type_='foreignkey')
        batch_op.drop_column('broadcast_id')
    op.drop_index('ix_broadcasts_state_send_at', table_name='broadcasts')
    op.drop_table('broadcasts')
    op.drop_table('saved_segments')
    op.drop_index('ix_lead_tags_tag_lead', table_name='lead_tags')
    op.drop_table('lead_tags')
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('tag')
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.drop_column('tags')
