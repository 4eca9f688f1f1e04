"""Alembic integration: ``import sqlaudit.alembic`` in ``env.py`` (or a migration).

Importing this module registers:

* the operations ``op.create_audit_triggers(table_name, tracked_fields=None, *,
  schema=None, resource_id_field=None, table_label=None)`` and
  ``op.drop_audit_triggers(table_name, *, schema=None, tracked_fields=None, ...)``,
  plus ``batch_op.create_audit_triggers`` / ``batch_op.drop_audit_triggers``;
* the autogenerate comparator and renderers, so ``alembic revision
  --autogenerate`` writes those operations and ``alembic check`` fails on drift;
* ``op.partition_audit_log(by="month", ahead=3)``, which converts a plain
  ``sqlaudit_log`` into a partitioned one (PostgreSQL; docs/partitioning.md);
* the batch-mode guard that keeps a table's audit triggers when
  ``op.batch_alter_table()`` recreates it (SQLite, or ``recreate="always"``);
* on MariaDB / MySQL, ``--sql`` output that the ``mariadb`` client runs as it is
  (``DELIMITER`` lines around trigger bodies).

Needs the ``alembic`` extra (``pip install '.[alembic]'`` in a checkout of sqlaudit).
"""

from __future__ import annotations

from .exceptions import SQLAuditMissingExtraError

try:
    import alembic as _alembic  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SQLAuditMissingExtraError(
        "sqlaudit.alembic needs Alembic (sqlaudit's alembic extra); install it with: pip install alembic"
    ) from exc

from .migration import batch as _batch  # noqa: F401,E402
from .migration import compare as _compare  # noqa: F401,E402
from .migration import guard as _guard  # noqa: F401,E402
from .migration import impl as _impl  # noqa: F401,E402
from .migration import render as _render  # noqa: F401,E402
from .migration.ops import CreateAuditTriggersOp, DropAuditTriggersOp  # noqa: E402
from .migration.partition import PartitionAuditLogOp  # noqa: E402

__all__ = ["CreateAuditTriggersOp", "DropAuditTriggersOp", "PartitionAuditLogOp"]
