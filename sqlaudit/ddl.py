"""Install, remove and render the audit triggers.

``@track_table`` attaches :func:`_attach_to_table` so that
``metadata.create_all()`` installs the triggers of every tracked table it
creates and ``drop_all()`` removes them. For databases that already exist use
:func:`install_audit_triggers` (or the Alembic operations).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import warnings
from enum import Enum
from datetime import datetime, timezone
from typing import Any, Iterable, Optional, Union

from sqlalchemy import MetaData, Table, UniqueConstraint, and_, event, false, or_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, DropTable, ExecutableDDLElement

from ._naming import AUDIT_TABLE_NAME, sqlite_trigger_name
from ._installed import (EXPECTED, default_schema, installed_key, installed_triggers,
                         pg_descendants, reflected_name)
from . import _export, _templates
from .config import _display_zone
from .dialects import flavour, is_mysql, module_for, rendering_dialect
from .hooks import _forget_sqlite_context
from .exceptions import (SQLAuditArgumentError, SQLAuditArgumentTypeError, SQLAuditError,
                         SQLAuditTableNotInDatabaseError, SQLAuditUnsafeKeyError,
                         SQLAuditUnsupportedDialectError, SQLAuditWarning)
from .schema import HISTORY_MARKER, audit_table, log_schema, rows_of_table
from .spec import ModelOrTable, TableSpec, check_require_user, spec_for, table_of, tracked_tables

__all__ = [
    "AuditState",
    "audit_status",
    "create_audit_log",
    "drop_audit_log",
    "drop_audit_triggers",
    "export_audit_log",
    "grant_audit_read",
    "import_audit_log",
    "install_audit_triggers",
    "maintain_audit_partitions",
    "partition_audit_log",
    "prune_audit_log",
    "render_audit_ddl",
]

log = logging.getLogger("sqlaudit")

Bind = Union[Engine, Connection, Session]


class _AuditDDL(ExecutableDDLElement):
    """One rendered statement, executed verbatim (``%`` escaped for the driver)."""

    inherit_cache = False

    def __init__(self, sql: str) -> None:
        self.sql = sql


@compiles(_AuditDDL)
def _compile_audit_ddl(element: _AuditDDL, compiler: Any, **kw: Any) -> str:
    return str(compiler.sql_compiler.post_process_text(element.sql))


@compiles(DropTable)
def _compile_drop_table(element: DropTable, compiler: Any, **kw: Any) -> str:
    """``metadata.drop_all()`` never drops a history table (``sqlaudit_log``, ``sqlaudit_seal``).

    The log is shared by every tracked MetaData of the database: dropping one
    application's tables must not erase the history of all of them, nor break
    the other tables' writes. Their "drop" is a harmless statement instead;
    :func:`drop_audit_log` is the explicit way to remove them. A table built
    without the marker (Alembic's ``op.drop_table``) is dropped as usual.
    """
    table = element.element
    if isinstance(table, Table) and table.info.get(HISTORY_MARKER):
        log.info("drop_all() keeps %s (history); use sqlaudit.ddl.drop_audit_log()", table.fullname)
        return f"SELECT 1 /* sqlaudit: {table.name} keeps its history */"
    return str(compiler.visit_drop_table(element, **kw))


def _is_unique(connection: Optional[Connection], spec: TableSpec) -> bool:
    """Whether the key columns identify one row: a primary key, unique constraint or
    unique index of the model covers them, or else one in the database does."""
    table = spec.table
    keys = {c.name for c in spec.key_columns}
    sets = [{c.name for c in table.primary_key.columns}]
    sets += [{c.name for c in k.columns} for k in table.constraints
             if isinstance(k, UniqueConstraint)]
    sets += [{c.name for c in i.columns} for i in table.indexes if i.unique]
    sets += [{c.name} for c in table.columns if c.unique]
    if any(s and s <= keys for s in sets):
        return True
    if connection is None:
        return False
    insp = sa_inspect(connection)
    found = [set(insp.get_pk_constraint(table.name, schema=table.schema)["constrained_columns"])]
    found += [set(u["column_names"]) for u in insp.get_unique_constraints(table.name, schema=table.schema)]
    found += [{c for c in i["column_names"] if c is not None}
              for i in insp.get_indexes(table.name, schema=table.schema)
              if i.get("unique") and None not in i["column_names"]]
    found = [{reflected_name(c, connection) for c in s} for s in found]
    return any(s and s <= keys for s in found)


def _check_key(connection: Optional[Connection], spec: TableSpec) -> None:
    """Refuse a table whose resource key is not unique (its history would mix rows)."""
    if not _is_unique(connection, spec):
        names = [c.name for c in spec.key_columns]
        shown = repr(names[0]) if len(names) == 1 else repr(names)
        raise SQLAuditUnsafeKeyError(
            f"resource_id_field {shown} of table {spec.table.fullname!r} is not unique: no "
            f"primary key, unique constraint or unique index covers it, so its changes could "
            f"not be told apart row by row. Add a unique constraint on it, or leave "
            f"resource_id_field unset to use the primary key."
        )


def _descendants(connection: Connection, spec: TableSpec) -> list[Any]:
    """PostgreSQL: the partitions and inheritance children of ``spec``'s table."""
    if connection.dialect.name != "postgresql":
        return []
    from .dialects import postgresql as pg_sql

    dialect = rendering_dialect("postgresql")
    names = pg_sql._common(spec, dialect)
    return pg_descendants(connection, names["table"], names["function_name"])


def _descendants_sql(connection: Connection, spec: TableSpec) -> list[str]:
    """The triggers of every partition and inheritance child of ``spec``'s table."""
    found = _descendants(connection, spec)
    if not found:
        return []
    from .dialects import postgresql as pg_sql

    return pg_sql.descendant_statements(spec, rendering_dialect("postgresql"),
                                        [(d.schema, d.table) for d in found])


def _install_sql(table: Table, connection: Connection) -> list[str]:
    name = flavour(connection.dialect)
    spec = spec_for(table)
    _check_key(connection, spec)
    statements = list(module_for(name).install_statements(
        spec, rendering_dialect(name), default_schema(connection)))
    if name == "sqlite" and not sa_inspect(connection).has_table(AUDIT_TABLE_NAME):
        # create_all() makes the log later; its after_create adds the fail-closed check
        statements = statements[: -len(module_for(name).require_statements(spec, rendering_dialect(name)))]
    return statements + _descendants_sql(connection, spec)


def _installation_sql(spec: TableSpec, dialect_name: str, schema: Optional[str]) -> list[str]:
    """Everything that installing ``spec``'s triggers runs, after ``sqlaudit_log`` exists:
    the audit table's append-only guards, then the table's triggers. Shared by
    :func:`install_audit_triggers` and the Alembic operation (one source of SQL)."""
    module, dialect = module_for(dialect_name), rendering_dialect(dialect_name)
    return [
        *module.protect_statements(spec.table.metadata, dialect, schema),
        *module.install_statements(spec, dialect, schema),
    ]


def _upgrade_audit_table(connection: Connection, log_table: Table) -> None:
    """SQLite, MariaDB / MySQL: add the columns and indexes ``sqlaudit_log`` gained since
    it was created (PostgreSQL's install SQL does this itself, so offline scripts do it too)."""
    if is_mysql(connection.dialect.name):
        _upgrade_mysql_audit_table(connection, log_table)
        return
    if connection.dialect.name != "sqlite":
        return
    prep = connection.dialect.identifier_preparer
    existing = {row[1] for row in connection.exec_driver_sql(
        "SELECT 1, name FROM pragma_table_info('sqlaudit_log', 'main')")}
    if not existing:
        return
    _add_later_columns(connection, log_table, f"main.{prep.quote(AUDIT_TABLE_NAME)}", existing)
    for index in log_table.indexes:
        connection.execute(CreateIndex(index, if_not_exists=True))


def _add_later_columns(connection: Connection, log_table: Table, qualified: str,
                       existing: set[str]) -> None:
    """Add to the log ``qualified`` the columns it gained since it was created that
    ``existing`` (its column names) lacks."""
    from .schema import LATER_COLUMNS

    prep = connection.dialect.identifier_preparer
    for name in LATER_COLUMNS:
        if name not in existing:
            connection.exec_driver_sql(
                f"ALTER TABLE {qualified} ADD COLUMN {prep.quote(name)} "
                f"{log_table.c[name].type.compile(connection.dialect)}")


def _upgrade_mysql_audit_table(connection: Connection, log_table: Table) -> None:
    """MariaDB / MySQL: the missing columns and indexes of an existing log, read from
    the database (MySQL has no ``ADD COLUMN IF NOT EXISTS``)."""
    from .schema import mysql_index_ddl

    insp = sa_inspect(connection)
    if not insp.has_table(log_table.name, schema=log_table.schema):
        return
    existing = {c["name"] for c in insp.get_columns(log_table.name, schema=log_table.schema)}
    _add_later_columns(connection, log_table,
                       connection.dialect.identifier_preparer.format_table(log_table), existing)
    indexes = {i["name"] for i in insp.get_indexes(log_table.name, schema=log_table.schema)}
    for name, ddl in mysql_index_ddl(log_table, connection.dialect):
        if name not in indexes:
            connection.execute(_AuditDDL(ddl))


def _protect(connection: Connection, metadata: MetaData) -> None:
    """Install the append-only guards (and fail-closed check) on the audit table."""
    name = connection.dialect.name
    module = module_for(name)
    _run(connection, module.protect_statements(metadata, rendering_dialect(name), default_schema(connection)))


def _drop_sql(table: Table, dialect: Dialect) -> list[str]:
    name = dialect.name
    return list(module_for(name).drop_statements(spec_for(table), rendering_dialect(name)))


def _run(connection: Connection, statements: Iterable[str]) -> None:
    for sql in statements:
        connection.execute(_AuditDDL(sql))


def _validate_installed(connection: Connection, table: Table) -> None:
    """Compile (without running) an insert, update and delete on ``table`` so that
    SQLite reports any problem in the trigger programs now, not at the first write.

    PostgreSQL validates PL/pgSQL at CREATE FUNCTION time already.
    """
    if connection.dialect.name != "sqlite":
        return
    prep = connection.dialect.identifier_preparer
    name = prep.format_table(table)
    first = prep.quote(table.columns[0].name)
    probes = (
        f"EXPLAIN INSERT INTO {name} DEFAULT VALUES",
        f"EXPLAIN UPDATE {name} SET {first} = {first} WHERE 0",
        f"EXPLAIN DELETE FROM {name} WHERE 0",
    )
    nonce = secrets.token_hex(4)  # defeats the driver's statement cache: compile afresh
    for sql in probes:
        try:
            connection.exec_driver_sql(f"{sql} /* {nonce} */").fetchall()
        except DBAPIError as exc:
            raise SQLAuditError(
                f"the audit triggers installed on {table.fullname!r} do not compile: "
                f"{exc.orig}; this is a bug in sqlaudit, please report it with the table definition."
            ) from exc


def _on_after_create(table: Table, connection: Connection, **kw: Any) -> None:
    if "sqlaudit" not in table.info:
        return
    log.info("installing audit triggers on %s", table.fullname)
    _install_atomically(connection, table, _install_sql(table, connection))


def _install_atomically(connection: Connection, table: Table, statements: Iterable[str],
                        validate: bool = False) -> None:
    """Run one table's install statements. On SQLite they run in a savepoint, so a
    table whose triggers SQLite refuses (its expression limits) is left with none of
    them, never half-installed; the error says so."""
    if is_mysql(connection.dialect.name):
        _warn_if_not_transactional(connection, table)
    if connection.dialect.name != "sqlite":
        _run(connection, statements)
        return
    connection.exec_driver_sql("SAVEPOINT sqlaudit_install")
    try:
        _run(connection, statements)
        if validate:
            _validate_installed(connection, table)
    except (DBAPIError, SQLAuditError) as exc:
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT sqlaudit_install")
        connection.exec_driver_sql("RELEASE SAVEPOINT sqlaudit_install")
        reason = exc.orig if isinstance(exc, DBAPIError) else exc
        raise SQLAuditError(
            f"SQLite refused the audit triggers of table {table.fullname!r} "
            f"({len(spec_for(table).columns)} tracked columns): {reason}; nothing was "
            f"installed on it. Track fewer columns, or raise the connection's SQLite limits."
        ) from exc
    connection.exec_driver_sql("RELEASE SAVEPOINT sqlaudit_install")


def _warn_if_not_transactional(connection: Connection, table: Table) -> None:
    """MariaDB / MySQL: warn when ``table``'s storage engine has no transactions (MyISAM,
    Aria, MEMORY, ...): a rolled-back write to it stays, while its record, in the InnoDB
    log, rolls back with the transaction."""
    from sqlalchemy import text

    row = connection.execute(text(
        "SELECT t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES t "
        "LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE "
        "WHERE t.TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND t.TABLE_NAME = :name"),
        {"schema": table.schema, "name": table.name}).first()
    if row is not None and row[1] == "NO":
        warnings.warn(SQLAuditWarning(
            f"table {table.fullname!r} is stored in {row[0]}, which has no transactions: a "
            f"write to it that is rolled back stays, while its audit record rolls back with "
            f"the transaction. Convert it (ALTER TABLE ... ENGINE=InnoDB) to keep every write "
            f"recorded."), stacklevel=_outside_stacklevel())


def _outside_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside sqlaudit, SQLAlchemy, Alembic and
    contextlib, as the function that calls this one gives it to warnings.warn: the
    application's line that installed (create_all, install_audit_triggers, a migration)."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] in (
            "sqlaudit", "sqlalchemy", "alembic", "contextlib"):
        frame, level = frame.f_back, level + 1
    return level


