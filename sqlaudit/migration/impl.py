"""Run ``create_audit_triggers`` / ``drop_audit_triggers`` inside a migration.

One source of SQL: the statements come from the same per-dialect renderers as
``metadata.create_all()`` and :mod:`sqlaudit.ddl`, and each one is executed as
an :class:`~sqlaudit.ddl._AuditDDL` element (never as a string, so colons and
percent signs reach the database unchanged). Nothing here needs a live
connection when the migration context's ``target_metadata`` knows the table,
so ``alembic upgrade --sql`` renders the complete DDL (on MariaDB / MySQL with
``DELIMITER`` lines around the trigger bodies, for the command-line client).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Optional, Sequence

from alembic.operations import Operations
from alembic.operations.batch import BatchOperationsImpl
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, Table
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable, SetTableComment
from sqlalchemy.types import NullType

from .._installed import default_schema
from ..ddl import (_AuditDDL, _check_key, _descendants_sql, _installation_sql,
                   _upgrade_audit_table, _validate_installed, _warn_if_not_transactional)
from ..dialects import flavour, is_mysql, module_for, rendering_dialect
from ..exceptions import SQLAuditMigrationError
from ..schema import audit_table, mysql_index_ddl
from ..spec import TableSpec, spec_from_table
from .ops import CreateAuditTriggersOp, DropAuditTriggersOp, _AuditTriggersOp

log = logging.getLogger("sqlaudit")

_AFTER_FLUSH = "_sqlaudit_flush_hooks"  # attribute of one BatchOperationsImpl


@Operations.implementation_for(CreateAuditTriggersOp)
def create_audit_triggers(operations: Operations, op: CreateAuditTriggersOp) -> None:
    batch = _batch_of(operations)
    if batch is None:
        _create(operations, op)
        return
    # In a batch: drop now (before a column they use is altered or the table is
    # recreated), install once the batch has been applied.
    _drop(operations, op)
    _after_flush(batch, lambda: _create(operations, op))


@Operations.implementation_for(DropAuditTriggersOp)
def drop_audit_triggers(operations: Operations, op: DropAuditTriggersOp) -> None:
    _drop(operations, op)


def _create(operations: Operations, op: CreateAuditTriggersOp) -> None:
    """What ``install_audit_triggers`` does, for one table, online or offline.

    Creates ``sqlaudit_log`` if missing and (re)applies its append-only guards,
    installs the triggers, and on a live SQLite database checks they compile.
    """
    context = operations.migration_context
    spec = _spec(context, op)
    if not context.as_sql:  # offline there is no database to look at
        _check_key(context.bind, spec)
        if is_mysql(context.dialect.name):
            _warn_if_not_transactional(_online(context), spec.table)
    schema = None if context.as_sql else default_schema(_online(context))
    log.info("installing audit triggers on %s", op.fullname)
    _ensure_audit_table(context, spec)
    statements = _installation_sql(spec, flavour(context.dialect), schema)
    if not context.as_sql:  # partitions and children exist only in a live database
        statements += _descendants_sql(_online(context), spec)
    _run(context, statements)
    if not context.as_sql:
        _validate_installed(_online(context), spec.table)


def _online(context: MigrationContext) -> Connection:
    """The connection of an online migration (offline, ``--sql``, has none)."""
    assert context.bind is not None  # callers check context.as_sql first
    return context.bind


def _drop(operations: Operations, op: _AuditTriggersOp) -> None:
    context = operations.migration_context
    name = context.dialect.name
    log.info("removing audit triggers from %s", op.fullname)
    _run(context, module_for(name).drop_statements(_named_spec(op), rendering_dialect(name)))


def _run(context: MigrationContext, statements: Iterable[str]) -> None:
    offline_mysql = context.as_sql and is_mysql(context.dialect.name)
    for sql in statements:
        if offline_mysql and ";" in sql:
            context.impl.static_output(_delimited(sql))
        else:
            context.impl.execute(_AuditDDL(sql))


#: Candidates for the client's statement delimiter around a compound statement; the
#: first that the statement does not contain anywhere is used.
_DELIMITERS = ("$$", "//", "$$$$", "////", "$//$")


def _delimited(sql: str) -> str:
    """A compound statement (``CREATE TRIGGER ... BEGIN ...; END``) for the ``mariadb``
    and ``mysql`` clients, which would end it at its first ``;``: between two
    ``DELIMITER`` lines, ending with a delimiter it does not contain. Offline
    (``--sql``) output only: the driver sends each statement whole and knows no
    ``DELIMITER``. Written verbatim (no ``%`` doubling, tabs kept)."""
    delimiter = next((d for d in _DELIMITERS if d not in sql), None)
    if delimiter is None:  # pragma: no cover - a statement holding every candidate
        raise SQLAuditMigrationError(
            "cannot write an offline (--sql) script for a trigger whose SQL contains every "
            f"DELIMITER candidate {list(_DELIMITERS)}; rename the table or columns, or run "
            "the migration online.")
    return f"DELIMITER {delimiter}\n{sql.strip()}{delimiter}\nDELIMITER ;"


def _ensure_audit_table(context: MigrationContext, spec: TableSpec) -> None:
    """Create ``sqlaudit_log`` when it is missing, as ``create_all`` would.

    Offline there is nothing to look at, so the script gets
    ``CREATE TABLE IF NOT EXISTS`` (and ``CREATE INDEX IF NOT EXISTS``) instead.
    """
    table = audit_table(spec.table.metadata)
    if not context.as_sql:
        table.create(_online(context), checkfirst=True)
        _upgrade_audit_table(_online(context), table)
        return
    context.impl.execute(CreateTable(table, if_not_exists=True))
    if is_mysql(context.dialect.name):  # the comment is part of CREATE TABLE there
        # the indexes create_all makes there (IF NOT EXISTS: MariaDB; MySQL has none)
        for _name, sql in mysql_index_ddl(table, context.dialect, if_not_exists=True):
            context.impl.execute(_AuditDDL(sql))
        return
    if context.dialect.supports_comments and table.comment:
        context.impl.execute(SetTableComment(table))
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        context.impl.execute(CreateIndex(index, if_not_exists=True))


# ---------------------------------------------------------------- the table

def _spec(context: MigrationContext, op: CreateAuditTriggersOp) -> TableSpec:
    table = _typed_table(context, op)
    fields = op.tracked_fields or [c.name for c in table.columns]
    keys = [op.resource_id_field] if op.resource_id_field else None
    return spec_from_table(table, fields, keys, op.table_label,
                           getattr(op, "require_user_id", None))


def _typed_table(context: MigrationContext, op: CreateAuditTriggersOp) -> Table:
    """The table with column types: from ``target_metadata``, else reflected, else untyped.

    Untyped (NullType) columns make the renderers use the generic text form of
    each value, which is still lossless.
    """
    needed = _names(op)
    model = _model_table(context, op.table_name, op.schema)
    if model is not None and all(name in model.c for name in needed):
        # a copy, so that rendering never adds sqlaudit_log to the user's MetaData
        return model.to_metadata(MetaData(schema=model.metadata.schema))
    if not context.as_sql:
        return Table(op.table_name, MetaData(), schema=op.schema, autoload_with=context.bind)
    if op.tracked_fields is None or op.resource_id_field is None:
        raise SQLAuditMigrationError(
            f"create_audit_triggers({op.table_name!r}) cannot find the table's columns in "
            f"offline (--sql) mode: target_metadata has no table {op.fullname!r}. Pass "
            f"tracked_fields=[...] and resource_id_field=... to the operation, or give "
            f"context.configure() the target_metadata that defines the table."
        )
    columns = [Column(name, NullType()) for name in needed]
    return Table(op.table_name, MetaData(), *columns, schema=op.schema)


def _names(op: _AuditTriggersOp) -> list[str]:
    """Column names the operation mentions (tracked fields, then the key)."""
    names = list(op.tracked_fields or [])
    if op.resource_id_field:
        names.append(op.resource_id_field)
    return list(dict.fromkeys(names))


def _model_table(context: MigrationContext, name: str, schema: Optional[str]) -> Optional[Table]:
    metadata = context.opts.get("target_metadata")
    collections: Sequence[Optional[MetaData]] = (
        metadata if isinstance(metadata, (list, tuple)) else [metadata])
    for md in collections:
        if md is None:
            continue
        for table in md.tables.values():
            if table.name == name and table.schema in (schema, schema or md.schema):
                return table
    return None


def _named_spec(op: _AuditTriggersOp) -> TableSpec:
    """A spec that only carries the table's name and schema.

    The drop statements depend on nothing else, so dropping needs neither
    column types nor a connection (works offline and after columns changed).
    """
    names = _names(op) or ["id"]
    table = Table(op.table_name, MetaData(), *[Column(n, NullType()) for n in names],
                  schema=op.schema)
    return spec_from_table(table, names, [op.resource_id_field or names[0]], op.table_label)


# ---------------------------------------------------------------- batch mode

def _batch_of(operations: Any) -> Optional[BatchOperationsImpl]:
    impl = getattr(operations, "impl", None)
    return impl if isinstance(impl, BatchOperationsImpl) else None


def _after_flush(batch: BatchOperationsImpl, work: Callable[[], None]) -> None:
    """Run ``work`` once this batch has been applied (after its ALTERs or recreate)."""
    _flush_hooks(batch)[1].append(work)


def _before_flush(batch: BatchOperationsImpl, work: Callable[[], None]) -> None:
    """Run ``work`` when the batch's block ends, before its ALTERs or recreate run."""
    _flush_hooks(batch)[0].append(work)


def _flush_hooks(batch: BatchOperationsImpl) -> tuple[list[Callable[[], None]], list[Callable[[], None]]]:
    """The work to run before and after this batch is applied.

    ``batch_alter_table()`` calls ``flush()`` on this one object when its block
    ends; it is wrapped on the instance, so no other batch is affected.
    """
    hooks: Optional[tuple[list[Callable[[], None]], list[Callable[[], None]]]] = (
        batch.__dict__.get(_AFTER_FLUSH))
    if hooks is None:
        hooks = ([], [])
        setattr(batch, _AFTER_FLUSH, hooks)
        flush = batch.flush
        before, after = hooks

        def flush_with_hooks() -> None:
            for item in before:
                item()
            flush()
            for item in after:
                item()

        batch.flush = flush_with_hooks  # type: ignore[method-assign]  # this instance only
    return hooks
