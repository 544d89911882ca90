"""who answered a call and which extensions it rang; the site's time zone

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 05:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answered_by', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('rang', sa.String(length=255), nullable=True))
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), nullable=False, server_default='UTC'))


def downgrade() -> None:
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_column('timezone')
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.drop_column('rang')
        batch_op.drop_column('answered_by')
