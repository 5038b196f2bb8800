"""Alembic environment: fmloop runs migrations itself (`Store.migrate`), on the connection it
hands over in `config.attributes["connection"]`."""

from alembic import context

from fmloop.feedback.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
