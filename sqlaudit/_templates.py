"""Load the ``.sql`` templates and fill their ``{{ placeholders }}`` strictly.

Templates live in ``sql_templates/<dialect>/`` at the top of the source tree and
inside the package (``sqlaudit/sql_templates``) once installed. A file may hold
several statements separated by a line ``-- sqlaudit:statement``. A placeholder
without a value, or a value without a placeholder, is an error.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .exceptions import SQLAuditError

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_SEPARATOR = re.compile(r"^--\s*sqlaudit:statement\s*$", re.MULTILINE)

#: Bumped whenever a template changes what it installs (used by drift detection).
TEMPLATE_VERSION = 3


def _template_root() -> Path:
    packaged = resources.files("sqlaudit") / "sql_templates"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / "sql_templates"
    if source.is_dir():
        return source
    raise SQLAuditError(
        "sqlaudit's SQL templates are missing from the installation; reinstall sqlaudit."
    )


@lru_cache(maxsize=None)
def _load(dialect: str, name: str) -> str:
    return (_template_root() / dialect / f"{name}.sql").read_text(encoding="utf-8")


def render(dialect: str, name: str, **values: str) -> list[str]:
    """Render template ``name`` of ``dialect`` into a list of SQL statements."""
    text = _load(dialect, name)
    used: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise SQLAuditError(f"template {dialect}/{name}.sql needs a value for {{{{ {key} }}}}")
        used.add(key)
        return values[key]

    pieces = [_strip_comment_header(p) for p in _SEPARATOR.split(text)]
    statements = [_PLACEHOLDER.sub(substitute, p) for p in pieces if p]
    unused = set(values) - used
    if unused:
        raise SQLAuditError(f"template {dialect}/{name}.sql has no placeholder for {sorted(unused)}")
    return statements


def _strip_comment_header(statement: str) -> str:
    """Drop leading ``--`` comment lines (file headers) but keep the statement verbatim."""
    lines = statement.splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        lines.pop(0)
    return "\n".join(lines).strip()
