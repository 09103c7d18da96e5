"""page designs and images: a page's image, image text and video; uploaded images

Revision ID: a7d4c2e9f310
Revises: a7d2c4e9f1b3
Create Date: 2026-12-10 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7d4c2e9f310'
down_revision = 'a7d2c4e9f1b3'
branch_labels = None
depends_on = None


def upgrade():
    columns = {'image': 40, 'image_alt': 300, 'video_url': 300}
    with op.batch_alter_table('pages', schema=None) as batch_op:
        for name, length in columns.items():
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    op.execute("UPDATE pages SET image = '', image_alt = '', video_url = ''")
    with op.batch_alter_table('pages', schema=None) as batch_op:
        for name, length in columns.items():
            batch_op.alter_column(name, existing_type=sa.String(length=length),
                                  nullable=False)
    op.create_table(
        'images',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('filename', sa.String(length=200), nullable=False),
        sa.Column('media_type', sa.String(length=20), nullable=False),
        sa.Column('width', sa.Integer(), nullable=False),
        sa.Column('height', sa.Integer(), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )


def downgrade():
    op.drop_table('images')
    with op.batch_alter_table('pages', schema=None) as batch_op:
        batch_op.drop_column('video_url')
        batch_op.drop_column('image_alt')
        batch_op.drop_column('image')
