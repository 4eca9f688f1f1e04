"""Install, remove and render the audit triggers.

``@track_table`` attaches :func:`attach_to_table` so that
``metadata.create_all()`` installs the triggers of every tracked table it
creates and ``drop_all()`` removes them. For databases that already exist use
:func:`install_audit_triggers` (or the Alembic operations).
"""

from __future__ import annotations

import logging
import secrets
from enum import Enum
from typing import Any, Iterable, Union

from sqlalchemy import MetaData, Table, event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.schema import ExecutableDDLElement

from ._installed import EXPECTED, default_schema, installed_triggers
from .dialects import module_for
from .exceptions import SQLAuditError
from .schema import audit_table
from .spec import ModelOrTable, spec_for, table_of, tracked_tables

__all__ = [
    "AuditState",
    "audit_status",
    "drop_audit_triggers",
    "install_audit_triggers",
    "render_audit_ddl",
]

log = logging.getLogger("sqlaudit")

Bind = Union[Engine, Connection, Session]


class AuditDDL(ExecutableDDLElement):
    """One rendered statement, executed verbatim (``%`` escaped for the driver)."""

    inherit_cache = False

    def __init__(self, sql: str) -> None:
        self.sql = sql


@compiles(AuditDDL)
def _compile_audit_ddl(element: AuditDDL, compiler: Any, **kw: Any) -> str:
    return str(compiler.sql_compiler.post_process_text(element.sql))


def _install_sql(table: Table, dialect: Dialect) -> list[str]:
    name = dialect.name
    return list(module_for(name).install_statements(spec_for(table), rendering_dialect(name)))


def _drop_sql(table: Table, dialect: Dialect) -> list[str]:
    name = dialect.name
    return list(module_for(name).drop_statements(spec_for(table), rendering_dialect(name)))


def _run(connection: Connection, statements: Iterable[str]) -> None:
    for sql in statements:
        connection.execute(AuditDDL(sql))


def validate_installed(connection: Connection, table: Table) -> None:
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
    _run(connection, _install_sql(table, connection.dialect))


def _on_before_drop(table: Table, connection: Connection, **kw: Any) -> None:
    if "sqlaudit" not in table.info:
        return
    log.info("removing audit triggers from %s", table.fullname)
    _run(connection, _drop_sql(table, connection.dialect))


def _on_metadata_created(metadata: MetaData, connection: Connection, **kw: Any) -> None:
    """After ``create_all`` (audit table included) check the new SQLite triggers compile."""
    for table in kw.get("tables") or ():
        if "sqlaudit" in table.info:
            validate_installed(connection, table)


def attach_to_table(table: Table) -> None:
    """Make ``create_all``/``drop_all`` install and remove the triggers of ``table``."""
    if not event.contains(table.metadata, "after_create", _on_metadata_created):
        event.listen(table.metadata, "after_create", _on_metadata_created)
    if not event.contains(table, "after_create", _on_after_create):
        event.listen(table, "after_create", _on_after_create)
    if not event.contains(table, "before_drop", _on_before_drop):
        event.listen(table, "before_drop", _on_before_drop)


def _tables(models: Iterable[Union[ModelOrTable, MetaData]]) -> list[Table]:
    tables: list[Table] = []
    for model in models:
        found = list(tracked_tables(model)) if isinstance(model, MetaData) else [table_of(model)]
        for table in found:
            spec_for(table)  # raises a clear error for untracked models
            if table not in tables:
                tables.append(table)
    if not tables:
        raise ValueError(
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
        raise TypeError(f"expected an Engine, Connection or Session, got {bind!r}")


def install_audit_triggers(bind: Bind, *models: Union[ModelOrTable, MetaData]) -> None:
    """Install (or replace) the audit triggers of ``models`` on existing tables.

    Creates ``sqlaudit_log`` when it is missing. Idempotent: installing twice
    replaces the triggers and never doubles records. Given an Engine it runs in
    its own transaction; given a Connection or Session it runs in theirs.
    """
    tables = _tables(models)

    def work(connection: Connection) -> None:
        for metadata in {t.metadata for t in tables}:
            audit_table(metadata).create(connection, checkfirst=True)
        for table in tables:
            log.info("installing audit triggers on %s", table.fullname)
            _run(connection, _install_sql(table, connection.dialect))
            validate_installed(connection, table)

    _with_connection(bind, work)


def drop_audit_triggers(bind: Bind, *models: Union[ModelOrTable, MetaData]) -> None:
    """Remove the audit triggers of ``models``; the recorded history stays."""
    tables = _tables(models)

    def work(connection: Connection) -> None:
        for table in tables:
            log.info("removing audit triggers from %s", table.fullname)
            _run(connection, _drop_sql(table, connection.dialect))

    _with_connection(bind, work)


class AuditState(str, Enum):
    """State of one table's audit triggers in a database."""

    MISSING = "missing"
    CURRENT = "current"
    OUTDATED = "outdated"

    def __str__(self) -> str:
        return self.value


def audit_status(bind: Bind, *models: Union[ModelOrTable, MetaData]) -> dict[str, AuditState]:
    """Whether each tracked table's triggers are missing, current or outdated.

    Compares the fingerprint stored with the installed triggers (template
    version, hash of the SQL, tracked fields) with what sqlaudit would install
    now. Keys are the tables' full names (``schema.table`` or ``table``).
    """
    tables = _tables(models)
    result: dict[str, AuditState] = {}

    def work(connection: Connection) -> None:
        found = installed_triggers(connection)
        schema = default_schema(connection)
        module = module_for(connection.dialect.name)
        for table in tables:
            entry = found.get((table.schema or schema, table.name))
            if entry is None:
                result[table.fullname] = AuditState.MISSING
                continue
            expected = module.fingerprint(spec_for(table), rendering_dialect(connection.dialect.name))
            complete = entry.count == EXPECTED[connection.dialect.name]
            current = complete and entry.fingerprint == expected
            result[table.fullname] = AuditState.CURRENT if current else AuditState.OUTDATED

    _with_connection(bind, work)
    return result


def render_audit_ddl(model: ModelOrTable, dialect_name: str) -> list[str]:
    """The SQL statements that install ``model``'s triggers on ``dialect_name``.

    ``dialect_name`` is ``"postgresql"`` or ``"sqlite"``. The strings are what
    the database receives, for review or for pasting into a migration.
    """
    module = module_for(dialect_name)
    return list(module.install_statements(spec_for(model), rendering_dialect(dialect_name)))


def rendering_dialect(name: str) -> Dialect:
    """A dialect to render trigger SQL with: same quoting as the driver's, but no
    ``%`` doubling (that happens once, when :class:`AuditDDL` is executed)."""
    from sqlalchemy.dialects import postgresql, sqlite

    if name == "postgresql":
        return postgresql.dialect(paramstyle="named")
    return sqlite.dialect(paramstyle="named")
