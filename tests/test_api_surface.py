"""The public API is what docs/reference.md documents: every name ``sqlaudit`` exports is
documented there, and every public function or class of the public modules is too
(internal helpers carry a leading underscore)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

import sqlaudit
import sqlaudit.exceptions

REFERENCE = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text(
    encoding="utf-8")

PUBLIC_MODULES = [
    "sqlaudit",
    "sqlaudit.alembic",
    "sqlaudit.asyncio",
    "sqlaudit.config",
    "sqlaudit.context",
    "sqlaudit.ddl",
    "sqlaudit.decorators",
    "sqlaudit.exceptions",
    "sqlaudit.hooks",
    "sqlaudit.integrity",
    "sqlaudit.retrieval",
    "sqlaudit.revert",
]

#: The sqlaudit 0.3 names applications already import; they stay.
COMPATIBILITY = {
    "sqlaudit": ["SQLAuditConfig", "set_config", "get_config", "clear_config", "has_config",
                 "track_table", "register_hooks", "unregister_hooks", "get_resource_changes",
                 "SQLAuditRecord"],
    "sqlaudit.config": ["SQLAuditConfig", "set_config", "get_config", "clear_config",
                        "has_config"],
    "sqlaudit.decorators": ["track_table"],
    "sqlaudit.hooks": ["register_hooks", "unregister_hooks"],
    "sqlaudit.retrieval": ["get_resource_changes", "SQLAuditRecord"],
    "sqlaudit.exceptions": ["SQLAuditError", "SQLAuditConfigError", "SQLAuditUserConfigError",
                            "SQLAuditTableNotTrackedError", "SQLAuditTableNotInDatabaseError",
                            "SQLAuditUnsupportedDialectError"],
}


def _documented(name: str) -> bool:
    """``name`` appears as a word inside an inline code span of docs/reference.md."""
    return re.search(r"`[^`\n]*\b" + re.escape(name) + r"\b[^`\n]*`", REFERENCE) is not None


def _public_names(module: ModuleType) -> set[str]:
    """``__all__`` (which names what a module re-exports from private ones), plus every
    non-underscore function or class defined in the module itself."""
    names = set(getattr(module, "__all__", ()))
    for name, value in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if getattr(value, "__module__", None) == module.__name__:
            names.add(name)
    return names


def test_every_name_sqlaudit_exports_is_importable_and_documented() -> None:
    missing = [n for n in sqlaudit.__all__ if not hasattr(sqlaudit, n)]
    assert not missing, f"in sqlaudit.__all__ but not importable: {missing}"
    undocumented = [n for n in sqlaudit.__all__ if not _documented(n)]
    assert not undocumented, f"exported but not in docs/reference.md: {undocumented}"


def test_every_exception_is_exported_from_the_package() -> None:
    assert set(sqlaudit.exceptions.__all__) <= set(sqlaudit.__all__)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_of_a_public_module_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    names = _public_names(module)
    absent = sorted(n for n in getattr(module, "__all__", ()) if not hasattr(module, n))
    assert not absent, f"{module_name}.__all__ names what it does not define: {absent}"
    undocumented = sorted(n for n in names if not _documented(n))
    assert not undocumented, (
        f"{module_name}: public but not documented in docs/reference.md: {undocumented}; "
        f"document them or give internal helpers a leading underscore")


@pytest.mark.parametrize("module_name", sorted(COMPATIBILITY))
def test_the_compatibility_surface_stays(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert [n for n in COMPATIBILITY[module_name] if not hasattr(module, n)] == []


def test_the_package_exports_every_documented_function_of_the_public_modules() -> None:
    """What a module documents is importable from ``sqlaudit`` too, except the Alembic
    operations (they need the alembic extra) and the pruning step prune_audit_log runs."""
    elsewhere = {"CreateAuditTriggersOp", "DropAuditTriggersOp", "PartitionAuditLogOp", "prune_sealed",
                 "CHUNK_ROWS", "FORMAT_VERSION"}
    for module_name in PUBLIC_MODULES[1:]:
        module = importlib.import_module(module_name)
        missing = sorted(_public_names(module) - set(sqlaudit.__all__) - elsewhere)
        assert not missing, f"{module_name}: documented but not exported by sqlaudit: {missing}"