def _on_audit_table_creating(table: Table, connection: Connection, **kw: Any) -> None:
    _forget_sqlite_context(connection)


def _on_audit_table_created(table: Table, connection: Connection, **kw: Any) -> None:
    _protect(connection, table.metadata)
    if connection.dialect.name == "sqlite":
        # SQLite's fail-closed checks live on the log: tables create_all made
        # before it get theirs now.
        from .dialects import sqlite as sqlite_sql

        dialect = rendering_dialect("sqlite")
        existing = set(sa_inspect(connection).get_table_names())
        for tracked in tracked_tables(table.metadata):
            spec = spec_for(tracked)
            if spec.require_user and tracked.name in existing:
                _run(connection, sqlite_sql.require_statements(spec, dialect))


def _on_before_drop(table: Table, connection: Connection, **kw: Any) -> None:
    if "sqlaudit" not in table.info:
        return
    log.info("removing audit triggers from %s", table.fullname)
    _run(connection, _drop_sql(table, connection.dialect))


def _on_metadata_created(metadata: MetaData, connection: Connection, **kw: Any) -> None:
    """After ``create_all`` (audit table included) check the new SQLite triggers compile."""
    for table in kw.get("tables") or ():
        if "sqlaudit" in table.info:
            _validate_installed(connection, table)


