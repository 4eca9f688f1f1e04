"""Read back which audit triggers a database has (internal).

Only triggers named ``sqlaudit_*`` are looked at: sqlaudit never touches
triggers it does not own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.engine import Connection

from . import _fingerprint

_PG_QUERY = text(
    """
    SELECT n.nspname AS schema_name, c.relname AS table_name, t.tgname AS trigger_name,
           pg_catalog.obj_description(t.tgfoid, 'pg_proc') AS comment
    FROM pg_catalog.pg_trigger AS t
    JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE NOT t.tgisinternal AND t.tgname LIKE 'sqlaudit\\_%' AND c.relname <> 'sqlaudit_log'
    """
)
_SQLITE_QUERY = text(
    "SELECT name, tbl_name, sql FROM sqlite_master "
    "WHERE type = 'trigger' AND name LIKE 'sqlaudit\\_%' ESCAPE '\\' AND tbl_name <> 'sqlaudit_log'"
)
#: trigger names per table that a complete installation has
EXPECTED = {"postgresql": 4, "sqlite": 4}


@dataclass
class InstalledTriggers:
    """The sqlaudit triggers found on one table."""

    schema: Optional[str]
    table: str
    count: int
    fingerprints: list[Optional[dict[str, Any]]]

    @property
    def fingerprint(self) -> Optional[dict[str, Any]]:
        """The common fingerprint of the triggers, or None if absent or inconsistent."""
        first = self.fingerprints[0] if self.fingerprints else None
        return first if all(fp == first for fp in self.fingerprints) else None


def default_schema(connection: Connection) -> Optional[str]:
    if connection.dialect.name == "postgresql":
        return str(connection.execute(text("SELECT pg_catalog.current_schema()")).scalar())
    return None


def installed_triggers(connection: Connection) -> dict[tuple[Optional[str], str], InstalledTriggers]:
    """sqlaudit triggers in the database, keyed by (schema, table)."""
    found: dict[tuple[Optional[str], str], InstalledTriggers] = {}
    if connection.dialect.name == "postgresql":
        for row in connection.execute(_PG_QUERY):
            key = (row.schema_name, row.table_name)
            entry = found.setdefault(key, InstalledTriggers(row.schema_name, row.table_name, 0, []))
            entry.count += 1
            entry.fingerprints.append(_fingerprint.parse_pg(row.comment))
    else:
        for row in connection.execute(_SQLITE_QUERY):
            if row.name.startswith("sqlaudit_stamp"):
                continue
            key = (None, row.tbl_name)
            entry = found.setdefault(key, InstalledTriggers(None, row.tbl_name, 0, []))
            entry.count += 1
            entry.fingerprints.append(_fingerprint.parse_sqlite(row.sql))
    return found
