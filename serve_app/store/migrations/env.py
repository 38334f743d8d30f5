"""Alembic environment: runs on the connection `versions.migrate()` hands over.

`migrate()` already holds a transaction and an advisory lock on that connection, so this
only points Alembic at it and at the control schema's version table.
"""

from alembic import context

from serve_app.store.control import CONTROL_SCHEMA

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through serve_app.store.versions.migrate(engine)")

context.configure(
    connection=connection,
    version_table_schema=CONTROL_SCHEMA,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