def _attach_to_table(table: Table) -> None:
    """Make ``create_all``/``drop_all`` install and remove the triggers of ``table``."""
    if not event.contains(table.metadata, "after_create", _on_metadata_created):
        event.listen(table.metadata, "after_create", _on_metadata_created)
    log_table = audit_table(table.metadata)
    if not event.contains(log_table, "after_create", _on_audit_table_created):
        event.listen(log_table, "before_create", _on_audit_table_creating)
        event.listen(log_table, "after_create", _on_audit_table_created)
    if not event.contains(table, "after_create", _on_after_create):
        event.listen(table, "after_create", _on_after_create)
    if not event.contains(table, "before_drop", _on_before_drop):
        event.listen(table, "before_drop", _on_before_drop)


def _tables(models: Iterable[Union[ModelOrTable, MetaData]]) -> list[Table]:
    tables: list[Table] = []
    for model in models:
        if isinstance(model, MetaData):
            found = list(tracked_tables(model))
        else:
            spec_for(model)  # raises a clear error naming an untracked model
            found = [table_of(model)]
        for table in found:
            if table not in tables:
                tables.append(table)
    if not tables:
        raise SQLAuditArgumentError(
            "no tracked models given; pass the @track_table models (or their MetaData)."
        )
    return tables


def _with_connection(bind: Bind, work: Any) -> None:
    if isinstance(bind, Session):
        work(bind.connection())
    elif isinstance(bind, Connection):
        work(bind)
    elif isinstance(bind, Engine):
        with bind.begin() as connection:
            work(connection)
    else:
        raise SQLAuditArgumentTypeError(f"expected an Engine, Connection or Session, got {bind!r}")


