"""Archives of the audit log: export_audit_log, prune_audit_log(export_to=...),
import_audit_log and the ``sqlaudit export`` / ``prune --export-to`` commands."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, insert, null, select, text
from sqlalchemy.orm import Session

from sqlaudit import seal_audit_log, verify_audit_log
from sqlaudit.ddl import export_audit_log, import_audit_log, prune_audit_log
from sqlaudit.exceptions import (
    SQLAuditArchiveError,
    SQLAuditArchiveTypeError,
    SQLAuditArchiveValueError,
    SQLAuditError,
)
from sqlaudit.schema import audit_table

from test_integrity import Customer  # noqa: F401 (fixture)
from test_cli import created, log_count, models, run, seeded, tomorrow, url  # noqa: F401 (fixtures)

MARIADB_PORTED = True

NOW = datetime.now(timezone.utc)
CUTOFF = NOW - timedelta(days=30)
COLUMNS = [c.name for c in audit_table(MetaData()).columns]


@pytest.fixture
def other(dialect, make_engine, tmp_path, Base, Customer):
    """A second, empty database with the same models (and an empty sqlaudit_log)."""
    engine = (create_engine(f"sqlite:///{tmp_path / 'other.db'}") if dialect == "sqlite"
              else make_engine())
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def log_rows(engine, table_name="customers", n=1, at=None, **values):
    """Insert ``n`` audit rows directly (the log accepts INSERT): old ones, with chosen values."""
    log = audit_table(MetaData())
    at = at or NOW - timedelta(days=60)
    if engine.dialect.name != "postgresql":  # SQLite's text, MariaDB's DATETIME(6): UTC
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    row = {"table_name": table_name, "resource_id": "1", "operation": "update", "changed_at": at,
           "changed_by": "alice", "old_data": {"name": "a"}, "new_data": {"name": "b"}, **values}
    for name in ("old_data", "new_data", "context"):
        if row.get(name, 0) is None:
            row[name] = null()  # SQL NULL, as the triggers write it (None would be JSON null)
    with engine.begin() as conn:
        conn.execute(insert(log), [dict(row) for _ in range(n)])


TRICKY = dict(
    resource_id='["1", "x,\\"y\\""]',
    reason="",  # empty, not NULL
    changed_by="zoë \u2028 \"quoted\", comma\nnewline",
    transaction_id=2**62,
    old_data={"price": 1.5, "text": "line\nbreak", "nested": [1, None, True, {"é": "ü"}]},
    new_data=None,
    context={"request": "r1", "n": 0},
    application_name=None,
)


def everything(engine):
    """Every column of every log row, typed, in id order."""
    log = audit_table(MetaData())
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(log).order_by(log.c.id))]


def json_texts(engine):
    """PostgreSQL: the stored JSON text (every digit); SQLite and MariaDB, whose JSON
    is text a jsonl archive re-spaces: the values parsed."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return conn.execute(text(
                "SELECT old_data::text, new_data::text, context::text FROM sqlaudit_log ORDER BY id")).all()
        return [tuple(json.loads(v) if v is not None else None for v in r) for r in conn.execute(text(
            "SELECT old_data, new_data, context FROM sqlaudit_log ORDER BY id"))]


def leftovers(folder):
    """Files in the test's folder other than its SQLite database."""
    return [name for name in os.listdir(folder) if not name.startswith("test.db")]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- export


def test_export_writes_every_column_of_the_older_records_in_id_order(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=3)
    log_rows(engine, n=2, at=NOW)  # newer than the cutoff: not exported
    count = export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    records = read_jsonl(tmp_path / "a.jsonl")
    assert count == len(records) == 3
    assert [list(r) for r in records] == [COLUMNS] * 3
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert records[0]["old_data"] == {"name": "a"} and records[0]["changed_by"] == "alice"


def test_export_leaves_the_log_unchanged(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=3)
    before = everything(engine)
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    assert everything(engine) == before


def test_jsonl_keeps_json_values_null_and_empty_text_and_utc_timestamps(engine, Customer, tmp_path) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    log_rows(engine, at=at, **TRICKY)
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    (record,) = read_jsonl(tmp_path / "a.jsonl")
    assert record["changed_at"] == "2026-01-02T01:04:05.123456+00:00"
    for name in ("resource_id", "reason", "changed_by", "transaction_id", "old_data", "new_data",
                 "context", "application_name"):
        assert record[name] == TRICKY[name], name


