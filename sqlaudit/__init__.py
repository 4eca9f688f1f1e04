"""sqlaudit: a trigger-based audit trail for SQLAlchemy models.

Decorate models with :func:`track_table`, let ``metadata.create_all()`` install
the triggers, call :func:`register_hooks` so the acting user reaches the
database, and read the history back with :func:`get_resource_changes`. Every
name documented in docs/reference.md is importable from here; the Alembic
operations live in :mod:`sqlaudit.alembic` (they need the ``alembic`` extra).
"""

from .config import SQLAuditConfig, clear_config, get_config, has_config, set_config
from .context import Actor, audit_context, clear_audit_context, current_actor, set_audit_context
from .ddl import (
    AuditState,
    audit_status,
    create_audit_log,
    drop_audit_log,
    drop_audit_triggers,
    grant_audit_read,
    install_audit_triggers,
    maintain_audit_partitions,
    partition_audit_log,
    prune_audit_log,
    render_audit_ddl,
)
from .decorators import track_table
from .exceptions import (
    SQLAuditArgumentError,
    SQLAuditArgumentTypeError,
    SQLAuditConfigError,
    SQLAuditContextError,
    SQLAuditError,
    SQLAuditIntegrityError,
    SQLAuditMigrationError,
    SQLAuditMissingExtraError,
    SQLAuditRevertConflict,
    SQLAuditRevertError,
    SQLAuditStampError,
    SQLAuditTableNotInDatabaseError,
    SQLAuditTableNotTrackedError,
    SQLAuditUnsafeKeyError,
    SQLAuditUnsupportedDialectError,
    SQLAuditUserConfigError,
    SQLAuditUserIdTypeError,
    SQLAuditUserIdValueError,
)
from .hooks import hooks_registered, register_hooks, unregister_hooks
from .integrity import (
    HistoryGap,
    Problem,
    VerifyResult,
    find_history_gaps,
    seal_audit_log,
    verify_audit_log,
)
from .retrieval import (
    AuditTransaction,
    ResourceIdType,
    SQLAuditRecord,
    get_changes,
    get_resource_changes,
    get_resource_state,
    get_table_state,
    get_transactions,
)
from .revert import RevertResult, restore_resource, revert_transaction

__version__ = "1.0.0.dev0"

__all__ = [
    "Actor",
    "AuditState",
    "AuditTransaction",
    "HistoryGap",
    "Problem",
    "ResourceIdType",
    "RevertResult",
    "SQLAuditArgumentError",
    "SQLAuditArgumentTypeError",
    "SQLAuditConfig",
    "SQLAuditConfigError",
    "SQLAuditContextError",
    "SQLAuditError",
    "SQLAuditIntegrityError",
    "SQLAuditMigrationError",
    "SQLAuditMissingExtraError",
    "SQLAuditRecord",
    "SQLAuditRevertConflict",
    "SQLAuditRevertError",
    "SQLAuditStampError",
    "SQLAuditTableNotInDatabaseError",
    "SQLAuditTableNotTrackedError",
    "SQLAuditUnsafeKeyError",
    "SQLAuditUnsupportedDialectError",
    "SQLAuditUserConfigError",
    "SQLAuditUserIdTypeError",
    "SQLAuditUserIdValueError",
    "VerifyResult",
    "audit_context",
    "audit_status",
    "clear_audit_context",
    "clear_config",
    "create_audit_log",
    "current_actor",
    "drop_audit_log",
    "drop_audit_triggers",
    "find_history_gaps",
    "get_changes",
    "get_config",
    "get_resource_changes",
    "get_resource_state",
    "get_table_state",
    "get_transactions",
    "grant_audit_read",
    "has_config",
    "hooks_registered",
    "install_audit_triggers",
    "maintain_audit_partitions",
    "partition_audit_log",
    "prune_audit_log",
    "register_hooks",
    "render_audit_ddl",
    "restore_resource",
    "revert_transaction",
    "seal_audit_log",
    "set_audit_context",
    "set_config",
    "track_table",
    "unregister_hooks",
    "verify_audit_log",
]
