"""The Alembic operation ``op.partition_audit_log(by="month", ahead=3)``.

Converts an existing plain ``sqlaudit_log`` into a range-partitioned one while
the application keeps writing: the same two phases as
:func:`sqlaudit.ddl.partition_audit_log` (``sqlaudit._partitions.prepare`` in an
Alembic ``autocommit_block()``, then the short swap in the migration's
transaction). Put it alone in its migration: the block commits what ran before
it, and the swap's lock on ``sqlaudit_log`` lasts until the migration commits.

Online only: the boundary between the old log's partition and the new ones is
chosen from the database clock when the migration runs, and the swap reads
the log's primary key, indexes and id sequence from the catalog, so no
``--sql`` script can be written ahead of time.
"""

from __future__ import annotations

from typing import Any

from alembic.operations import MigrateOperation, Operations

from .. import _partitions
from .._installed import default_schema
from ..ddl import _AuditDDL
from ..exceptions import SQLAuditArgumentTypeError, SQLAuditMigrationError

__all__ = ["PartitionAuditLogOp"]


@Operations.register_operation("partition_audit_log")
class PartitionAuditLogOp(MigrateOperation):
    """Convert the plain ``sqlaudit_log`` into a partitioned one (PostgreSQL)."""

    def __init__(self, by: str = "month", ahead: int = 3, lock_timeout: float = 2.0,
                 attempts: int = 10) -> None:
        if by is None:
            raise SQLAuditArgumentTypeError("by must be one of 'month', 'week', 'day', got None")
        _partitions.check_options(by, ahead)
        self.policy = _partitions.LockPolicy(lock_timeout, attempts)
        self.by = by
        self.ahead = ahead

    @classmethod
    def partition_audit_log(cls, operations: Operations, *, by: str = "month",
                            ahead: int = 3, lock_timeout: float = 2.0,
                            attempts: int = 10) -> None:
        """Partition ``sqlaudit_log`` by ``by`` (``"month"``, ``"week"`` or ``"day"``)
        on ``changed_at``, with ``ahead`` periods of partitions after the boundary
        and a DEFAULT partition; a no-op when it is partitioned already. Each
        exclusive lock is waited for at most ``lock_timeout`` seconds, ``attempts``
        times (see :func:`sqlaudit.ddl.partition_audit_log`)."""
        operations.invoke(cls(by=by, ahead=ahead, lock_timeout=lock_timeout, attempts=attempts))

    def reverse(self) -> Any:
        raise SQLAuditMigrationError(
            "op.partition_audit_log() has no automatic downgrade: the partitioned log keeps "
            "every record; write the downgrade by hand if you need one.")

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return ("partition_audit_log", self.by, self.ahead)


@Operations.implementation_for(PartitionAuditLogOp)
def partition_audit_log(operations: Operations, op: PartitionAuditLogOp) -> None:
    context = operations.migration_context
    if context.as_sql:
        raise SQLAuditMigrationError(
            "op.partition_audit_log() cannot be rendered offline (--sql): the boundary between "
            "the old log's partition and the new ones comes from the database clock when it "
            "runs, and the swap reads the log's key, indexes and id sequence from the catalog. "
            "Run this migration online, or call sqlaudit.ddl.partition_audit_log(engine, "
            f"by={op.by!r}) from a script.")
    if context.dialect.name != "postgresql":
        raise SQLAuditMigrationError(
            f"op.partition_audit_log(by={op.by!r}) needs PostgreSQL: on {context.dialect.name} "
            "sqlaudit_log stays one table; remove the operation from this migration.")
    connection = context.connection
    assert connection is not None  # online (offline was refused above)
    take, release = _partitions.conversion_lock_statements(str(default_schema(connection)))
    locked = False
    try:
        with context.autocommit_block():
            # a session lock: it outlives the block (polled: see partition_convert_lock.sql)
            _partitions.take_conversion_lock(connection, take)
            locked = True
            boundary = _partitions.prepare(connection, op.by, op.policy)
        if boundary is not None:
            _partitions.swap(connection, op.by, op.ahead, boundary, op.policy)
    finally:
        if locked:
            context.impl.execute(_AuditDDL(release))
