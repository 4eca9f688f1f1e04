"""The ``alembic.plugins`` entry point (Alembic 1.18+).

Alembic imports this module while it is itself being imported, so it stays
light: :func:`setup` only registers a comparator that loads sqlaudit's Alembic
integration when autogenerate first runs. Enable it per environment with
``context.configure(autogenerate_plugins=["alembic.autogenerate.*", "sqlaudit"])``;
``import sqlaudit.alembic`` in ``env.py`` does the same for every environment.
Enabling both is harmless: the comparison runs once.
"""

from __future__ import annotations

from typing import Any


def setup(plugin: Any) -> None:
    from alembic.util import DispatchPriority

    plugin.add_autogenerate_comparator(
        compare_audit_triggers, "schema", priority=DispatchPriority.LAST
    )


def compare_audit_triggers(autogen_context: Any, upgrade_ops: Any, schemas: Any) -> Any:
    import sqlaudit.alembic  # noqa: F401  (operations and renderers)

    from . import compare

    return compare.compare_audit_triggers(autogen_context, upgrade_ops, schemas)
