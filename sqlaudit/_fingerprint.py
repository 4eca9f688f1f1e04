"""The fingerprint stored with installed triggers, for drift detection.

It records the template version, a hash of the SQL that was installed and the
tracked fields, as compact JSON. PostgreSQL keeps it in ``COMMENT ON FUNCTION``;
SQLite keeps it in a ``/* sqlaudit:{...} */`` comment inside each trigger's SQL,
which ``sqlite_master`` stores verbatim.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Optional, Sequence

from ._templates import TEMPLATE_VERSION
from .spec import TableSpec

_SQLITE = re.compile(r"/\* sqlaudit:(\{.*?\}) \*/")
_PG_PREFIX = "sqlaudit:"


def make(spec: TableSpec, dialect_name: str, statements: Sequence[str]) -> dict[str, Any]:
    digest = hashlib.sha1(("\n;\n".join([dialect_name, *statements])).encode("utf-8"))
    return {
        "v": TEMPLATE_VERSION,
        "hash": digest.hexdigest()[:16],
        "fields": [c.name for c in spec.columns],
        "key": [c.name for c in spec.key_columns],
    }


def encode(fingerprint: dict[str, Any]) -> str:
    """ASCII JSON in which ``*/`` cannot occur (``/`` is escaped)."""
    # ": " keeps ":name" out of the text, so SQLAlchemy text() (Alembic's op.execute)
    # never mistakes part of it for a bind parameter.
    text = json.dumps(fingerprint, sort_keys=True, separators=(", ", ": "), ensure_ascii=True)
    return text.replace("/", "\\/")


def sqlite_comment(fingerprint: dict[str, Any]) -> str:
    return f"/* sqlaudit:{encode(fingerprint)} */"


def pg_comment(fingerprint: dict[str, Any]) -> str:
    return _PG_PREFIX + encode(fingerprint)


def parse_sqlite(sql: Optional[str]) -> Optional[dict[str, Any]]:
    match = _SQLITE.search(sql or "")
    return _loads(match.group(1)) if match else None


def parse_pg(comment: Optional[str]) -> Optional[dict[str, Any]]:
    if not comment or not comment.startswith(_PG_PREFIX):
        return None
    return _loads(comment[len(_PG_PREFIX):])


def _loads(text: str) -> Optional[dict[str, Any]]:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
