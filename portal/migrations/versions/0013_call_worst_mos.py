"""each call's worse leg's MOS, for the quality page and poor-line alarms

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 12:00:00
"""
import json

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mos_min', sa.Float(), nullable=True))
    bind = op.get_bind()
    for site_id, call_id, quality in bind.execute(sa.text("SELECT site_id, id, quality FROM call WHERE quality IS NOT NULL")):
        try:
            legs = json.loads(quality)
            scores = [leg["mos"] for leg in legs.values() if isinstance(leg, dict) and isinstance(leg.get("mos"), (int, float))]
        except (ValueError, AttributeError):
            continue
        if scores:
            bind.execute(sa.text("UPDATE call SET mos_min = :m WHERE site_id = :s AND id = :i"),
                         {"m": min(scores), "s": site_id, "i": call_id})


def downgrade() -> None:
    with op.batch_alter_table('call', schema=None) as batch_op:
        batch_op.drop_column('mos_min')
