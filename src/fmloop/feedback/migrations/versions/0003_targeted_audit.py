"""Targeted audit requests: a prediction may join the audit because a challenger disagrees with the
champion on it (audit_for names the challenger, audit_rank its place in a random order), not only
by the server's uniform sample (audit_for empty).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("audit_for", sa.String(120), nullable=True))
        batch.add_column(sa.Column("audit_rank", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("audit_rank")
        batch.drop_column("audit_for")
