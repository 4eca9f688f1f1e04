"""Archives of the audit log: export rows to a file, prune into a file, import back.

An archive holds every column of ``sqlaudit_log`` for each exported row, in id
order, in one of two formats:

``jsonl``
    One JSON object per line, keys in the log's column order. ``old_data``,
    ``new_data`` and ``context`` are JSON values exactly as the database holds
    them (numbers keep every digit); ``changed_at`` is ISO-8601 in UTC with its
    offset (``2026-12-06T03:58:01.123456+00:00``); a value that is not UTF-8
    text (a BLOB, or bytes that are not UTF-8, written into a SQLite log by
    another program) is ``{"base64": "..."}``.
``csv``
    A header row with the column names, then one row per record. Every value
    is a quoted field; NULL is an empty unquoted field (so NULL and the empty
    string stay apart for :func:`import_log`; a spreadsheet shows both empty).
    JSON columns hold their JSON text. Values that are not UTF-8 text are
    refused: use ``jsonl``.

The file is written under a temporary name next to ``path`` and renamed to
``path`` once complete (and flushed to disk), so ``path`` never holds half an
archive. An existing ``path`` is refused.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TextIO, Union

from sqlalchemy import MetaData, Table, Text, and_, cast, delete, or_, select, text, type_coerce
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection

from .exceptions import (
    SQLAuditArchiveError,
    SQLAuditArchiveTypeError,
    SQLAuditArchiveValueError,
    SQLAuditTableNotInDatabaseError,
)
from .schema import audit_table, log_schema, rows_of_table

FORMATS = ("jsonl", "csv")
JSON_COLUMNS = frozenset({"old_data", "new_data", "context"})
INT_COLUMNS = frozenset({"id", "transaction_id"})
#: rows fetched (or deleted) per round trip: memory stays bounded by this, not by the log
BATCH = 1000

PathArg = Union[str, "os.PathLike[str]"]


# ---------------------------------------------------------------- arguments

def check_format(format: Any) -> str:
    if not isinstance(format, str):
        raise SQLAuditArchiveTypeError(f"format must be 'jsonl' or 'csv', got {format!r}")
    if format not in FORMATS:
        raise SQLAuditArchiveValueError(f"format must be 'jsonl' or 'csv', got {format!r}")
    return format


def check_before(before: Any) -> datetime:
    if not isinstance(before, datetime):
        raise SQLAuditArchiveTypeError(
            f"before must be a datetime with a time zone, got {before!r}")
    if before.tzinfo is None or before.utcoffset() is None:
        raise SQLAuditArchiveValueError(
            f"before must carry a time zone (e.g. datetime(..., tzinfo=timezone.utc)), got the "
            f"naive {before.isoformat()}")
    return before.astimezone(timezone.utc)


def check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise SQLAuditArchiveTypeError(f"path must be a str or os.PathLike, got {path!r}")
    final = Path(os.fspath(path))
    if final.exists():
        raise SQLAuditArchiveValueError(
            f"{final} already exists; an archive is never overwritten: choose a new path")
    return final


# ---------------------------------------------------------------- reading the log

def log_expressions(log: Table, pg: bool) -> list[Any]:
    """The log's columns as the archive reads them: JSON columns as their text
    (every digit kept), the others typed."""
    out: list[Any] = []
    for column in log.columns:
        if column.name in JSON_COLUMNS:
            raw = cast(column, Text) if pg else type_coerce(column, Text)
            out.append(raw.label(column.name))
        else:
            out.append(column)
    return out


def _lenient_text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


@contextmanager
def lenient(connection: Connection) -> Iterator[None]:
    """SQLite: text that is not UTF-8 (written by any program) is read, not raised on."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw: Any = connection.connection.driver_connection  # sqlite3.Connection
    saved = raw.text_factory
    raw.text_factory = _lenient_text
    try:
        yield
    finally:
        raw.text_factory = saved


