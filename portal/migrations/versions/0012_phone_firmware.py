"""phone firmware files and their pins (fleet-wide or per site)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'phone_firmware',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('vendor', sa.String(length=32), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('version', sa.String(length=64), nullable=False),
        sa.Column('filename', sa.String(length=200), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('uploaded_by', sa.String(length=120), nullable=False),
        sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('vendor', 'model', 'version'),
    )
    op.create_table(
        'firmware_pin',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('vendor', sa.String(length=32), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=True),
        sa.Column('firmware_id', sa.Integer(), nullable=False),
        sa.Column('pinned_by', sa.String(length=120), nullable=False),
        sa.Column('pinned_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['firmware_id'], ['phone_firmware.id']),
        sa.ForeignKeyConstraint(['site_id'], ['site.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('firmware_pin', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_firmware_pin_site_id'), ['site_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('firmware_pin', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_firmware_pin_site_id'))
    op.drop_table('firmware_pin')
    op.drop_table('phone_firmware')
