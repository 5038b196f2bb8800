"""Feedback kinds: a user's correction, or an audit label of a randomly sampled prediction.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a constrained column in place; existing rows are corrections
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), nullable=False, server_default="correction"))
        batch.create_index("ix_feedback_kind", ["kind"])
    op.create_index("ix_predictions_audit", "predictions", ["audit"])


def downgrade() -> None:
    op.drop_index("ix_predictions_audit", "predictions")
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index("ix_feedback_kind")
        batch.drop_column("kind")
