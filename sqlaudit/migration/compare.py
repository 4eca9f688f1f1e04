"""Autogenerate: compare the tracked tables of ``target_metadata`` with the database.

For each ``@track_table`` table the fingerprint stored with its installed
triggers is compared with what sqlaudit would install now (the same check as
:func:`sqlaudit.ddl.audit_status`):

* missing triggers -> ``create_audit_triggers``;
* outdated triggers (other fields, key or template) -> ``drop_audit_triggers``
  carrying the installed fields, then ``create_audit_triggers`` with the new ones;
* ``sqlaudit_*`` triggers on a table that is no longer tracked ->
  ``drop_audit_triggers`` carrying the installed fields.

Drops go first in the upgrade and creates last, so triggers are removed before
any column or table they use changes, and installed after every table and
column exists; the downgrade, built by reversal, mirrors that. Tables excluded
by the environment's ``include_name`` / ``include_object`` are left alone.
"""

from __future__ import annotations

from typing import Any, Optional

from alembic.autogenerate import comparators
from alembic.autogenerate.api import AutogenContext
from alembic.operations.ops import CreateIndexOp, DropIndexOp, UpgradeOps
from sqlalchemy import Column, DateTime, Index, MetaData, Table, Text

from .._installed import InstalledTriggers, default_schema, installed_triggers
from .._naming import AUDIT_TABLE_NAME
from .._partitions import forget_partitions
from ..ddl import AuditState, audit_status
from ..dialects import MYSQL_NAMES, module_for
from ..schema import USER_PREFIX
from ..spec import INFO_KEY, spec_for
from .ops import CreateAuditTriggersOp, DropAuditTriggersOp, _AuditTriggersOp
from .render import fix_jsonb_variant_rendering

try:  # Alembic >= 1.18
    from alembic.util import DispatchPriority, PriorityDispatchResult

    _CONTINUE: Any = PriorityDispatchResult.CONTINUE
except ImportError:  # pragma: no cover - older Alembic
    DispatchPriority = None  # type: ignore[assignment,misc]  # the class is absent before 1.18
    _CONTINUE = None

_USER_INDEX = "ix_sqlaudit_log_user"
_Installed = dict[tuple[Optional[str], str], InstalledTriggers]


def compare_audit_triggers(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: set[Optional[str]]
) -> Any:
    """The "schema"-level comparator (runs after Alembic's table comparison)."""
    if any(isinstance(op, _AuditTriggersOp) for op in upgrade_ops.ops):
        return _CONTINUE  # already compared (global hook and plugin both enabled)
    connection = autogen_context.connection
    assert connection is not None  # autogenerate always has one
    forget_partitions(connection, upgrade_ops)  # a partitioned sqlaudit_log's partitions
    fix_jsonb_variant_rendering(autogen_context)
    tracked = [t for t in autogen_context.sorted_tables if INFO_KEY in t.info]
    if connection.dialect.name not in ("postgresql", "sqlite", *MYSQL_NAMES):
        if tracked:
            module_for(connection.dialect.name)  # raises the unsupported-database error
        return _CONTINUE
    if connection.dialect.name in MYSQL_NAMES:
        _prefix_user_index(upgrade_ops)
    installed = installed_triggers(connection)
    default = default_schema(connection)
    drops, creates = _compare_tracked(autogen_context, tracked, installed, default)
    drops += _drop_orphans(autogen_context, tracked, installed, default, schemas)
    upgrade_ops.ops[:0] = drops
    upgrade_ops.ops.extend(creates)
    return _CONTINUE


def _prefix_user_index(parent: Any) -> None:
    """MariaDB / MySQL: write ``ix_sqlaudit_log_user`` as the prefix index ``create_all``
    makes there (``changed_by(200), changed_at``): the model's index on ``substr(...)``
    is an expression index, which MariaDB cannot create."""
    for position, op in enumerate(parent.ops):
        if hasattr(op, "ops"):
            _prefix_user_index(op)
        elif (isinstance(op, (CreateIndexOp, DropIndexOp)) and op.index_name == _USER_INDEX
                and op.table_name == AUDIT_TABLE_NAME):
            parent.ops[position] = type(op).from_index(_mysql_user_index(op.schema))


