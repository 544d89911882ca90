"""secrets sealed with the portal's key; each site's backup key and its box's backups

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00
"""
from alembic import op
import sqlalchemy as sa

from portal import sealing


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'site_backup',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('site_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['site_id'], ['site.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('site_backup', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_site_backup_site_id'), ['site_id'], unique=False)
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_key', sa.Text(), nullable=True))
    with op.batch_alter_table('alarm_contact', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=128), type_=sa.Text(), existing_nullable=True)
    # What was stored in clear before is sealed now (a secret read back from the database alone
    # must not act as the office).
    bind = op.get_bind()
    for table, column in (("site_config", "text"), ("alarm_contact", "secret")):
        rows = bind.execute(sa.text(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")).all()
        for row_id, value in rows:
            if not sealing.is_sealed(value):
                bind.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                             {"v": sealing.seal_bytes(value.encode()), "id": row_id})


def downgrade() -> None:
    bind = op.get_bind()
    for table, column in (("site_config", "text"), ("alarm_contact", "secret")):
        for row_id, value in bind.execute(sa.text(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL")).all():
            if sealing.is_sealed(value):
                bind.execute(sa.text(f"UPDATE {table} SET {column} = :v WHERE id = :id"),
                             {"v": sealing.open_bytes(value).decode(), "id": row_id})
    with op.batch_alter_table('alarm_contact', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.Text(), type_=sa.String(length=128), existing_nullable=True)
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_column('backup_key')
    with op.batch_alter_table('site_backup', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_site_backup_site_id'))
    op.drop_table('site_backup')