def install_audit_triggers(bind: Bind, *models: Union[ModelOrTable, MetaData],
                           require_user_id: Optional[bool] = None) -> None:
    """Install (or replace) the audit triggers of ``models`` on existing tables.

    Creates ``sqlaudit_log`` when it is missing. Idempotent: installing twice
    replaces the triggers and never doubles records. Given an Engine it runs in
    its own transaction; given a Connection or Session it runs in theirs.
    ``require_user_id`` installs fail-closed (True) or fail-open (False) checks
    whatever the models declare; ``None`` installs what each model declares
    (``@track_table(require_user_id=...)``, else ``SQLAuditConfig.require_user_id``).
    """
    check_require_user(require_user_id)
    tables = _tables(models)

    def work(connection: Connection) -> None:
        for metadata in {t.metadata for t in tables}:
            audit_table(metadata).create(connection, checkfirst=True)
            _upgrade_audit_table(connection, audit_table(metadata))
        schema = default_schema(connection)
        for table in tables:
            if not sa_inspect(connection).has_table(table.name, schema=table.schema):
                raise SQLAuditError(
                    f"table {table.fullname!r} does not exist in this database; create it "
                    f"first (metadata.create_all() or a migration), then install its triggers."
                )
            log.info("installing audit triggers on %s", table.fullname)
            spec = spec_for(table)
            _check_key(connection, spec)
            if require_user_id is not None:
                spec = dataclasses.replace(spec, require_user=require_user_id)
            _install_atomically(connection, table,
                                _installation_sql(spec, flavour(connection.dialect), schema)
                                + _descendants_sql(connection, spec),
                                validate=True)
            _validate_installed(connection, table)

    _with_connection(bind, work)


def drop_audit_triggers(bind: Bind, *models: Union[ModelOrTable, MetaData]) -> None:
    """Remove the audit triggers of ``models``; the recorded history stays."""
    tables = _tables(models)

    def work(connection: Connection) -> None:
        for table in tables:
            log.info("removing audit triggers from %s", table.fullname)
            _run(connection, _drop_sql(table, connection.dialect))

    _with_connection(bind, work)


def drop_audit_log(bind: Bind, *, metadata: Optional[MetaData] = None) -> None:
    """Remove ``sqlaudit_log`` (and ``sqlaudit_seal``), with all the history they hold.

    The one way to remove the history: ``metadata.drop_all()`` never does.
    Refuses with :class:`~sqlaudit.exceptions.SQLAuditError` while any table
    still has sqlaudit triggers (their writes would fail): remove them first
    with :func:`drop_audit_triggers`. ``metadata`` names the schema of the log
    when its MetaData has one.
    """
    metadata = metadata if metadata is not None else MetaData()

    def work(connection: Connection) -> None:
        name = connection.dialect.name
        prep = connection.dialect.identifier_preparer
        schema = audit_table(metadata).schema or default_schema(connection)
        if name == "sqlite":
            schema = schema or "main"
        elif is_mysql(name):
            schema = schema or log_schema(connection)
        assert schema is not None  # PostgreSQL always has a current schema
        names = _tables_writing_to(connection, schema)
        if names:
            raise SQLAuditError(
                f"cannot drop the audit log: tables {names} still have sqlaudit triggers "
                f"and their writes would fail; call sqlaudit.ddl.drop_audit_triggers() "
                f"for them first."
            )
        _forget_sqlite_context(connection)
        for table_name in ("sqlaudit_seal", AUDIT_TABLE_NAME):
            qualified = f"{prep.quote_schema(schema)}.{prep.quote(table_name)}"
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {qualified}")
        _run(connection, module_for(name).unprotect_statements(
            metadata, rendering_dialect(name), default_schema(connection)))
        if name == "postgresql":
            connection.exec_driver_sql(
                f"DROP FUNCTION IF EXISTS {prep.quote_schema(schema)}.sqlaudit_seal_protect()")
        log.warning("dropped the audit log and its history in schema %s", schema)

    _with_connection(bind, work)


def _tables_writing_to(connection: Connection, schema: str) -> list[str]:
    """Tables whose sqlaudit triggers write to the audit log in ``schema``."""
    from sqlalchemy import text

    if connection.dialect.name == "sqlite" or is_mysql(connection.dialect.name):
        found = installed_triggers(connection)
        return sorted(t for (_, t) in found if not t.startswith(("sqlaudit_log", "sqlaudit_seal")))
    log_name = rendering_dialect("postgresql").identifier_preparer
    qualified = f"{log_name.quote_schema(schema)}.{log_name.quote(AUDIT_TABLE_NAME)}"
    rows = connection.execute(text(
        "SELECT DISTINCT n.nspname || '.' || c.relname FROM pg_catalog.pg_trigger AS t "
        "JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid "
        "JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid "
        "WHERE NOT t.tgisinternal AND t.tgname LIKE 'sqlaudit\\_%' "
        "AND c.relname NOT IN ('sqlaudit_log', 'sqlaudit_seal') "
        "AND strpos(p.prosrc, :qualified) > 0"), {"qualified": qualified})
    return sorted(rows.scalars())


