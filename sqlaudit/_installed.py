"""Read back which audit triggers a database has (internal).

Only triggers named ``sqlaudit_*`` are looked at: sqlaudit never touches
triggers it does not own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from . import _fingerprint
from ._naming import pg_function_name_of

_PG_QUERY = text(
    """
    SELECT n.nspname AS schema_name, c.relname AS table_name, t.tgname AS trigger_name,
           pg_catalog.obj_description(t.tgfoid, 'pg_proc') AS comment, p.proname AS function_name
    FROM pg_catalog.pg_trigger AS t
    JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
    WHERE NOT t.tgisinternal AND t.tgname LIKE 'sqlaudit\\_%'
      AND c.relname NOT IN ('sqlaudit_log', 'sqlaudit_seal')
    """
)
_SQLITE_QUERY = text(
    "SELECT name, tbl_name, sql FROM sqlite_master "
    "WHERE type = 'trigger' AND name LIKE 'sqlaudit\\_%' ESCAPE '\\' "
    "AND tbl_name NOT IN ('sqlaudit_log', 'sqlaudit_seal')"
)
_MYSQL_QUERY = text(
    "SELECT TRIGGER_SCHEMA AS schema_name, TRIGGER_NAME AS name, EVENT_OBJECT_TABLE AS tbl_name, "
    "ACTION_STATEMENT AS `sql` "
    "FROM information_schema.TRIGGERS "
    "WHERE (TRIGGER_SCHEMA = DATABASE() OR TRIGGER_SCHEMA IN :schemas) "
    "AND TRIGGER_NAME LIKE 'sqlaudit\\_%' "
    "AND EVENT_OBJECT_TABLE NOT IN ('sqlaudit_log', 'sqlaudit_seal')"
).bindparams(bindparam("schemas", expanding=True))
#: trigger names per table that a complete installation has
EXPECTED = {"postgresql": 4, "sqlite": 4, "mysql": 3, "mariadb": 3}


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


#: The first schema of search_path that exists and is not the session's TEMP schema
#: (``current_schema()`` returns pg_temp_N when search_path names pg_temp first).
FIRST_SCHEMA = (
    "SELECT s.name FROM unnest(pg_catalog.current_schemas(false)) WITH ORDINALITY AS s(name, n) "
    "WHERE s.name NOT LIKE 'pg\\_temp\\_%' ORDER BY s.n LIMIT 1"
)


def default_schema(connection: Connection) -> Optional[str]:
    """The schema an unqualified name means: PostgreSQL's first schema of search_path,
    MariaDB's current database (None when none is selected), None on SQLite."""
    if connection.dialect.name == "postgresql":
        return str(connection.execute(text(FIRST_SCHEMA)).scalar())
    if connection.dialect.name in ("mysql", "mariadb"):
        database = connection.execute(text("SELECT DATABASE()")).scalar()
        return str(database) if database is not None else None
    return None


def reflected_name(name: str, connection: Connection) -> str:
    """A column or table name as SQLAlchemy's inspector returns it, as it really is:
    the MySQL inspector parses SHOW CREATE TABLE and keeps a backtick in a name doubled
    (``a``b`` for ``a`b``), which this undoes."""
    if connection.dialect.name in ("mysql", "mariadb"):
        return name.replace("``", "`")
    return name


_PG_DESCENDANTS = text(
    """
    WITH RECURSIVE tree(relid) AS (
        SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i WHERE i.inhparent = to_regclass(:table)
        UNION
        SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i JOIN tree ON i.inhparent = tree.relid)
    SELECT n.nspname AS schema_name, c.relname AS table_name,
           (SELECT count(*) FROM pg_catalog.pg_trigger AS t
            WHERE t.tgrelid = c.oid AND NOT t.tgisinternal AND t.tgname LIKE 'sqlaudit\\_%'
              AND t.tgfoid = to_regprocedure(:function)) AS triggers
    FROM tree
    JOIN pg_catalog.pg_class AS c ON c.oid = tree.relid
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p')
    ORDER BY n.nspname, c.relname
    """
)


@dataclass
class Descendant:
    """A partition or inheritance child of a tracked table, and how many of the
    tracked table's triggers it carries."""

    schema: str
    table: str
    triggers: int


def pg_descendants(connection: Connection, table: str, function: str) -> list[Descendant]:
    """Every partition and inheritance child (recursively) of ``table`` (a qualified,
    quoted name), with the count of its sqlaudit triggers running ``function``."""
    rows = connection.execute(_PG_DESCENDANTS, {"table": table, "function": function + "()"})
    return [Descendant(r.schema_name, r.table_name, int(r.triggers)) for r in rows]


def _folds_case(connection: Connection) -> bool:
    """Whether the MariaDB server compares table and database names case-insensitively
    (``lower_case_table_names`` 1 or 2, fixed for the server's life: read once per
    connection)."""
    if connection.dialect.name not in ("mysql", "mariadb"):
        return False
    folds = connection.info.get("sqlaudit_folds_case")
    if folds is None:
        value = connection.execute(text("SELECT @@lower_case_table_names")).scalar()
        folds = connection.info["sqlaudit_folds_case"] = bool(value)
    return bool(folds)


def installed_key(connection: Connection, schema: Optional[str],
                  table: str) -> tuple[Optional[str], str]:
    """The key of ``installed_triggers`` for a table: its (schema, name), in lower case
    where the server folds the case of names (a table ``Orders`` is ``orders`` there)."""
    if _folds_case(connection):
        return (schema.lower() if schema else schema), table.lower()
    return schema, table


def installed_triggers(connection: Connection, schemas: Iterable[Optional[str]] = ()
                       ) -> dict[tuple[Optional[str], str], InstalledTriggers]:
    """sqlaudit triggers in the database, keyed by (schema, table). On MariaDB, those
    of the current database and of the databases named in ``schemas``, keyed by their
    database's name."""
    found: dict[tuple[Optional[str], str], InstalledTriggers] = {}
    if connection.dialect.name == "postgresql":
        for row in connection.execute(_PG_QUERY):
            if row.function_name != pg_function_name_of(row.table_name):
                continue  # a partition's or child's trigger: it belongs to its ancestor
            key = (row.schema_name, row.table_name)
            entry = found.setdefault(key, InstalledTriggers(row.schema_name, row.table_name, 0, []))
            entry.count += 1
            entry.fingerprints.append(_fingerprint.parse_pg(row.comment))
    elif connection.dialect.name in ("mysql", "mariadb"):
        named = sorted({s for s in schemas if s}) or [""]  # IN () is not SQL
        for row in connection.execute(_MYSQL_QUERY, {"schemas": named}):
            key = installed_key(connection, row.schema_name, row.tbl_name)
            entry = found.setdefault(key, InstalledTriggers(*key, 0, []))
            entry.count += 1
            entry.fingerprints.append(_fingerprint.parse_mysql(row.sql))
    else:
        for row in connection.execute(_SQLITE_QUERY):
            if row.name.startswith("sqlaudit_stamp"):
                continue
            key = (None, row.tbl_name)
            entry = found.setdefault(key, InstalledTriggers(None, row.tbl_name, 0, []))
            entry.count += 1
            entry.fingerprints.append(_fingerprint.parse_sqlite(row.sql))
    return found
