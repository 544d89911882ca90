"""box software releases and their rollouts in waves

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 14:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'release',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.String(length=120), nullable=False),
        sa.Column('compatible', sa.String(length=64), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('signer', sa.String(length=200), nullable=False),
        sa.Column('uploaded_by', sa.String(length=120), nullable=False),
        sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('version'),
    )
    op.create_table(
        'rollout',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('release_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('window', sa.String(length=11), nullable=True),
        sa.Column('canary', sa.Integer(), nullable=False),
        sa.Column('wave_percent', sa.Integer(), nullable=False),
        sa.Column('deadline_seconds', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['release_id'], ['release.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_release_id'), ['release_id'], unique=False)
    op.create_table(
        'rollout_site',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rollout_id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('wave', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('offered_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('installing_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['rollout_id'], ['rollout.id']),
        sa.ForeignKeyConstraint(['site_id'], ['site.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('rollout_id', 'site_id'),
    )
    with op.batch_alter_table('rollout_site', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rollout_site_rollout_id'), ['rollout_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_rollout_site_site_id'), ['site_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rollout_site', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_site_site_id'))
        batch_op.drop_index(batch_op.f('ix_rollout_site_rollout_id'))
    op.drop_table('rollout_site')
    with op.batch_alter_table('rollout', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rollout_release_id'))
    op.drop_table('rollout')
    op.drop_table('release')