class AuditState(str, Enum):
    """State of one table's audit triggers in a database."""

    MISSING = "missing"
    CURRENT = "current"
    OUTDATED = "outdated"
    #: installed triggers record a column the table no longer has: writes fail
    #: (PostgreSQL) or record a stale name (SQLite) until they are re-installed
    BROKEN = "broken"

    def __str__(self) -> str:
        return self.value


def audit_status(bind: Bind, *models: Union[ModelOrTable, MetaData]) -> dict[str, AuditState]:
    """Whether each tracked table's triggers are missing, current, outdated or broken.

    Compares the fingerprint stored with the installed triggers (template
    version, hash of the SQL, tracked fields) with what sqlaudit would install
    now. Keys are the tables' full names (``schema.table`` or ``table``).
    """
    tables = _tables(models)
    result: dict[str, AuditState] = {}

    def work(connection: Connection) -> None:
        found = installed_triggers(connection, {t.schema for t in tables})
        schema = default_schema(connection)
        module = module_for(connection.dialect.name)
        for table in tables:
            entry = found.get(installed_key(connection, table.schema or schema, table.name))
            if entry is None:
                result[table.fullname] = AuditState.MISSING
                continue
            installed = entry.fingerprint or {}
            used = set(installed.get("fields", [])) | set(installed.get("key", []))
            if used:
                live = {reflected_name(c["name"], connection) for c in
                        sa_inspect(connection).get_columns(table.name, schema=table.schema)}
                if not used <= live:
                    result[table.fullname] = AuditState.BROKEN
                    continue
            spec = spec_for(table)
            expected = module.fingerprint(spec, rendering_dialect(connection.dialect.name))
            complete = entry.count == EXPECTED[connection.dialect.name]
            if complete and spec.require_user and connection.dialect.name == "sqlite":
                complete = _has_sqlite_trigger(connection, sqlite_trigger_name(table, "require"))
            if complete and connection.dialect.name == "postgresql":
                # a partition or child created after the install has no triggers yet
                complete = all(d.triggers == EXPECTED["postgresql"]
                               for d in _descendants(connection, spec))
            current = complete and entry.fingerprint == expected
            result[table.fullname] = AuditState.CURRENT if current else AuditState.OUTDATED

    _with_connection(bind, work)
    return result


def _has_sqlite_trigger(connection: Connection, name: str) -> bool:
    from sqlalchemy import text

    return connection.execute(text(
        "SELECT 1 FROM main.sqlite_master WHERE type = 'trigger' AND name = :name"),
        {"name": name}).first() is not None


def render_audit_ddl(model: ModelOrTable, dialect_name: str, *,
                     audit_schema: Optional[str] = None) -> list[str]:
    """The SQL statements that install ``model``'s triggers on ``dialect_name``.

    ``dialect_name`` is ``"postgresql"``, ``"sqlite"`` or ``"mysql"`` (also
    ``"mariadb"``). The strings are what the database receives, for review or
    for pasting into a migration (the ``mariadb``/``mysql`` client needs a
    ``DELIMITER`` around each ``CREATE TRIGGER ... BEGIN ... END``).
    On PostgreSQL every statement names ``sqlaudit_log`` by schema: the
    MetaData's schema, else ``audit_schema``, else ``"public"`` (the schema
    is not known without a connection, and an unqualified name could be
    captured by a TEMP table of the writing session). On MariaDB and MySQL the
    log is named by database only for a table in another database than the
    log's: the MetaData's schema, else ``audit_schema``, else
    :class:`~sqlaudit.exceptions.SQLAuditArgumentError`.
    """
    module = module_for(dialect_name)
    return list(module.install_statements(
        spec_for(model), rendering_dialect(dialect_name), audit_schema))


