"""The fingerprint stored with installed triggers, for drift detection.

It records the template version, a hash of the SQL that was installed and the
tracked fields, as compact JSON. PostgreSQL keeps it in ``COMMENT ON FUNCTION``;
SQLite keeps it in a ``/* sqlaudit:{...} */`` comment inside each trigger's SQL,
which ``sqlite_master`` stores verbatim; MariaDB / MySQL in a string literal of
each trigger body (:func:`mysql_declaration`).
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


#: MariaDB / MySQL: the fingerprint as a string in a branch of each trigger body that
#: never runs. Not a comment: the ``mariadb`` and ``mysql`` clients strip comments from
#: what they send (their default ``--skip-comments``), which would lose it from a
#: script; not a variable's default, which the server would allocate on every row.
#: (the server stores a hex literal without its ``_utf8mb4`` introducer)
_MYSQL = re.compile(
    r"IF\s+FALSE\s+THEN\s+DO\s+"
    r"(?:'sqlaudit:((?:[^'\\]|'')*)'|(?:_utf8mb4\s*)?[Xx]'([0-9A-Fa-f]*)')"
)


def mysql_declaration(fingerprint: dict[str, Any]) -> str:
    """``IF FALSE THEN DO '<fingerprint>'; END IF;``: a string literal that means the
    same under every ``sql_mode`` (a hex literal when the text holds a backslash,
    which NO_BACKSLASH_ESCAPES would read differently), in a branch that never runs."""
    value = _PG_PREFIX + encode(fingerprint)
    if "\\" in value:
        literal = f"_utf8mb4 X'{value.encode('utf-8').hex().upper()}'"
    else:
        literal = "'" + value.replace("'", "''") + "'"
    return f"    IF FALSE THEN DO {literal}; END IF;"


def parse_mysql(body: Optional[str]) -> Optional[dict[str, Any]]:
    """The fingerprint of a MariaDB / MySQL trigger body (its dead branch, else a comment).

    The last match: the dead branch ends the body, and a back-quoted column name in the
    body may hold the same text (its ``'`` not doubled there)."""
    match = None
    for match in _MYSQL.finditer(body or ""):
        pass
    if match is None:
        return parse_sqlite(body)
    if match.group(1) is not None:
        return _loads(match.group(1).replace("''", "'"))
    try:
        return parse_pg(bytes.fromhex(match.group(2)).decode("utf-8"))
    except ValueError:
        return None


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
