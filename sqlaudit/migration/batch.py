"""Keep the audit triggers of a table that a batch migration recreates.

``op.batch_alter_table()`` on SQLite (or with ``recreate="always"``, on every
database) copies the table into ``_alembic_tmp_<name>``, drops the original and
renames the copy. Dropping a table drops its triggers, so the table would
silently stop being audited. sqlaudit notices the drop (a DDL event fired by
Alembic), saves the definitions of the table's ``sqlaudit_*`` triggers, and
re-creates them, verbatim with their fingerprint, right after the copy has been
renamed back (on MariaDB / MySQL without their DEFINER: the migrating account
becomes the definer, as when it installs them).

If the batch removed or renamed a column those triggers use, the migration
fails with :class:`~sqlaudit.exceptions.SQLAuditMigrationError`: replace the
triggers instead (``batch_op.create_audit_triggers([...])`` in the batch).
Offline (``--sql``) batch migrations are not followed; call
``op.create_audit_triggers`` after the batch block there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from alembic.ddl.base import RenameTable
from alembic.ddl.impl import DefaultImpl
from sqlalchemy import Table, event, inspect, text
from sqlalchemy.engine import Connection

from .. import _fingerprint
from ..ddl import _AuditDDL
from ..dialects import MYSQL_NAMES
from ..exceptions import SQLAuditMigrationError

log = logging.getLogger("sqlaudit")

_PENDING = "sqlaudit_batch_restore"  # Connection.info: {(schema, tmp, name): _Saved}
_SQLITE_QUERY = (
    "SELECT sql FROM {schema}sqlite_master WHERE type = 'trigger' AND tbl_name = :table "
    "AND name LIKE 'sqlaudit\\_%' ESCAPE '\\' ORDER BY name"
)
_PG_QUERY = text(
    """
    SELECT pg_get_triggerdef(t.oid) AS sql, obj_description(t.tgfoid, 'pg_proc') AS comment
    FROM pg_trigger AS t
    JOIN pg_class AS c ON c.oid = t.tgrelid
    JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal AND t.tgname LIKE 'sqlaudit\\_%'
      AND c.relname = :table AND n.nspname = coalesce(:schema, current_schema())
    ORDER BY t.tgname
    """
)
#: MariaDB / MySQL: enough to write each trigger's CREATE TRIGGER again (without
#: the DEFINER clause: the migrating account becomes the definer, as when it installs)
_MYSQL_QUERY = text(
    "SELECT TRIGGER_NAME AS name, ACTION_TIMING AS timing, EVENT_MANIPULATION AS event, "
    "ACTION_STATEMENT AS body FROM information_schema.TRIGGERS "
    "WHERE TRIGGER_SCHEMA = COALESCE(:schema, DATABASE()) AND EVENT_OBJECT_TABLE = :table "
    "AND TRIGGER_NAME LIKE 'sqlaudit\\_%' ORDER BY TRIGGER_NAME"
)


@dataclass
class _Saved:
    table: str
    schema: Optional[str]
    statements: list[str]
    fingerprint: Optional[dict[str, Any]]


def _temp_name(table_name: str) -> str:
    """The name Alembic's batch mode gives the copy (``ApplyBatchImpl._calc_temp_name``)."""
    return f"_alembic_tmp_{table_name}"[:50]


def _on_before_drop(table: Table, connection: Optional[Connection], **kw: Any) -> None:
    runner = kw.get("_ddl_runner")
    if not isinstance(runner, DefaultImpl) or runner.as_sql or connection is None:
        return
    if connection.dialect.name not in ("sqlite", "postgresql", *MYSQL_NAMES):
        return
    temp = _temp_name(table.name)
    if not inspect(connection).has_table(temp, schema=table.schema):
        return  # an ordinary drop_table, not a batch recreate
    saved = _saved_triggers(connection, table.name, table.schema)
    if saved is None:
        return
    log.info("batch recreate of %s: keeping its audit triggers", table.fullname)
    connection.info.setdefault(_PENDING, {})[(table.schema, temp, table.name)] = saved
    if not event.contains(connection, "after_execute", _on_after_execute):
        event.listen(connection, "after_execute", _on_after_execute)


def _saved_triggers(connection: Connection, name: str, schema: Optional[str]) -> Optional[_Saved]:
    if connection.dialect.name == "sqlite":
        prefix = f"{connection.dialect.identifier_preparer.quote_schema(schema)}." if schema else ""
        rows = connection.execute(text(_SQLITE_QUERY.format(schema=prefix)), {"table": name}).all()
        fingerprints = [_fingerprint.parse_sqlite(row.sql) for row in rows]
    elif connection.dialect.name in MYSQL_NAMES:
        return _saved_mysql_triggers(connection, name, schema)
    else:
        rows = connection.execute(_PG_QUERY, {"table": name, "schema": schema}).all()
        fingerprints = [_fingerprint.parse_pg(row.comment) for row in rows]
    if not rows:
        return None
    common = fingerprints[0] if all(fp == fingerprints[0] for fp in fingerprints) else None
    return _Saved(name, schema, [row.sql for row in rows], common)


def _saved_mysql_triggers(connection: Connection, name: str, schema: Optional[str]) -> Optional[_Saved]:
    rows = connection.execute(_MYSQL_QUERY, {"table": name, "schema": schema}).all()
    if not rows:
        return None
    prep = connection.dialect.identifier_preparer

    def qualified(object_name: str) -> str:
        quoted = str(prep.quote(object_name))
        return f"{prep.quote_schema(schema)}.{quoted}" if schema else quoted

    def trigger(row: Any) -> str:
        return (f"CREATE TRIGGER {qualified(row.name)} {row.timing} {row.event} "
                f"ON {qualified(name)} FOR EACH ROW {row.body}")

    fingerprints = [_fingerprint.parse_mysql(row.body) for row in rows]
    common = fingerprints[0] if all(fp == fingerprints[0] for fp in fingerprints) else None
    return _Saved(name, schema, [trigger(row) for row in rows], common)


def _on_after_execute(connection: Connection, clauseelement: Any, *args: Any) -> None:
    if not isinstance(clauseelement, RenameTable):
        return
    pending = connection.info.get(_PENDING) or {}
    key = (clauseelement.schema, clauseelement.table_name, clauseelement.new_table_name)
    saved = pending.pop(key, None)
    if saved is None:
        return
    _check_columns(connection, saved)
    for sql in saved.statements:
        connection.execute(_AuditDDL(sql))


def _check_columns(connection: Connection, saved: _Saved) -> None:
    if saved.fingerprint is None:
        return
    present = {c["name"] for c in inspect(connection).get_columns(saved.table, schema=saved.schema)}
    used = list(dict.fromkeys([*saved.fingerprint.get("fields", []),
                               *saved.fingerprint.get("key", [])]))
    missing = [name for name in used if name not in present]
    if missing:
        raise SQLAuditMigrationError(
            f"the batch migration of table {saved.table!r} removed or renamed column(s) "
            f"{missing} that its audit triggers use, so they cannot be kept. Replace them: "
            f"call batch_op.create_audit_triggers([...]) inside the batch with the new "
            f"column names (or op.drop_audit_triggers({saved.table!r}) before the batch and "
            f"op.create_audit_triggers({saved.table!r}, [...]) after it)."
        )


def register() -> None:
    """Follow batch recreates of every Table (idempotent)."""
    if not event.contains(Table, "before_drop", _on_before_drop):
        event.listen(Table, "before_drop", _on_before_drop)


register()