def prune_audit_log(
    bind: Bind,
    older_than: datetime,
    *,
    models: Optional[Iterable[Union[ModelOrTable, MetaData]]] = None,
    export_to: Optional[Union[str, "os.PathLike[str]"]] = None,
    export_format: str = "jsonl",
    lock_timeout: float = 2.0,
    attempts: int = 10,
) -> int:
    """Delete audit records older than ``older_than``; return how many were removed.

    The only sanctioned removal from the append-only audit table. ``models``
    limits it to those tables' records. A naive ``older_than`` is read in the
    configured time zone.

    ``export_to``: first write the removed records to this new file (``jsonl`` or
    ``csv``, see :func:`export_audit_log`): exactly the rows deleted, as the
    DELETE returns them, in the same transaction; the file is complete on disk
    before the transaction commits, and when it cannot be written nothing is pruned.

    ``lock_timeout``, ``attempts``: on a partitioned log (PostgreSQL), dropping
    whole partitions needs ``ACCESS EXCLUSIVE`` on ``sqlaudit_log``; the prune
    waits at most ``lock_timeout`` seconds for it per attempt (so writers
    queued behind its request wait no longer), retries ``attempts`` times,
    then raises :class:`~sqlaudit.exceptions.SQLAuditError` with nothing
    pruned. See docs/partitioning.md.
    """
    if not isinstance(older_than, datetime):
        raise SQLAuditArgumentTypeError(f"older_than must be a datetime, got {older_than!r}")
    if older_than.tzinfo is None:
        older_than = older_than.replace(tzinfo=_display_zone())
    bound = older_than.astimezone(timezone.utc)
    from ._partitions import LockPolicy

    policy = LockPolicy(lock_timeout, attempts)
    tables = _tables(models) if models is not None else None
    archive = _export.Archive(export_to, export_format) if export_to is not None else None
    removed = 0

    def work(connection: Connection) -> None:
        nonlocal removed
        named = tables[0].metadata.schema if tables else None
        # the log named by schema: a TEMP sqlaudit_log must never be what is pruned
        log_table = audit_table(MetaData(schema=named or log_schema(connection)))
        if connection.dialect.name == "postgresql":
            schema = default_schema(connection)
            where = log_table.c.changed_at < bound
        else:
            schema = None
            where = log_table.c.changed_at < bound.replace(tzinfo=None)
        if tables is not None:
            where = and_(where, or_(*[rows_of_table(log_table, t.name, t.schema)
                                      for t in tables]))
        removed = _prune(connection, log_table, where, bound, schema, archive, policy,
                         whole_log=tables is None)
        if archive is not None:  # on disk before the transaction commits
            archive.finish([c.name for c in log_table.columns], connection.dialect.name == "postgresql")

    if isinstance(bind, Engine) and is_mysql(bind.dialect.name):
        # a prune of a sealed log seals first, which needs READ COMMITTED there
        bind = bind.execution_options(isolation_level="READ COMMITTED")
    try:
        _with_connection(bind, work)
    except BaseException:
        if archive is not None:
            archive.abort()
        raise
    log.info("pruned %d audit records older than %s", removed, bound.isoformat())
    return removed


def _prune(connection: Connection, log_table: Table, where: Any, bound: datetime,
           schema: Optional[str], archive: Optional["_export.Archive"] = None,
           policy: Any = None, whole_log: bool = True) -> int:
    from sqlalchemy import delete, text

    from .integrity import prune_sealed

    def remove(condition: Any) -> int:
        if archive is not None:  # DELETE ... RETURNING into the archive
            return archive.delete_into(connection, log_table, condition)
        return int(connection.execute(delete(log_table).where(condition)).rowcount)

    detail = {"older_than": bound.isoformat()}
    if is_mysql(connection.dialect.name):
        return _prune_mysql(connection, log_table, where, bound, archive, detail)
    if connection.dialect.name == "postgresql":
        from ._partitions import prune_remover

        allow, revoke = _templates.render("postgresql", "prune")
        connection.execute(text(allow), {"bound": bound.isoformat()})
        # a partitioned log drops its partitions older than the cutoff whole
        remover = prune_remover(
            connection, log_table, bound, remove,
            None if archive is None else lambda rows: archive.export(connection, log_table, rows),
            policy, whole_log)
        count = prune_sealed(connection, log_table, where, remover, detail)
        connection.execute(text(revoke))
        return count
    # SQLite: lift the DELETE guard inside this transaction only (DDL is transactional).
    connection.execute(delete(log_table).where(false()))  # opens the write transaction
    connection.exec_driver_sql("DROP TRIGGER IF EXISTS main.sqlaudit_log_no_delete")
    count = prune_sealed(connection, log_table, where, remove, detail)
    _protect(connection, log_table.metadata)
    return count


#: Rows a MariaDB prune deletes per statement, by key.
_MYSQL_PRUNE_PAGE = 5000


def _prune_mysql(connection: Connection, log_table: Table, where: Any, bound: datetime,
                 archive: Optional["_export.Archive"], detail: dict[str, Any]) -> int:
    """MariaDB / MySQL: delete under the guard lifted for rows older than ``bound`` in
    this session only, through ``prune_sealed`` (which records a prune of a sealed log
    in its seal chain), into ``archive`` first when given."""
    from sqlalchemy import delete, select, text

    from .integrity import prune_sealed

    id_col = log_table.c.id

    def remove(condition: Any) -> int:
        """Delete by key, a page of ids read first (a plain read, which waits for nobody):
        a DELETE that scanned an index of the log (changed_at) would wait for every row a
        transaction still in flight has written there, though none of them matches. Into
        an archive, each page is read FOR UPDATE, written, then deleted by id."""
        if archive is not None:
            return archive.delete_into(connection, log_table, condition)
        removed, after = 0, None
        while True:
            page_query = select(id_col).where(condition)
            if after is not None:
                page_query = page_query.where(id_col > after)
            page = [int(i) for i in connection.execute(
                page_query.order_by(id_col).limit(_MYSQL_PRUNE_PAGE)).scalars()]
            if not page:
                return removed
            removed += int(connection.execute(
                delete(log_table).where(and_(condition, id_col.in_(page)))).rowcount)
            after = page[-1]

    allow, restore = _templates.render("mysql", "prune")
    connection.execute(text(allow), {"bound": bound.astimezone(timezone.utc).replace(tzinfo=None)})
    try:
        return prune_sealed(connection, log_table, where, remove, detail)
    finally:
        connection.execute(text(restore))


