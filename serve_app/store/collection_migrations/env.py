"""Alembic environment for ONE collection schema, on the connection `versions.migrate()`
hands over (it holds the transaction and the advisory lock).

Revisions name their tables in the placeholder schema (`collection_schema.PLACEHOLDER`) and
use SQLAlchemy constructs (`op.create_table`, ...), never raw SQL: the placeholder is
translated to the schema being upgraded, whose own `alembic_version` records its revision.
"""

from alembic import context

from serve_app.store.collection_schema import PLACEHOLDER, quoted_schema

connection = context.config.attributes.get("connection")
schema_name = context.config.attributes.get("schema")
if connection is None or schema_name is None:
    raise RuntimeError("run migrations through serve_app.store.versions.migrate(engine)")
quoted_schema(schema_name)  # validates

before = connection.get_execution_options().get("schema_translate_map")
connection.execution_options(schema_translate_map={PLACEHOLDER: schema_name})
try:
    context.configure(
        connection=connection,
        version_table_schema=schema_name,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
finally:
    # execution_options changes the connection in place: the caller's next statements
    # must not see this schema's translation.
    connection.execution_options(schema_translate_map=before)
