"""Refuse plain column operations that would break a table's audit triggers.

``op.drop_column`` / ``op.alter_column(new_column_name=...)`` on a column the
installed triggers record would succeed and then make every later write to the
table fail (PostgreSQL's trigger function names the column) or silently record
the old name (SQLite). Online, each such operation first reads the fingerprint
stored with the table's triggers and, if it names the column, raises
:class:`~sqlaudit.exceptions.SQLAuditMigrationError` with the calls to add.
Replacing the triggers around the change (drop, alter, create) passes: the
check then finds no triggers. In batch mode the check runs when the block ends
(``batch_op.create_audit_triggers`` anywhere in the block has dropped the old
triggers by then); a batch that recreates the table is left to :mod:`.batch`,
which re-creates the triggers after it. Offline (``--sql``) nothing can be read.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from alembic.operations import Operations, ops
from alembic.operations import toimpl

from .._installed import default_schema, installed_key, installed_triggers
from ..exceptions import SQLAuditMigrationError
from .impl import _batch_of, _before_flush

#: an Alembic operation implementation: (operations, operation, **kw) -> None
_Impl = Callable[..., None]

_drop_column = toimpl.drop_column
_alter_column = toimpl.alter_column


def _check(operations: Operations, what: str, table: str, schema: Optional[str], column: str) -> None:
    context = operations.migration_context
    if context.as_sql:
        return
    batch = _batch_of(operations)
    if batch is None:
        _refuse_if_recorded(operations, what, table, schema, column)
        return

    def check_in_place() -> None:
        # A recreate (SQLite, recreate="always") is followed by .batch, which keeps
        # the triggers or refuses; ALTERs in place are checked here, when the block
        # ends: batch_op.create_audit_triggers() anywhere in it has dropped them by then.
        if not batch._should_recreate():
            _refuse_if_recorded(operations, f"batch_op.{what}", table, schema, column)

    _before_flush(batch, check_in_place)


def _refuse_if_recorded(operations: Operations, what: str, table: str, schema: Optional[str],
                        column: str) -> None:
    connection = operations.migration_context.bind
    assert connection is not None  # online: offline (--sql) returned above
    entry = installed_triggers(connection, [schema]).get(
        installed_key(connection, schema or default_schema(connection), table))
    fingerprint = entry.fingerprint if entry is not None else None
    if not fingerprint:
        return
    fields = list(fingerprint.get("fields", []))
    used = set(fields) | set(fingerprint.get("key", []))
    if column not in used:
        return
    if what.startswith("batch_op."):
        remedy = ("call batch_op.create_audit_triggers([...the new columns...]) in the batch: "
                  "it replaces them once the batch has run")
        shown = f"{what}({column!r}) in the batch of {table!r}"
    else:
        remedy = (f"op.drop_audit_triggers({table!r}, tracked_fields={fields!r}) before it and "
                  f"op.create_audit_triggers({table!r}, tracked_fields=[...the new columns...]) "
                  f"after it")
        shown = f"{what}({table!r}, {column!r})"
    raise SQLAuditMigrationError(
        f"{shown} would break the audit triggers of {table!r} (they record column "
        f"{column!r}): replace them around the change, e.g. {remedy}."
    )


def _replacing(op_cls: Any) -> Callable[[_Impl], _Impl]:
    """``Operations.implementation_for(op_cls, replace=True)``; Alembic before 1.14
    has no ``replace`` and overwrites the implementation as it is."""
    try:
        return Operations.implementation_for(op_cls, replace=True)
    except TypeError:
        return Operations.implementation_for(op_cls)


@_replacing(ops.DropColumnOp)
def drop_column(operations: Operations, operation: ops.DropColumnOp, **kw: Any) -> None:
    _check(operations, "drop_column", operation.table_name, operation.schema,
           operation.column_name)
    _drop_column(operations, operation, **kw)


@_replacing(ops.AlterColumnOp)
def alter_column(operations: Operations, operation: ops.AlterColumnOp, **kw: Any) -> None:
    if operation.modify_name is not None and operation.modify_name != operation.column_name:
        _check(operations, "alter_column", operation.table_name, operation.schema,
               operation.column_name)
    _alter_column(operations, operation, **kw)