def create_audit_log(bind: Bind, *, partition_by: Optional[str] = None, ahead: int = 3,
                     metadata: Optional[MetaData] = None) -> bool:
    """Create ``sqlaudit_log`` with its append-only guards; return True if it was created.

    Call it before ``create_all()`` (which then finds the log and leaves it
    alone) or instead of letting an install create it. ``partition_by``
    (``"month"``, ``"week"`` or ``"day"``, PostgreSQL only) makes it a table
    range-partitioned on ``changed_at``: the current period and ``ahead`` more
    get their partitions now, and a DEFAULT partition takes any other time, so
    no write fails for a missing partition; run
    :func:`maintain_audit_partitions` regularly to keep creating them. An
    existing log is used as it is (partitioned or not, as the catalog says);
    asking to partition an existing plain log raises
    :class:`~sqlaudit.exceptions.SQLAuditError` pointing to
    :func:`partition_audit_log`. See docs/partitioning.md.
    """
    from . import _partitions

    _partitions.check_options(partition_by, ahead)
    created = False

    def work(connection: Connection) -> None:
        nonlocal created
        created = _partitions.create_log(connection, partition_by, ahead, metadata)

    _with_connection(bind, work)
    return created


def maintain_audit_partitions(bind: Bind, *, ahead: int = 3, lock_timeout: float = 2.0,
                              attempts: int = 10, metadata: Optional[MetaData] = None) -> Any:
    """Create the partitions of a partitioned ``sqlaudit_log`` for the current
    period and ``ahead`` more (PostgreSQL); return a
    :class:`~sqlaudit._partitions.PartitionMaintenance` (``created``,
    ``moved_rows``, ``guarded``, ``waiting``).

    Rows the DEFAULT partition holds for a range being created are moved into
    it in the same transaction. Idempotent, and safe to run concurrently with
    writers and with itself (an advisory lock serialises runs); writers wait
    only while partitions are being created, and never longer than
    ``lock_timeout`` seconds for maintain's lock (an attempt that times out is
    undone and retried, ``attempts`` times, then
    :class:`~sqlaudit.exceptions.SQLAuditError`). ``metadata`` names the schema
    of the log when its MetaData has one. See docs/partitioning.md.
    """
    from . import _partitions

    _partitions.check_options(None, ahead)
    policy = _partitions.LockPolicy(lock_timeout, attempts)
    result: Any = None

    def work(connection: Connection) -> None:
        nonlocal result
        result = _partitions.maintain(connection, ahead, policy, metadata)

    _with_connection(bind, work)
    return result


def partition_audit_log(bind: Engine, *, by: str = "month", ahead: int = 3,
                        lock_timeout: float = 2.0, attempts: int = 10) -> bool:
    """Convert an existing plain ``sqlaudit_log`` into a partitioned one (PostgreSQL),
    while the application keeps writing; return False if it was partitioned already.

    No row is copied: the old table becomes the partition of every time before
    a period boundary (the next start of ``by`` at least an hour away), and
    ``ahead`` periods after it get new partitions plus a DEFAULT one. First,
    in autocommit mode, a validated CHECK constraint and a unique index on
    ``(id, changed_at)`` (built CONCURRENTLY) are added to the old log; then
    one short transaction swaps the tables (catalog changes only): writers
    wait for that transaction alone. Each of the two steps that lock the log
    exclusively waits at most ``lock_timeout`` seconds for its lock (writers
    arriving meanwhile wait behind it no longer), retrying up to ``attempts``
    times before giving up with nothing changed. Needs an Engine (the index
    is built outside any transaction). From Alembic use
    ``op.partition_audit_log``. See docs/partitioning.md.
    """
    from . import _partitions

    if by is None:
        raise SQLAuditArgumentTypeError("by must be one of 'month', 'week', 'day', got None")
    _partitions.check_options(by, ahead)
    policy = _partitions.LockPolicy(lock_timeout, attempts)
    if not isinstance(bind, Engine):
        raise SQLAuditArgumentTypeError(
            f"partition_audit_log() needs an Engine (it builds an index CONCURRENTLY, outside "
            f"any transaction, before a short swap transaction), got {bind!r}; in a migration "
            f"use op.partition_audit_log().")
    return _partitions.convert(bind, by, ahead, policy)


def export_audit_log(
    bind: Bind,
    *,
    before: datetime,
    path: Union[str, "os.PathLike[str]"],
    format: str = "jsonl",
    models: Optional[Iterable[Union[ModelOrTable, MetaData]]] = None,
) -> int:
    """Write the audit records older than ``before`` (aware) to the new file ``path``;
    return how many were written. The log is unchanged.

    Every column of each record, in id order, streamed (memory does not grow with
    the log): ``format="jsonl"`` (one JSON object per line, JSON columns as JSON,
    ``changed_at`` ISO-8601 in UTC) or ``"csv"`` (header row; NULL is an empty
    unquoted field). ``models`` limits it to those tables' records. An existing
    ``path`` is refused; the file appears only once complete. Re-import an
    archive with :func:`import_audit_log`. Errors derive from
    :class:`~sqlaudit.exceptions.SQLAuditArchiveError`.
    """
    bound = _export.check_before(before)
    _export.check_format(format)
    _export.check_path(path)
    tables = _tables(models) if models is not None else None
    count = 0

    def work(connection: Connection) -> None:
        nonlocal count
        count = _export.export_log(connection, before=bound, path=path, format=format, tables=tables)

    _with_connection(bind, work)
    return count


