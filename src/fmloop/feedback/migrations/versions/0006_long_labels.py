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


def upgrade() -> None:
    # batch mode: SQLite cannot alter a column in place; alembic copies the table there
    with op.batch_alter_table("predictions") as table:
        table.alter_column("label", type_=sa.Text, existing_type=sa.String(200), existing_nullable=True)
    with op.batch_alter_table("feedback") as table:
        table.alter_column("label", type_=sa.Text, existing_type=sa.String(200), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("feedback") as table:
        table.alter_column("label", type_=sa.String(200), existing_type=sa.Text, existing_nullable=False)
    with op.batch_alter_table("predictions") as table:
        table.alter_column("label", type_=sa.String(200), existing_type=sa.Text, existing_nullable=True)
