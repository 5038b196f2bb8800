"""Identities and erasures: a prediction records the identity whose token asked for it (so deleting
a user's data reaches their inputs), and every deletion or retention pass is recorded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("user", sa.String(200), nullable=True))
        batch.create_index("ix_predictions_user", ["user"])
    op.create_index("ix_feedback_user", "feedback", ["user"])
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("predictions", sa.Integer, nullable=False),
        sa.Column("feedback", sa.Integer, nullable=False),
        sa.Column("done_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_index("ix_feedback_user", "feedback")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_user")
        batch.drop_column("user")