def import_audit_log(bind: Bind, path: Union[str, "os.PathLike[str]"], *,
                     format: Optional[str] = None) -> int:
    """Insert the records of an archive written by :func:`export_audit_log` (or a
    prune's ``export_to``) into an empty ``sqlaudit_log``, ids and every column
    as archived; return how many. ``format`` defaults to the file's suffix
    (``.jsonl``/``.csv``), else its first line. A log that is not empty is refused
    (:class:`~sqlaudit.exceptions.SQLAuditArchiveError`); on PostgreSQL the id
    sequence continues after the highest imported id.
    """
    count = 0

    def work(connection: Connection) -> None:
        nonlocal count
        count = _export.import_log(connection, path, format)

    _with_connection(bind, work)
    return count


def grant_audit_read(bind: Bind, role: str) -> None:
    """Let a database role or account read the audit history, nothing more.

    PostgreSQL: ``role`` is a role; it gets USAGE on the audit table's schema and
    SELECT on ``sqlaudit_log``. MariaDB / MySQL: ``role`` is an account
    ``user@host`` (``reader@%``, ``reader@10.0.0.%``) or a role name; it gets
    SELECT on ``sqlaudit_log`` and, on a sealed log, on ``sqlaudit_seal``. The
    name is quoted as an identifier, never pasted into the SQL. An account or
    role that does not exist raises :class:`~sqlaudit.exceptions.SQLAuditArgumentError`
    (MariaDB / MySQL; PostgreSQL's own error on PostgreSQL). SQLite has no
    roles: :class:`~sqlaudit.exceptions.SQLAuditUnsupportedDialectError`."""
    if not isinstance(role, str) or not role:
        raise SQLAuditArgumentTypeError(f"role must be a non-empty str, got {role!r}")

    def work(connection: Connection) -> None:
        if is_mysql(connection.dialect.name):
            _grant_audit_read_mysql(connection, role)
            return
        if connection.dialect.name != "postgresql":
            raise SQLAuditUnsupportedDialectError(
                f"grant_audit_read() needs PostgreSQL roles; {connection.dialect.name} has none."
            )
        prep = rendering_dialect("postgresql").identifier_preparer
        schema = default_schema(connection)
        assert schema is not None  # PostgreSQL always has a current schema
        statements = _templates.render(
            "postgresql", "grant_read",
            audit_schema=prep.quote_schema(schema),
            audit_table=f"{prep.quote_schema(schema)}.{prep.quote('sqlaudit_log')}",
            role=prep.quote(role),
        )
        _run(connection, statements)

    _with_connection(bind, work)


#: MariaDB / MySQL: "Can't find any matching row in the user table" (the account does
#: not exist, and the server creates none by a GRANT), and "no such role"
_NO_SUCH_GRANTEE = (1133, 1959)


def _grant_audit_read_mysql(connection: Connection, role: str) -> None:
    """GRANT SELECT on the log (and the seal table when there is one) to ``role``:
    ``user@host`` (split at the last ``@``) or a role name, each part quoted with
    backticks (a backtick in it doubled)."""
    schema = log_schema(connection)
    if schema is None or not sa_inspect(connection).has_table(AUDIT_TABLE_NAME, schema=schema):
        raise SQLAuditTableNotInDatabaseError(
            f"{AUDIT_TABLE_NAME} does not exist in this database; create it "
            "(metadata.create_all() or create_audit_log()) before granting read access to it")
    prep = rendering_dialect("mysql").identifier_preparer
    user, at, host = role.rpartition("@")
    grantee = (f"{prep.quote_identifier(user)}@{prep.quote_identifier(host)}" if at
               else prep.quote_identifier(role))
    database = prep.quote_identifier(schema)
    statements = _templates.render("mysql", "grant_read", grantee=grantee,
                                   audit_table=f"{database}.{prep.quote_identifier(AUDIT_TABLE_NAME)}")
    if sa_inspect(connection).has_table("sqlaudit_seal", schema=schema):
        statements += _templates.render("mysql", "grant_read_seal", grantee=grantee,
                                        seal_table=f"{database}.{prep.quote_identifier('sqlaudit_seal')}")
    # MariaDB's GRANT creates a missing account (with no password) unless the session's
    # sql_mode has NO_AUTO_CREATE_USER: set for the GRANT, the mode restored after it
    # (MySQL 8 never creates one, and has no such mode)
    mode = None
    if getattr(connection.dialect, "is_mariadb", False):
        from sqlalchemy import text

        mode = connection.execute(text("SELECT @@SESSION.sql_mode")).scalar()
        connection.execute(text("SET SESSION sql_mode = CONCAT_WS(',', "
                                "NULLIF(@@SESSION.sql_mode, ''), 'NO_AUTO_CREATE_USER')"))
    try:
        _run(connection, statements)
    except DBAPIError as exc:
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        if code in _NO_SUCH_GRANTEE:
            raise SQLAuditArgumentError(
                f"grant_audit_read(): no account or role {grantee} on this server; create it "
                "first (CREATE USER 'reader'@'%' IDENTIFIED BY ..., or CREATE ROLE reader) and "
                "name an account as user@host (reader@%)") from None
        raise
    finally:
        if mode is not None:
            from sqlalchemy import text

            connection.execute(text("SET SESSION sql_mode = :mode"), {"mode": mode})
