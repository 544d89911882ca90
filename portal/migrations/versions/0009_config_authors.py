"""who saved each config version and what it changed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('site_config', schema=None) as batch_op:
        batch_op.add_column(sa.Column('author', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('summary', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('site_config', schema=None) as batch_op:
        batch_op.drop_column('summary')
        batch_op.drop_column('author')
