"""Alembic environment of the profile service; run programmatically by ``services.profile.db.migrate``."""

from __future__ import annotations

from alembic import context

from services.profile.models import Base

VERSION_TABLE = "profile_alembic_version"

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the profile migrations through services.profile.db.migrate(engine)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
