"""The Alembic operations ``create_audit_triggers`` and ``drop_audit_triggers``.

Operations are plain data (strings and lists of strings), so autogenerate can
write them into migration files and :meth:`reverse` can build the downgrade.
Field names are **column** names of the table, as stored in the database.

Registered on import::

    op.create_audit_triggers(table_name, tracked_fields=None, *, schema=None,
                             resource_id_field=None, table_label=None)
    op.drop_audit_triggers(table_name, *, schema=None, tracked_fields=None,
                           resource_id_field=None, table_label=None)

    with op.batch_alter_table(table_name) as batch_op:
        batch_op.create_audit_triggers(tracked_fields=None, ...)
        batch_op.drop_audit_triggers(...)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from alembic.operations import BatchOperations, MigrateOperation, Operations

from ..exceptions import SQLAuditArgumentError, SQLAuditArgumentTypeError
from ..spec import check_require_user

__all__ = ["CreateAuditTriggersOp", "DropAuditTriggersOp"]


def _fields(value: Optional[Sequence[str]], table_name: str) -> Optional[list[str]]:
    """``tracked_fields`` as a list of column names (None: every column)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SQLAuditArgumentTypeError(
            f"tracked_fields for table {table_name!r} must be a list of column names or "
            f"None, got {type(value).__name__} {value!r}"
        )
    if not value:
        raise SQLAuditArgumentError(
            f"tracked_fields for table {table_name!r} is empty; name at least one column, "
            f"or pass None to track every column."
        )
    for name in value:
        if not isinstance(name, str):
            raise SQLAuditArgumentTypeError(f"tracked_fields for table {table_name!r} must hold "
                                            f"str, got {name!r}")
    return list(dict.fromkeys(value))


def _check_name(option: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise SQLAuditArgumentTypeError(f"{option} must be a str or None, got "
                                        f"{type(value).__name__} {value!r}")


class _AuditTriggersOp(MigrateOperation):
    """Fields shared by both operations."""

    def __init__(
        self,
        table_name: str,
        tracked_fields: Optional[Sequence[str]] = None,
        *,
        schema: Optional[str] = None,
        resource_id_field: Optional[str] = None,
        table_label: Optional[str] = None,
        require_user_id: Optional[bool] = None,
    ) -> None:
        if not isinstance(table_name, str) or not table_name:
            raise SQLAuditArgumentTypeError(f"table_name must be a non-empty str, got {table_name!r}")
        for option, value in (
            ("schema", schema),
            ("resource_id_field", resource_id_field),
            ("table_label", table_label),
        ):
            _check_name(option, value)
        self.table_name = table_name
        self.tracked_fields = _fields(tracked_fields, table_name)
        self.schema = schema
        self.resource_id_field = resource_id_field
        self.table_label = table_label
        self.require_user_id = check_require_user(require_user_id)

    @property
    def fullname(self) -> str:
        return f"{self.schema}.{self.table_name}" if self.schema else self.table_name

    def _options(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "resource_id_field": self.resource_id_field,
            "table_label": self.table_label,
            "require_user_id": self.require_user_id,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.fullname} tracked_fields={self.tracked_fields}>"


@Operations.register_operation("create_audit_triggers")
@BatchOperations.register_operation("create_audit_triggers", "batch_create_audit_triggers")
class CreateAuditTriggersOp(_AuditTriggersOp):
    """Install (or replace) the audit triggers of an existing table."""

    @classmethod
    def create_audit_triggers(
        cls,
        operations: Operations,
        table_name: str,
        tracked_fields: Optional[Sequence[str]] = None,
        *,
        schema: Optional[str] = None,
        resource_id_field: Optional[str] = None,
        table_label: Optional[str] = None,
        require_user_id: Optional[bool] = None,
    ) -> None:
        """Install (or replace) the audit triggers of ``table_name``.

        Creates the shared ``sqlaudit_log`` table when it is missing and runs
        the same SQL as ``metadata.create_all()``.

        Args:
            table_name: the audited table; it must exist.
            tracked_fields: column names to audit; ``None`` audits every column.
            schema: the table's schema.
            resource_id_field: column identifying a row; default: the primary key.
            table_label: kept for symmetry with ``@track_table``; it does not
                change the installed SQL.
            require_user_id: install fail-closed (True) or fail-open (False);
                ``None``: ``SQLAuditConfig.require_user_id`` of the migrating process.
        """
        operations.invoke(
            cls(table_name, tracked_fields, schema=schema, resource_id_field=resource_id_field,
                table_label=table_label, require_user_id=require_user_id)
        )

    @classmethod
    def batch_create_audit_triggers(
        cls,
        operations: BatchOperations,
        tracked_fields: Optional[Sequence[str]] = None,
        *,
        resource_id_field: Optional[str] = None,
        table_label: Optional[str] = None,
    ) -> None:
        """Replace the audit triggers of the batch's table once the batch is applied.

        The old triggers are dropped at once; the new ones are installed after
        the batch's ALTERs (or SQLite's table recreate), so ``tracked_fields``
        may name columns the batch adds or renames.
        """
        impl = operations.impl
        operations.invoke(
            cls(impl.table_name, tracked_fields, schema=impl.schema,
                resource_id_field=resource_id_field, table_label=table_label)
        )

    def reverse(self) -> "DropAuditTriggersOp":
        return DropAuditTriggersOp(self.table_name, self.tracked_fields, **self._options())

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("add_audit_triggers", self.fullname, self.tracked_fields)


@Operations.register_operation("drop_audit_triggers")
@BatchOperations.register_operation("drop_audit_triggers", "batch_drop_audit_triggers")
class DropAuditTriggersOp(_AuditTriggersOp):
    """Remove the audit triggers of a table; the recorded history stays."""

    @classmethod
    def drop_audit_triggers(
        cls,
        operations: Operations,
        table_name: str,
        *,
        schema: Optional[str] = None,
        tracked_fields: Optional[Sequence[str]] = None,
        resource_id_field: Optional[str] = None,
        table_label: Optional[str] = None,
    ) -> None:
        """Remove the audit triggers of ``table_name``; ``sqlaudit_log`` keeps the history.

        ``tracked_fields``, ``resource_id_field`` and ``table_label`` describe the
        triggers being removed. They change nothing here, but let autogenerate
        write a downgrade that reinstalls exactly those triggers.
        """
        operations.invoke(
            cls(table_name, tracked_fields, schema=schema,
                resource_id_field=resource_id_field, table_label=table_label)
        )

    @classmethod
    def batch_drop_audit_triggers(
        cls,
        operations: BatchOperations,
        *,
        tracked_fields: Optional[Sequence[str]] = None,
        resource_id_field: Optional[str] = None,
        table_label: Optional[str] = None,
    ) -> None:
        """Remove the audit triggers of the batch's table at once (before the batch runs)."""
        impl = operations.impl
        operations.invoke(
            cls(impl.table_name, tracked_fields, schema=impl.schema,
                resource_id_field=resource_id_field, table_label=table_label)
        )

    def reverse(self) -> CreateAuditTriggersOp:
        return CreateAuditTriggersOp(self.table_name, self.tracked_fields, **self._options())

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("remove_audit_triggers", self.fullname, self.tracked_fields)
