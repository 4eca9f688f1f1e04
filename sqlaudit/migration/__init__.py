"""Alembic integration (internal modules; ``import sqlaudit.alembic`` loads them).

* :mod:`.ops` - the operation objects ``create_audit_triggers`` / ``drop_audit_triggers``;
* :mod:`.impl` - runs them with the same per-dialect SQL as ``create_all``;
* :mod:`.batch` - keeps triggers across a batch ("move and copy") table recreate;
* :mod:`.compare` - the autogenerate comparator (missing, outdated, orphaned triggers);
* :mod:`.render` - writes the operations into migration files;
* :mod:`.plugin` - the ``alembic.plugins`` entry point (Alembic 1.18+).

Everything here needs Alembic; the core package never imports it.
"""