def _mysql_user_index(schema: Optional[str]) -> Index:
    table = Table(AUDIT_TABLE_NAME, MetaData(), Column("changed_by", Text()),
                  Column("changed_at", DateTime()), schema=schema)
    length = {"changed_by": USER_PREFIX}
    return Index(_USER_INDEX, table.c.changed_by, table.c.changed_at,
                 mysql_length=length, mariadb_length=length)


def _compare_tracked(
    context: AutogenContext, tracked: list[Table], installed: _Installed, default: Optional[str]
) -> tuple[list[_AuditTriggersOp], list[_AuditTriggersOp]]:
    """Drops and creates for the tracked tables whose triggers are missing or outdated."""
    assert context.connection is not None
    states = audit_status(context.connection, *tracked) if tracked else {}
    drops: list[_AuditTriggersOp] = []
    creates: list[_AuditTriggersOp] = []
    for table in tracked:
        state = states[table.fullname]
        if state is AuditState.CURRENT or not _included(
            context, table, _local(table.schema, default), reflected=False
        ):
            continue
        if state in (AuditState.OUTDATED, AuditState.BROKEN):
            pk = [c.name for c in table.primary_key.columns]
            entry = installed[(table.schema or default, table.name)]
            drops.append(_drop_op(entry, table.schema, pk, table.info[INFO_KEY]))
        creates.append(_create_op(table))
    return drops, creates


def _drop_orphans(
    context: AutogenContext,
    tracked: list[Table],
    installed: _Installed,
    default: Optional[str],
    schemas: set[Optional[str]],
) -> list[_AuditTriggersOp]:
    """Drops for ``sqlaudit_*`` triggers on tables that are not tracked (any more)."""
    tracked_keys = {(t.schema or default, t.name) for t in tracked}
    drops: list[_AuditTriggersOp] = []
    for key, entry in sorted(installed.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        schema = _local(entry.schema, default)
        if key in tracked_keys or schema not in schemas:
            continue
        table = Table(entry.table, MetaData(), schema=schema)
        if not _included(context, table, schema, reflected=True):
            continue
        pk = context.inspector.get_pk_constraint(entry.table, schema=schema)
        drops.append(_drop_op(entry, schema, pk.get("constrained_columns") or [], None))
    return drops


def _local(schema: Optional[str], default: Optional[str]) -> Optional[str]:
    """Alembic names the default schema None."""
    return None if schema == default else schema


def _included(
    context: AutogenContext, table: Table, schema: Optional[str], reflected: bool
) -> bool:
    return bool(
        context.run_name_filters(table.name, "table", {"schema_name": schema})
        and context.run_object_filters(table, table.name, "table", reflected, None)
    )


def _resource_id_field(key: list[str], pk: list[str]) -> Optional[str]:
    """The op's ``resource_id_field``: None when the key is the primary key."""
    return key[0] if key != pk and len(key) == 1 else None


def _create_op(table: Table) -> CreateAuditTriggersOp:
    info = table.info[INFO_KEY]
    pk = [c.name for c in table.primary_key.columns]
    return CreateAuditTriggersOp(
        table.name,
        list(info["tracked_columns"]),
        schema=table.schema,
        resource_id_field=_resource_id_field(list(info["key_columns"]), pk),
        table_label=info.get("table_label"),
        # what the model resolves to now, so the migration installs what status expects
        require_user_id=True if spec_for(table).require_user else None,
    )


def _drop_op(entry: InstalledTriggers, schema: Optional[str], pk: list[str],
             info: Optional[dict[str, Any]]) -> DropAuditTriggersOp:
    """Drop what is installed, carrying its fields so the downgrade can reinstall it."""
    fingerprint = entry.fingerprint or {}
    fields = _names(fingerprint.get("fields"))
    key = _names(fingerprint.get("key")) or pk
    return DropAuditTriggersOp(
        entry.table,
        fields,
        schema=schema,
        resource_id_field=_resource_id_field(key, pk),
        table_label=(info or {}).get("table_label"),
    )


def _names(value: Any) -> Optional[list[str]]:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def register() -> None:
    """Add the comparator to Alembic's global comparators (priority LAST where supported)."""
    if DispatchPriority is not None:
        comparators.dispatch_for("schema", priority=DispatchPriority.LAST)(compare_audit_triggers)
    else:  # pragma: no cover - older Alembic runs global comparators after its own
        comparators.dispatch_for("schema")(compare_audit_triggers)


register()