def target_log(connection: Connection, tables: Optional[Sequence[Table]]) -> Table:
    named = tables[0].metadata.schema if tables else None
    # named by schema: a TEMP sqlaudit_log must never be what is read
    return audit_table(MetaData(schema=named or log_schema(connection)))


def condition(connection: Connection, log: Table, bound: datetime,
              tables: Optional[Sequence[Table]]) -> Any:
    """Rows older than ``bound`` (aware, UTC), of ``tables`` when given (as
    :func:`sqlaudit.ddl.prune_audit_log` selects them)."""
    if connection.dialect.name == "postgresql":
        where = log.c.changed_at < bound
    else:
        where = log.c.changed_at < bound.replace(tzinfo=None)  # SQLite stores UTC text
    if tables is not None:
        where = and_(where, or_(*[rows_of_table(log, t.name, t.schema) for t in tables]))
    return where


# ---------------------------------------------------------------- encoding

#: characters that end a line for str.splitlines() (and some editors) but that JSON
#: leaves raw: escaped, so that one record is always exactly one line
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _one_line(encoded: str) -> str:
    return encoded if encoded.isascii() else encoded.translate(_LINE_BREAKS)


def _utf8(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _raw_bytes(value: Union[str, bytes]) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _when(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite: UTC text
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def _json_text(value: Any, row_id: Any, name: str) -> str:
    """A JSON column's text, checked (SQLite holds whatever was written), on one line."""
    if isinstance(value, bytes) or (isinstance(value, str) and not _utf8(value)):
        raise SQLAuditArchiveError(
            f"sqlaudit_log row {row_id}: {name} is not UTF-8 JSON text; it cannot be archived "
            "as JSON (inspect the row; nothing was exported or pruned)")
    if not isinstance(value, str):  # SQLite: a number or NULL-like stored in a JSON column
        return json.dumps(value)
    try:
        json.loads(value)
    except ValueError:
        raise SQLAuditArchiveError(
            f"sqlaudit_log row {row_id}: {name} is not valid JSON ({value[:40]!r}); it cannot be "
            "archived as JSON (nothing was exported or pruned)") from None
    # outside strings JSON may hold raw line breaks (whitespace); inside it cannot
    return value.replace("\r", " ").replace("\n", " ") if "\n" in value or "\r" in value else value


class _Encoder:
    def __init__(self, names: Sequence[str], pg: bool) -> None:
        self.names = list(names)
        self.pg = pg
        self.keys = [json.dumps(n) + ":" for n in self.names]

    def jsonl(self, row: Sequence[Any]) -> str:
        parts = []
        row_id = row[0]
        for key, name, value in zip(self.keys, self.names, row):
            if value is None:
                parts.append(key + "null")
            elif name in JSON_COLUMNS:
                parts.append(key + _one_line(value if self.pg else _json_text(value, row_id, name)))
            elif isinstance(value, str):
                if self.pg or _utf8(value):
                    parts.append(key + _one_line(json.dumps(value, ensure_ascii=False)))
                else:
                    parts.append(key + '{"base64":"%s"}' % base64.b64encode(_raw_bytes(value)).decode())
            elif isinstance(value, datetime):
                parts.append(key + '"' + _when(value) + '"')
            elif isinstance(value, bytes):
                parts.append(key + '{"base64":"%s"}' % base64.b64encode(value).decode())
            else:
                parts.append(key + json.dumps(value))
        return "{" + ",".join(parts) + "}\n"

    def csv(self, row: Sequence[Any]) -> str:
        cells = []
        row_id = row[0]
        for name, value in zip(self.names, row):
            if value is None:
                cells.append("")
                continue
            if name in JSON_COLUMNS:
                shown = value if self.pg else _json_text(value, row_id, name)
            elif isinstance(value, datetime):
                shown = _when(value)
            elif isinstance(value, bytes) or (isinstance(value, str) and not self.pg
                                              and not _utf8(value)):
                raise SQLAuditArchiveError(
                    f"sqlaudit_log row {row_id}: {name} is not UTF-8 text; CSV cannot hold it "
                    "losslessly: use format='jsonl' (nothing was exported or pruned)")
            else:
                shown = str(value)
            cells.append('"' + shown.replace('"', '""') + '"')
        return ",".join(cells) + "\n"


# ---------------------------------------------------------------- the file

class Archive:
    """An archive being written: rows go to a temporary file next to ``path``;
    :meth:`finish` flushes it to disk and renames it to ``path``; :meth:`abort`
    removes it."""

    def __init__(self, path: Any, format: Any) -> None:
        self.format = check_format(format)
        self.path = check_path(path)
        self.count = 0
        self._encoder: Optional[_Encoder] = None
        self._temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.partial")
        try:
            self._file: Optional[TextIO] = open(self._temp, "x", encoding="utf-8", newline="")
        except OSError as exc:
            raise SQLAuditArchiveError(
                f"cannot write the archive {self.path}: {exc.strerror or exc}") from exc

    def _encoder_for(self, names: Sequence[str], pg: bool) -> Callable[[Sequence[Any]], str]:
        if self._encoder is None:
            self._encoder = _Encoder(names, pg)
            if self.format == "csv":
                self._write(",".join(names) + "\n")
        return self._encoder.csv if self.format == "csv" else self._encoder.jsonl

    def _write(self, data: str) -> None:
        assert self._file is not None
        try:
            self._file.write(data)
        except OSError as exc:
            raise SQLAuditArchiveError(
                f"cannot write the archive {self.path}: {exc.strerror or exc}") from exc

    def write_rows(self, names: Sequence[str], pg: bool, rows: Iterable[Sequence[Any]]) -> None:
        encode = self._encoder_for(names, pg)
        for row in rows:
            self._write(encode(row))
            self.count += 1

    def finish(self, names: Sequence[str], pg: bool) -> int:
        self._encoder_for(names, pg)  # the CSV header of an empty archive
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            if self.path.exists():
                raise SQLAuditArchiveValueError(
                    f"{self.path} appeared while the archive was written; it was not overwritten")
            os.replace(self._temp, self.path)
        except OSError as exc:
            raise SQLAuditArchiveError(
                f"cannot write the archive {self.path}: {exc.strerror or exc}") from exc
        return self.count

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            self._temp.unlink()
        except OSError:
            pass

    # -- the two ways rows reach the file

    def export(self, connection: Connection, log: Table, where: Any) -> int:
        """Stream the rows matching ``where`` in id order (a server-side cursor on
        PostgreSQL): memory does not grow with the log."""
        pg = connection.dialect.name == "postgresql"
        names = [c.name for c in log.columns]
        stmt = select(*log_expressions(log, pg)).where(where).order_by(log.c.id)
        with lenient(connection):
            result = connection.execute(stmt.execution_options(yield_per=BATCH))
            for partition in result.partitions():
                self.write_rows(names, pg, partition)
        return self.count

    def delete_into(self, connection: Connection, log: Table, where: Any) -> int:
        """Delete the rows matching ``where`` and write exactly the deleted rows
        (``DELETE ... RETURNING``, :data:`BATCH` rows at a time, in id order)."""
        pg = connection.dialect.name == "postgresql"
        names = [c.name for c in log.columns]
        expressions = log_expressions(log, pg)
        if connection.dialect.name in ("mysql", "mariadb"):
            return self._delete_into_mysql(connection, log, where, names, expressions)
        removed, last = 0, None
        with lenient(connection):
            while True:
                cond = where if last is None else and_(where, log.c.id > last)
                batch = select(log.c.id).where(cond).order_by(log.c.id).limit(BATCH)
                rows = sorted(connection.execute(
                    delete(log).where(log.c.id.in_(batch)).returning(*expressions)).all(),
                    key=lambda r: r[0])
                if not rows:
                    break
                self.write_rows(names, pg, rows)
                removed += len(rows)
                last = rows[-1][0]
                if len(rows) < BATCH:
                    break
        return removed

    def _delete_into_mysql(self, connection: Connection, log: Table, where: Any,
                           names: Sequence[str], expressions: Sequence[Any]) -> int:
        """MariaDB / MySQL: no subquery on the table a DELETE removes from, and no
        RETURNING on MySQL. Each batch is read with ``FOR UPDATE`` (the rows stay
        locked until the transaction ends: nobody else deletes them meanwhile), written,
        then deleted by id; a DELETE that removes another number of rows than were
        written raises, and the transaction rolls back."""
        removed, last = 0, None
        while True:
            cond = where if last is None else and_(where, log.c.id > last)
            rows = connection.execute(
                select(*expressions).where(cond).order_by(log.c.id).limit(BATCH)
                .with_for_update()).all()
            if not rows:
                break
            self.write_rows(names, False, rows)
            ids = [row[0] for row in rows]
            deleted = connection.execute(delete(log).where(log.c.id.in_(ids))).rowcount
            if deleted != len(ids):
                raise SQLAuditArchiveError(
                    f"prune_audit_log(): {len(ids)} records were archived but the DELETE "
                    f"removed {deleted}; nothing was pruned (run it again)")
            removed += len(rows)
            last = ids[-1]
            if len(rows) < BATCH:
                break
        return removed


# ---------------------------------------------------------------- export

def export_log(connection: Connection, *, before: datetime, path: Any, format: str,
               tables: Optional[Sequence[Table]]) -> int:
    bound = check_before(before)
    archive = Archive(path, format)
    try:
        log = target_log(connection, tables)
        _require_log(connection, log)
        archive.export(connection, log, condition(connection, log, bound, tables))
        count = archive.finish([c.name for c in log.columns], connection.dialect.name == "postgresql")
    except BaseException:
        archive.abort()
        raise
    return count


def _require_log(connection: Connection, log: Table) -> None:
    if not sa_inspect(connection).has_table(log.name, schema=log.schema):
        raise SQLAuditTableNotInDatabaseError(
            f"{log.name} does not exist in this database; create it (metadata.create_all() or "
            "install_audit_triggers()) first")


# ---------------------------------------------------------------- import

def _json_dump(value: Any) -> str:
    """JSON text of a value parsed with ``parse_float=Decimal`` (every digit kept)."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + _json_dump(v)
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_json_dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _jsonl_records(lines: Iterable[str], path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_float=Decimal)
        except ValueError:
            raise SQLAuditArchiveError(f"{path} line {number} is not JSON: not a jsonl archive") from None
        if not isinstance(record, dict) or "id" not in record:
            raise SQLAuditArchiveError(f"{path} line {number} is not a sqlaudit_log record")
        for name, value in record.items():
            if name in JSON_COLUMNS:
                record[name] = None if value is None else _json_dump(value)
            elif isinstance(value, dict) and set(value) == {"base64"}:
                record[name] = base64.b64decode(value["base64"])
            elif isinstance(value, Decimal):
                raise SQLAuditArchiveError(f"{path} line {number}: {name} is not a text or integer")
        yield record


_CSV_FIELD = re.compile(r'"((?:[^"]|"")*)"|([^",\n]*)')


def _csv_records(lines: Iterable[str], path: Path) -> Iterator[dict[str, Any]]:
    iterator = iter(lines)
    header = next(iterator, "").rstrip("\r\n").split(",")
    if "id" not in header:
        raise SQLAuditArchiveError(f"{path} has no sqlaudit_log header row: not a csv archive")
    pending = ""
    for line in iterator:
        pending += line
        if pending.count('"') % 2:  # a quoted field goes on over a line break
            continue
        record = pending.rstrip("\r\n") if pending.endswith("\n") else pending
        pending = ""
        values: list[Optional[str]] = []
        position = 0
        while True:
            match = _CSV_FIELD.match(record, position)
            if match is None:
                raise SQLAuditArchiveError(f"{path}: unreadable CSV record {record[:40]!r}")
            quoted, bare = match.group(1), match.group(2)
            if quoted is not None:
                values.append(quoted.replace('""', '"'))
            elif bare:
                values.append(bare)
            else:
                values.append(None)
            position = match.end()
            if position >= len(record):
                break
            if record[position] != ",":
                raise SQLAuditArchiveError(f"{path}: unreadable CSV record {record[:40]!r}")
            position += 1
        if len(values) != len(header):
            raise SQLAuditArchiveError(
                f"{path}: a record has {len(values)} fields, the header {len(header)}")
        yield dict(zip(header, values))
    if pending.strip():
        raise SQLAuditArchiveError(f"{path} ends inside a quoted field: the archive is truncated")


def _detect(path: Path, first: str) -> str:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if path.suffix.lower() == ".csv":
        return "csv"
    return "jsonl" if first.lstrip().startswith("{") else "csv"


def import_log(connection: Connection, path: Any, format: Optional[str] = None) -> int:
    if not isinstance(path, (str, os.PathLike)):
        raise SQLAuditArchiveTypeError(f"path must be a str or os.PathLike, got {path!r}")
    source = Path(os.fspath(path))
    if format is not None:
        check_format(format)
    log = target_log(connection, None)
    _require_log(connection, log)
    if connection.execute(select(log.c.id).limit(1)).first() is not None:
        raise SQLAuditArchiveError(
            "import_audit_log() needs an empty sqlaudit_log (archived rows keep their ids); "
            "import into a new database")
    pg = connection.dialect.name == "postgresql"
    names = [c.name for c in log.columns]
    prep = connection.dialect.identifier_preparer
    table = prep.format_table(log)
    values = []
    for name in names:
        if pg and name in JSON_COLUMNS:
            values.append(f"CAST(:{name} AS jsonb)")
        elif pg and name == "changed_at":
            values.append(f"CAST(:{name} AS timestamptz)")
        else:
            values.append(f":{name}")
    statement = text(f"INSERT INTO {table} ({', '.join(prep.quote(n) for n in names)}) "
                     f"VALUES ({', '.join(values)})")
    try:
        handle = open(source, encoding="utf-8", newline="")
    except OSError as exc:
        raise SQLAuditArchiveError(f"cannot read the archive {source}: {exc.strerror or exc}") from exc
    count = 0
    with handle:
        first = handle.readline()
        fmt = format or _detect(source, first)
        lines = _chain(first, handle)
        records = _jsonl_records(lines, source) if fmt == "jsonl" else _csv_records(lines, source)
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(_row(record, names, pg, source))
            if len(batch) >= BATCH:
                connection.execute(statement, batch)
                count += len(batch)
                batch = []
        if batch:
            connection.execute(statement, batch)
            count += len(batch)
    if pg and count:
        connection.execute(text(
            "SELECT setval(CAST(pg_get_serial_sequence(:rel, 'id') AS regclass), "
            f"(SELECT max(id) FROM {table}))"), {"rel": table})
    return count


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


def _row(record: dict[str, Any], names: Sequence[str], pg: bool, source: Path) -> dict[str, Any]:
    unknown = set(record) - set(names)
    if unknown:
        raise SQLAuditArchiveError(
            f"{source} has columns sqlaudit_log does not have: {', '.join(sorted(unknown))}")
    row: dict[str, Any] = {}
    for name in names:
        value = record.get(name)
        if value is not None and name in INT_COLUMNS:
            value = int(value)
        elif value is not None and name == "changed_at":
            try:
                when = datetime.fromisoformat(str(value))
            except ValueError:
                raise SQLAuditArchiveError(
                    f"{source}: changed_at {value!r} of record {record.get('id')} is not ISO-8601") from None
            if when.tzinfo is None:
                raise SQLAuditArchiveError(
                    f"{source}: changed_at {value!r} of record {record.get('id')} has no offset")
            when = when.astimezone(timezone.utc)
            # PostgreSQL: an ISO literal; SQLite: the UTC text its triggers write
            value = when.isoformat() if pg else when.strftime("%Y-%m-%d %H:%M:%S.%f")
        row[name] = value
    return row
