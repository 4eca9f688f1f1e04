"""sqlaudit: a trigger-based audit trail for SQLAlchemy models.

Decorate models with :func:`track_table`, let ``metadata.create_all()`` install
the triggers, call :func:`register_hooks` so the acting user reaches the
database, and read the history back with :func:`get_resource_changes`.
"""

from .config import SQLAuditConfig, clear_config, get_config, has_config, set_config
from .context import audit_context, clear_audit_context, set_audit_context
from .ddl import drop_audit_log, drop_audit_triggers, install_audit_triggers, render_audit_ddl
from .decorators import track_table
from .exceptions import (
    SQLAuditArgumentError,
    SQLAuditArgumentTypeError,
    SQLAuditConfigError,
    SQLAuditError,
)
from .hooks import register_hooks, unregister_hooks
from .integrity import find_history_gaps, seal_audit_log, verify_audit_log
from .retrieval import (
    AuditTransaction,
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
    "AuditTransaction",
    "RevertResult",
    "SQLAuditArgumentError",
    "SQLAuditArgumentTypeError",
    "SQLAuditConfig",
    "SQLAuditConfigError",
    "SQLAuditError",
    "SQLAuditRecord",
    "audit_context",
    "clear_audit_context",
    "clear_config",
    "drop_audit_log",
    "drop_audit_triggers",
    "find_history_gaps",
    "get_changes",
    "get_config",
    "get_resource_changes",
    "get_resource_state",
    "get_table_state",
    "get_transactions",
    "has_config",
    "install_audit_triggers",
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