def test_jsonl_keeps_every_digit_of_a_json_number(engine, Customer, tmp_path, dialect) -> None:
    digits = "1.000000000000000000000000000001"  # no float holds it; another writer could store it
    value = "CAST(:v AS jsonb)" if dialect == "postgresql" else ":v"
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO sqlaudit_log (table_name, operation, changed_at, new_data) "
                          f"VALUES ('customers', 'insert', :at, {value})"),
                     {"v": '{"x": %s}' % digits, "at": (NOW - timedelta(days=60)).replace(tzinfo=None)})
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    line = (tmp_path / "a.jsonl").read_text()
    assert json.loads(line, parse_float=Decimal)["new_data"] == {"x": Decimal(digits)}


def test_csv_has_a_header_and_null_is_the_only_unquoted_value(engine, Customer, tmp_path) -> None:
    log_rows(engine, **TRICKY)
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.csv", format="csv")
    with open(tmp_path / "a.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS and len(rows) == 2
    record = dict(zip(rows[0], rows[1]))
    assert record["changed_by"] == TRICKY["changed_by"]
    assert json.loads(record["old_data"]) == TRICKY["old_data"]
    raw = (tmp_path / "a.csv").read_text(encoding="utf-8")
    assert ',"",' in raw  # the empty reason, quoted
    assert ",,," in raw or raw.rstrip("\n").endswith(",")  # NULLs, unquoted


def test_export_of_models_keeps_to_their_tables(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=2)
    log_rows(engine, table_name="orders", n=3)
    assert export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl", models=[Customer]) == 2
    assert {r["table_name"] for r in read_jsonl(tmp_path / "a.jsonl")} == {"customers"}


@pytest.mark.parametrize("kwargs, error", [
    pytest.param({"format": "xml"}, SQLAuditArchiveValueError, id="unknown-format"),
    pytest.param({"before": "2026-01-01"}, SQLAuditArchiveTypeError, id="before-not-a-datetime"),
    pytest.param({"before": datetime(2026, 1, 1)}, SQLAuditArchiveValueError, id="naive-before"),
    pytest.param({"path": 42}, SQLAuditArchiveTypeError, id="path-not-a-path"),
])
def test_bad_export_arguments_are_refused_clearly(engine, Customer, tmp_path, kwargs, error) -> None:
    arguments = {"before": CUTOFF, "path": tmp_path / "a.jsonl", **kwargs}
    with pytest.raises(error) as caught:
        export_audit_log(engine, **arguments)
    assert isinstance(caught.value, SQLAuditError)
    assert isinstance(caught.value, ValueError if error is SQLAuditArchiveValueError else TypeError)
    assert not (tmp_path / "a.jsonl").exists() and leftovers(tmp_path) == []


def test_an_existing_file_is_never_overwritten(engine, Customer, tmp_path) -> None:
    log_rows(engine)
    (tmp_path / "a.jsonl").write_text("keep me")
    with pytest.raises(SQLAuditArchiveValueError, match="already exists"):
        export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    assert (tmp_path / "a.jsonl").read_text() == "keep me"


def _peak_while_exporting(engine, path) -> tuple[int, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        count = export_audit_log(engine, before=CUTOFF, path=path)
        return count, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_export_memory_does_not_grow_with_the_log(engine, Customer, tmp_path) -> None:
    """Constant memory: exporting ten times the rows peaks at about the same Python
    memory (a server-side cursor on PostgreSQL, batches of rows written as read)."""
    log_rows(engine, n=3000)
    small = _peak_while_exporting(engine, tmp_path / "small.jsonl")
    log_rows(engine, n=27000)
    large = _peak_while_exporting(engine, tmp_path / "large.jsonl")
    assert (small[0], large[0]) == (3000, 30000)
    assert large[1] < 2 * small[1], (small, large)


# ---------------------------------------------------------------- prune with export


def test_prune_exports_exactly_the_records_it_removes(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=7)
    log_rows(engine, n=2, at=NOW)
    before = {row[0]: row for row in everything(engine)}
    removed = prune_audit_log(engine, CUTOFF, export_to=tmp_path / "p.jsonl")
    after = {row[0] for row in everything(engine)}
    archived = [r["id"] for r in read_jsonl(tmp_path / "p.jsonl")]
    assert removed == len(archived) == 7
    assert set(archived) == set(before) - after
    assert archived == sorted(archived)


def test_prune_that_cannot_write_its_archive_removes_nothing(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=3)
    with pytest.raises(SQLAuditArchiveError, match="cannot write the archive"):
        prune_audit_log(engine, CUTOFF, export_to=tmp_path / "missing-folder" / "p.jsonl")
    assert log_count(engine) == 3


def test_prune_of_a_sealed_log_failing_while_writing_removes_nothing_and_leaves_no_file(
        engine, Customer, tmp_path, monkeypatch) -> None:
    log_rows(engine, n=3)
    seal_audit_log(engine)

    def disk_full(self, data):
        raise SQLAuditArchiveError("cannot write the archive: No space left on device")

    monkeypatch.setattr("sqlaudit._export.Archive._write", disk_full)
    with pytest.raises(SQLAuditArchiveError):
        prune_audit_log(engine, CUTOFF, export_to=tmp_path / "p.jsonl")
    assert log_count(engine) == 3
    assert leftovers(tmp_path) == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlaudit_seal WHERE kind = 'prune'")).scalar() == 0


def test_prune_with_export_is_recorded_and_the_log_still_verifies(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=4)
    log_rows(engine, n=2, at=NOW)
    seal_audit_log(engine)
    assert prune_audit_log(engine, CUTOFF, export_to=tmp_path / "p.csv", export_format="csv") == 4
    result = verify_audit_log(engine)
    assert result.ok, result.problems
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT row_count FROM sqlaudit_seal WHERE kind = 'prune'")).scalar() == 4


def test_prune_failing_while_writing_removes_nothing_and_leaves_no_file(
        engine, Customer, tmp_path, monkeypatch) -> None:
    log_rows(engine, n=3)

    def disk_full(self, data):
        raise SQLAuditArchiveError("cannot write the archive: No space left on device")

    monkeypatch.setattr("sqlaudit._export.Archive._write", disk_full)
    with pytest.raises(SQLAuditArchiveError):
        prune_audit_log(engine, CUTOFF, export_to=tmp_path / "p.jsonl")
    assert log_count(engine) == 3
    assert leftovers(tmp_path) == []


def test_two_prunes_at_once_archive_each_record_once(engine, Customer, tmp_path) -> None:
    """A second prune started while the first has not committed waits for it, then
    archives and removes only what is left: no record is in both archives."""
    import threading

    log_rows(engine, n=5)
    ids = [row[0] for row in everything(engine)]
    second: dict[str, Any] = {}

    def prune_again() -> None:
        try:
            second["removed"] = prune_audit_log(engine, CUTOFF, export_to=tmp_path / "second.jsonl")
        except Exception as exc:  # reported by the assertion below
            second["error"] = exc

    with engine.connect() as conn:
        assert prune_audit_log(conn, CUTOFF, export_to=tmp_path / "first.jsonl") == 5
        thread = threading.Thread(target=prune_again)
        thread.start()
        thread.join(1.0)  # blocked on the first prune's locks
        assert thread.is_alive()
        conn.commit()
    thread.join(30)
    assert "error" not in second, second.get("error")
    first = [r["id"] for r in read_jsonl(tmp_path / "first.jsonl")]
    again = [r["id"] for r in read_jsonl(tmp_path / "second.jsonl")]
    assert first == ids
    assert not set(first) & set(again)
    assert second["removed"] == len(again)
    assert log_count(engine) == 0


def test_prune_with_nothing_to_remove_writes_an_empty_archive(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=2, at=NOW)
    assert prune_audit_log(engine, CUTOFF, export_to=tmp_path / "p.csv", export_format="csv") == 0
    assert (tmp_path / "p.csv").read_text().splitlines() == [",".join(COLUMNS)]


# ---------------------------------------------------------------- import


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_exported_records_import_into_an_empty_log_equal_field_by_field(
        engine, Customer, other, tmp_path, fmt) -> None:
    with Session(engine) as s:  # records written by the triggers
        s.add(Customer(name="pen", email="p@example.com", user_id=1))
        s.commit()
    log_rows(engine, **TRICKY)
    log_rows(engine, n=3)
    path = tmp_path / f"a.{fmt}"
    count = export_audit_log(engine, before=NOW + timedelta(days=1), path=path, format=fmt)
    assert import_audit_log(other, path) == count == 5
    assert everything(other) == everything(engine)
    assert json_texts(other) == json_texts(engine)


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_mariadb_archive_imports_into_sqlite_and_postgresql_with_the_same_values(
        engine, Customer, Base, make_engine, postgres_url, tmp_path, fmt) -> None:
    """An archive is the same format on every dialect: MariaDB's DATETIME(6) (UTC)
    comes back as the same instant, its JSON text as the same values."""
    from conftest import _postgres_engine

    with Session(engine) as s:
        s.add(Customer(name="pen", email="p@example.com", user_id=1))
        s.commit()
    log_rows(engine, **TRICKY)
    path = tmp_path / f"a.{fmt}"
    assert export_audit_log(engine, before=NOW + timedelta(days=1), path=path, format=fmt) == 2
    sqlite = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    pg_engines = _postgres_engine(postgres_url)
    postgresql = next(pg_engines)
    try:
        for target in (sqlite, postgresql):
            Base.metadata.create_all(target)
            assert import_audit_log(target, path) == 2
            assert [_instant(r) for r in everything(target)] == [_instant(r) for r in everything(engine)]
    finally:
        sqlite.dispose()
        for _ in pg_engines:  # drops its schema
            pass


def _instant(row):
    """A log row with changed_at as an aware UTC instant (naive values are UTC)."""
    at = row[5]
    return (*row[:5], at if at.tzinfo else at.replace(tzinfo=timezone.utc), *row[6:])


def test_imported_log_goes_on_after_the_archived_ids(engine, Customer, other, tmp_path) -> None:
    log_rows(engine, n=3)
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    import_audit_log(other, tmp_path / "a.jsonl")
    highest = max(r[0] for r in everything(other))
    log_rows(other, n=1)
    assert max(r[0] for r in everything(other)) == highest + 1


def test_import_into_a_log_that_is_not_empty_is_refused(engine, Customer, tmp_path) -> None:
    log_rows(engine, n=2)
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    with pytest.raises(SQLAuditArchiveError, match="needs an empty sqlaudit_log"):
        import_audit_log(engine, tmp_path / "a.jsonl")
    assert log_count(engine) == 2


def test_archive_of_a_prune_matches_its_sealed_digest_after_import(engine, Customer, other, tmp_path) -> None:
    """Lossless by the seal's own measure: the pruned rows, re-imported from the
    archive, hash to the digest the prune recorded in sqlaudit_seal; the
    imported log seals and verifies."""
    from sqlaudit.integrity import _Log, _row_encoder

    with Session(engine) as s:
        s.add(Customer(name="pen", email="p@example.com", user_id=1))
        s.commit()
    log_rows(engine, **TRICKY)
    log_rows(engine, n=2)
    seal_audit_log(engine)
    removed = prune_audit_log(engine, NOW + timedelta(days=1), export_to=tmp_path / "p.jsonl")
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT rows_digest FROM sqlaudit_seal WHERE kind = 'prune'")).scalar()
    assert import_audit_log(other, tmp_path / "p.jsonl") == removed == 4
    with other.connect() as conn:
        log = _Log(conn)
        encode = _row_encoder(log.kinds, range(len(log.columns)))
        digest = hashlib.sha256()
        for row in log.rows(-(2**63), None):
            digest.update(encode(row))
    assert digest.hexdigest() == recorded
    head = seal_audit_log(other)
    assert verify_audit_log(other, head=head).ok


# ---------------------------------------------------------------- command line


def test_cli_export_writes_the_archive_and_keeps_the_log(engine, url, seeded, tmp_path) -> None:
    path = tmp_path / "archive.jsonl"
    result = run("export", "--before", tomorrow(), "--to", str(path), url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("exported 5 audit records older than ")
    assert len(read_jsonl(path)) == 5 and log_count(engine) == 5


def test_cli_export_csv(engine, url, seeded, tmp_path) -> None:
    path = tmp_path / "archive.csv"
    result = run("export", "--before", tomorrow(), "--to", str(path), "--format", "csv", url=url)
    assert result.returncode == 0, result.stderr
    with open(path, newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 5


def test_cli_export_to_an_existing_file_exits_10_with_one_line(engine, url, seeded, tmp_path) -> None:
    path = tmp_path / "archive.jsonl"
    path.write_text("keep me")
    result = run("export", "--before", tomorrow(), "--to", str(path), url=url)
    assert result.returncode == 10
    assert "already exists" in result.stderr and result.stderr.count("\n") == 1
    assert path.read_text() == "keep me"


def test_cli_prune_export_to_archives_what_it_removes(engine, url, seeded, tmp_path) -> None:
    path = tmp_path / "pruned.jsonl"
    result = run("prune", "--older-than", tomorrow(), "--export-to", str(path), "--yes", url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pruned 5 audit records older than ")
    assert len(read_jsonl(path)) == 5 and log_count(engine) == 0


def test_cli_prune_export_to_leaves_a_log_that_verifies(engine, url, seeded, tmp_path) -> None:
    path = tmp_path / "pruned.jsonl"
    assert run("prune", "--older-than", tomorrow(), "--export-to", str(path), "--yes",
               url=url).returncode == 0
    assert run("verify", url=url).returncode == 0


def test_cli_prune_to_an_unwritable_archive_removes_nothing(engine, url, seeded, tmp_path) -> None:
    path = tmp_path / "no-such-folder" / "pruned.jsonl"
    result = run("prune", "--older-than", tomorrow(), "--export-to", str(path), "--yes", url=url)
    assert result.returncode == 10
    assert "cannot write the archive" in result.stderr
    assert log_count(engine) == 5


def test_a_json_null_in_a_json_column_is_archived_as_null_in_jsonl(engine, Customer, other, tmp_path) -> None:
    """sqlaudit never writes a JSON ``null`` into old_data/new_data/context; one
    written by another program comes back from a jsonl archive as SQL NULL."""
    log = audit_table(MetaData())
    log_rows(engine)
    with engine.begin() as conn:  # JSON null (None through the JSON type), not SQL NULL
        conn.execute(insert(log).values(table_name="customers", operation="insert",
                                        changed_at=everything(engine)[0][5], context=None))
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    assert read_jsonl(tmp_path / "a.jsonl")[1]["context"] is None
    import_audit_log(other, tmp_path / "a.jsonl")
    with other.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlaudit_log WHERE context IS NULL")).scalar() == 2


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)  # PostgreSQL's log columns are text or jsonb: they cannot hold bytes
def test_bytes_in_a_sqlite_log_are_archived_as_base64_and_come_back(engine, Customer, other, tmp_path) -> None:
    log_rows(engine)
    with engine.begin() as conn:  # another program stores a BLOB where text is expected
        conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at, changed_by) "
                          "SELECT table_name, operation, changed_at, X'FF00FE' FROM sqlaudit_log"))
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    assert read_jsonl(tmp_path / "a.jsonl")[1]["changed_by"] == {"base64": "/wD+"}
    import_audit_log(other, tmp_path / "a.jsonl")
    with other.connect() as conn:
        assert conn.execute(text("SELECT changed_by FROM sqlaudit_log WHERE id = 2")).scalar() == b"\xff\x00\xfe"


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)  # PostgreSQL's text is always valid in its encoding
def test_text_that_is_not_utf8_in_a_sqlite_log_is_archived_as_its_bytes(engine, Customer, other, tmp_path) -> None:
    log_rows(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at, changed_by) "
                          "SELECT table_name, operation, changed_at, CAST(X'FF61' AS TEXT) FROM sqlaudit_log"))
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.jsonl")
    assert read_jsonl(tmp_path / "a.jsonl")[1]["changed_by"] == {"base64": "/2E="}
    import_audit_log(other, tmp_path / "a.jsonl")
    with other.connect() as conn:
        assert conn.execute(text("SELECT changed_by FROM sqlaudit_log WHERE id = 2")).scalar() == b"\xffa"


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)  # PostgreSQL's log columns are text or jsonb: they cannot hold bytes
def test_csv_refuses_bytes_and_writes_no_file(engine, Customer, tmp_path) -> None:
    log_rows(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at, changed_by) "
                          "SELECT table_name, operation, changed_at, X'FF00' FROM sqlaudit_log"))
    with pytest.raises(SQLAuditArchiveError, match="use format='jsonl'"):
        export_audit_log(engine, before=CUTOFF, path=tmp_path / "a.csv", format="csv")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_import_reads_the_format_from_the_first_line_without_a_suffix(
        engine, Customer, other, tmp_path, fmt) -> None:
    log_rows(engine, n=2)
    export_audit_log(engine, before=CUTOFF, path=tmp_path / "archive", format=fmt)
    assert import_audit_log(other, tmp_path / "archive") == 2
    assert everything(other) == everything(engine)
