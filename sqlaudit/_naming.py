"""Names of every object sqlaudit creates: one prefix, so ownership is obvious."""

from __future__ import annotations

import hashlib

from sqlalchemy import Table

PREFIX = "sqlaudit_"
AUDIT_TABLE_NAME = "sqlaudit_log"
_PG_MAX_IDENTIFIER = 63


def _fit(name: str, limit: int = _PG_MAX_IDENTIFIER) -> str:
    """Shorten ``name`` to ``limit`` bytes, keeping it unique with a short hash."""
    if len(name.encode("utf-8")) <= limit:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    head = name.encode("utf-8")[: limit - 9].decode("utf-8", "ignore")
    return f"{head}_{digest}"


def pg_function_name(table: Table) -> str:
    """Name of the PostgreSQL trigger function of ``table`` (in the table's schema)."""
    return pg_function_name_of(table.name)


def pg_function_name_of(table_name: str) -> str:
    return _fit(f"{PREFIX}fn_{table_name}")


def sqlite_trigger_name(table: Table, operation: str) -> str:
    """SQLite trigger names are per database, so they carry the table name."""
    return f"{PREFIX}{table.name}_{operation}"


_MYSQL_MAX_IDENTIFIER = 64


def mysql_trigger_name(table: Table, operation: str) -> str:
    """MariaDB / MySQL trigger names are per database (schema), so they carry the table
    name, shortened with a hash to the 64 characters an identifier may have."""
    return mysql_trigger_name_of(table.name, operation)


def mysql_trigger_name_of(table_name: str, operation: str) -> str:
    return _fit(f"{PREFIX}{table_name}_{operation}", _MYSQL_MAX_IDENTIFIER)
