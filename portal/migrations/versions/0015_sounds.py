"""offices' greetings and music, uploaded in the configurator; whether an office edits its trunks

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sound',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.Column('filename', sa.String(length=200), nullable=False),
        sa.Column('uploaded_by', sa.String(length=120), nullable=False),
        sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['site.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('site_id', 'sha256'),
    )
    with op.batch_alter_table('sound', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sound_site_id'), ['site_id'], unique=False)
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('office_edits_trunks', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_column('office_edits_trunks')
    with op.batch_alter_table('sound', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sound_site_id'))
    op.drop_table('sound')
