"""recordings' audio format: WAV (boxes before Opus, or set to keep WAV) or Ogg Opus

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 20:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recording') as batch:
        batch.add_column(sa.Column('audio_format', sa.String(length=8), server_default='wav', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('recording') as batch:
        batch.drop_column('audio_format')
