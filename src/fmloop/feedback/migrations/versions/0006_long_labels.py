"""Labels of any length: a token model's label is one tag per word of its input (a JSON list), so
a sentence of thirty words outgrows the 200 characters a class name needed. PostgreSQL refused
such a row (and the batch of predictions written with it); SQLite ignored the length.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _sqlite() -> bool:
    # SQLite keeps text of any length in a VARCHAR(200) column; altering it would copy and drop the
    # predictions table, which the feedback rows' foreign keys forbid.
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if _sqlite():
        return
    op.alter_column("predictions", "label", type_=sa.Text, existing_type=sa.String(200), existing_nullable=True)
    op.alter_column("feedback", "label", type_=sa.Text, existing_type=sa.String(200), existing_nullable=False)


def downgrade() -> None:
    if _sqlite():
        return
    op.alter_column("feedback", "label", type_=sa.String(200), existing_type=sa.Text, existing_nullable=False)
    op.alter_column("predictions", "label", type_=sa.String(200), existing_type=sa.Text, existing_nullable=True)
