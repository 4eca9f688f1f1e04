"""Tamper evidence: the seal chain over sqlaudit_log (sqlaudit.integrity)."""

from __future__ import annotations

import hashlib

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import JSON, DateTime, Integer, Numeric, String, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, Session, mapped_column

from sqlaudit import seal_audit_log, track_table, verify_audit_log
from sqlaudit.ddl import prune_audit_log
from sqlaudit.integrity import SQLAuditIntegrityError

from sample_models import readme_models

MARIADB_PORTED = True


@pytest.fixture
def Customer(engine, Base):
    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(User(user_id=1))
        s.commit()
    return Customer


def write(engine, Customer, n, prefix="c"):
    with Session(engine) as s:
        s.add_all([Customer(name=f"{prefix}{i}", email=f"{prefix}{i}@example.com", user_id=1)
                   for i in range(n)])
        s.commit()


def ids(engine):
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT id FROM sqlaudit_log ORDER BY id"))]


def bypass(conn, dialect, table="sqlaudit_log"):
    """What the owner can always do: switch the append-only guard off for this transaction
    (SQLite, MariaDB: drop the guard triggers; on MariaDB that commits at once)."""
    if dialect == "postgresql":
        conn.execute(text("SET LOCAL session_replication_role = replica"))  # superuser
    elif table == "sqlaudit_log":
        conn.execute(text("DROP TRIGGER IF EXISTS sqlaudit_log_no_update"))
        conn.execute(text("DROP TRIGGER IF EXISTS sqlaudit_log_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER sqlaudit_seal_no_update"))
        conn.execute(text("DROP TRIGGER sqlaudit_seal_no_delete"))


def insert_with_id(conn, sql, params=None):
    """An owner's INSERT with an explicit id; MariaDB would read an id of 0 as "the next
    one" unless the session says NO_AUTO_VALUE_ON_ZERO, which the owner can."""
    if conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_AUTO_VALUE_ON_ZERO')"))
    conn.execute(text(sql), params or {})
    if conn.dialect.name in ("mysql", "mariadb"):
        conn.execute(text("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_AUTO_VALUE_ON_ZERO', '')"))


def kinds(result):
    return [(p.kind, p.first_id, p.last_id) for p in result.problems]


def test_a_sealed_log_verifies(engine, Customer) -> None:
    write(engine, Customer, 5)
    head = seal_audit_log(engine)
    assert len(head) == 64 and int(head, 16) >= 0
    result = verify_audit_log(engine, head=head)
    assert result.ok, result.problems
    assert (result.sealed_rows, result.unsealed_rows, result.head) == (5, 0, head)


def test_sealing_again_with_nothing_new_appends_nothing(engine, Customer) -> None:
    write(engine, Customer, 3)
    head = seal_audit_log(engine)
    assert seal_audit_log(engine) == head
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlaudit_seal")).scalar() == 1


def test_rows_written_after_the_last_seal_are_counted_as_unsealed_not_as_tampering(engine, Customer) -> None:
    write(engine, Customer, 3)
    head = seal_audit_log(engine)
    write(engine, Customer, 2, prefix="late")
    result = verify_audit_log(engine, head=head)
    assert result.ok, result.problems
    assert (result.sealed_rows, result.unsealed_rows) == (3, 2)
    new_head = seal_audit_log(engine)
    assert new_head != head
    after = verify_audit_log(engine, head=new_head)
    assert after.ok and (after.sealed_rows, after.unsealed_rows) == (5, 0)
    assert verify_audit_log(engine, head=head).ok  # an older head is still in the chain


def test_sealing_chunks_the_log_so_tampering_is_located(engine, Customer, monkeypatch) -> None:
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    write(engine, Customer, 5)
    seal_audit_log(engine)
    log_ids = ids(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'forged' WHERE id = :id"),
                     {"id": log_ids[3]})
    assert kinds(verify_audit_log(engine)) == [("altered", log_ids[2], log_ids[3])]


def test_an_update_of_a_sealed_row_bypassing_the_guard_is_reported_as_altered(engine, Customer) -> None:
    write(engine, Customer, 4)
    seal_audit_log(engine)
    log_ids = ids(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET new_data = NULL WHERE id = :id"), {"id": log_ids[1]})
    result = verify_audit_log(engine)
    assert not result.ok
    assert kinds(result) == [("altered", log_ids[0], log_ids[-1])]
    assert result.problems[0].seal_id is not None


def test_a_delete_of_a_sealed_row_is_reported_as_deleted(engine, Customer) -> None:
    write(engine, Customer, 4)
    seal_audit_log(engine)
    log_ids = ids(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("DELETE FROM sqlaudit_log WHERE id = :id"), {"id": log_ids[2]})
    result = verify_audit_log(engine)
    assert kinds(result) == [("deleted", log_ids[0], log_ids[-1])]
    assert "1 of its 4 rows are missing" in result.problems[0].message


def test_a_row_inserted_with_an_old_id_is_reported_as_inserted(engine, Customer) -> None:
    write(engine, Customer, 3)
    seal_audit_log(engine)
    with engine.begin() as conn:  # INSERT needs no bypass: the log is append-only, not closed
        insert_with_id(conn,
            "INSERT INTO sqlaudit_log (id, table_name, operation, changed_at, changed_by) "
            "VALUES (0, 'customers', 'update', CURRENT_TIMESTAMP, 'ceo')")
    result = verify_audit_log(engine)
    assert kinds(result) == [("inserted", 0, 0)]


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
def test_a_row_inserted_into_a_gap_of_a_sealed_range_is_reported_as_inserted(engine, Customer) -> None:
    """PostgreSQL and MariaDB: a rolled-back insert leaves a gap in the ids (SQLite gives
    the next id after the highest, so it leaves none)."""
    write(engine, Customer, 1)
    with pytest.raises(RuntimeError):
        with Session(engine) as s, s.begin():
            s.add(Customer(name="rolled back", user_id=1))
            s.flush()
            raise RuntimeError("rollback")
    write(engine, Customer, 1, prefix="d")
    seal_audit_log(engine)
    first, last = ids(engine)
    assert last - first == 2
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sqlaudit_log (id, table_name, operation, changed_at) "
            "VALUES (:id, 'customers', 'delete', CURRENT_TIMESTAMP)"), {"id": first + 1})
    assert kinds(verify_audit_log(engine)) == [("inserted", first, last)]


def test_the_seal_table_is_append_only(engine, Customer) -> None:
    write(engine, Customer, 1)
    seal_audit_log(engine)
    for statement in ("UPDATE sqlaudit_seal SET row_count = 0", "DELETE FROM sqlaudit_seal"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))


def test_an_altered_seal_entry_is_reported_as_a_broken_chain(engine, Customer) -> None:
    write(engine, Customer, 2)
    seal_audit_log(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name, table="sqlaudit_seal")
        conn.execute(text("UPDATE sqlaudit_seal SET sealed_by = 'someone else'"))
    result = verify_audit_log(engine)
    assert [p.kind for p in result.problems] == ["chain"]
    assert "was altered" in result.problems[0].message


def test_a_rebuilt_seal_chain_is_caught_by_the_head_kept_outside(engine, Customer) -> None:
    write(engine, Customer, 3)
    head = seal_audit_log(engine)
    with engine.begin() as conn:  # forge history, then rebuild the whole chain over the forgery
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'ceo'"))
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name, table="sqlaudit_seal")
        conn.execute(text("DELETE FROM sqlaudit_seal"))
    forged = seal_audit_log(engine)
    assert verify_audit_log(engine).ok  # self-consistent: only the kept head tells
    result = verify_audit_log(engine, head=head)
    assert [p.kind for p in result.problems] == ["head_mismatch"]
    assert result.head == forged != head


def test_a_legitimate_prune_keeps_the_chain_verifiable(engine, Customer) -> None:
    write(engine, Customer, 3)
    head = seal_audit_log(engine)
    with engine.connect() as conn:
        bound = conn.execute(text("SELECT max(changed_at) FROM sqlaudit_log")).scalar()
    bound = (bound if isinstance(bound, datetime) else datetime.fromisoformat(bound))
    bound = (bound.replace(tzinfo=timezone.utc) if bound.tzinfo is None else bound) + timedelta(microseconds=1)
    write(engine, Customer, 2, prefix="kept")
    assert prune_audit_log(engine, bound) == 3
    result = verify_after_prune(engine, head)
    assert result.ok, result.problems
    assert (result.sealed_rows, result.unsealed_rows) == (2, 0)  # prune seals first
    with engine.connect() as conn:
        prune = conn.execute(text(
            "SELECT first_id, last_id, row_count, detail FROM sqlaudit_seal WHERE kind = 'prune'")).one()
    log_ids = ids(engine)
    assert prune.row_count == 3 and prune.last_id < log_ids[0]
    assert "older_than" in prune.detail
    write(engine, Customer, 1, prefix="after")
    assert verify_audit_log(engine, head=seal_audit_log(engine)).ok


def test_a_prune_that_removes_every_row_keeps_the_chain_verifiable(engine, Customer) -> None:
    """On SQLite the next record reuses the id of the deleted last one (no AUTOINCREMENT);
    PostgreSQL's sequence and MariaDB's AUTO_INCREMENT never give an id twice."""
    write(engine, Customer, 2)
    seal_audit_log(engine)
    assert prune_audit_log(engine, datetime.now(timezone.utc) + timedelta(days=1)) == 2
    write(engine, Customer, 1, prefix="new")
    assert verify_audit_log(engine).ok
    head = seal_audit_log(engine)
    assert verify_audit_log(engine, head=head).ok


def test_an_illegitimate_prune_is_reported_as_deleted(engine, Customer) -> None:
    write(engine, Customer, 3)
    seal_audit_log(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # what prune_audit_log does, minus the record
            conn.execute(text("SET LOCAL sqlaudit.prune_before = 'infinity'"))
        elif engine.dialect.name in ("mysql", "mariadb"):  # the same, with the session variable
            conn.execute(text("SET @sqlaudit_prune_before = '9999-12-31'"))
        else:
            conn.execute(text("DROP TRIGGER sqlaudit_log_no_delete"))
        conn.execute(text("DELETE FROM sqlaudit_log"))
    result = verify_audit_log(engine)
    assert [p.kind for p in result.problems] == ["deleted"]


def test_prune_refuses_a_log_that_fails_verification(engine, Customer) -> None:
    write(engine, Customer, 2)
    seal_audit_log(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'ceo'"))
    with pytest.raises(SQLAuditIntegrityError, match="refusing to prune"):
        prune_audit_log(engine, datetime.now(timezone.utc) + timedelta(days=1))
    assert len(ids(engine)) == 2


def just_after_last_record(engine):
    with engine.connect() as conn:
        bound = conn.execute(text("SELECT max(changed_at) FROM sqlaudit_log")).scalar()
    bound = (bound if isinstance(bound, datetime) else datetime.fromisoformat(bound))
    return (bound.replace(tzinfo=timezone.utc) if bound.tzinfo is None else bound) + timedelta(microseconds=1)


def seal_entries(engine, kind="seal"):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, first_id, last_id, row_count, rows_digest FROM sqlaudit_seal "
            "WHERE kind = :kind ORDER BY id"), {"kind": kind})]


def current_epoch(engine):
    """The seal entries after the last prune: (first_id, last_id, row_count, rows_digest)."""
    with engine.connect() as conn:
        last_prune = conn.execute(text(
            "SELECT coalesce(max(id), 0) FROM sqlaudit_seal WHERE kind = 'prune'")).scalar()
    return [e[1:] for e in seal_entries(engine) if e[0] > last_prune]


def verify_after_prune(engine, head):
    """After a prune, the head kept before it reports the prune and nothing else (it cannot
    vouch for it); the result of verifying with the head sealed after it is returned."""
    before = verify_audit_log(engine, head=head)
    assert {p.kind for p in before.problems} == {"pruned_after_head"}, before.problems
    return verify_audit_log(engine, head=seal_audit_log(engine))


def test_a_prune_of_an_old_range_keeps_a_chain_of_many_entries_verifiable(engine, Customer, monkeypatch) -> None:
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    write(engine, Customer, 5, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, 6, prefix="kept")
    kept = ids(engine)[5:]
    head = seal_audit_log(engine)
    assert prune_audit_log(engine, bound) == 5
    assert ids(engine) == kept
    result = verify_after_prune(engine, head)
    assert result.ok, result.problems
    assert (result.sealed_rows, result.unsealed_rows) == (6, 0)
    epoch = current_epoch(engine)
    assert epoch[0][0] == 1 and all(a[1] + 1 == b[0] for a, b in zip(epoch, epoch[1:]))
    assert epoch[-1][1] == kept[-1]
    write(engine, Customer, 3, prefix="after")
    head = seal_audit_log(engine)
    assert verify_audit_log(engine, head=head).ok
    assert prune_audit_log(engine, just_after_last_record(engine)) == 9  # a second prune
    assert verify_audit_log(engine, head=seal_audit_log(engine)).ok


def test_a_prune_carries_untouched_entries_over_without_reading_their_rows(engine, Customer, monkeypatch) -> None:
    from sqlaudit import integrity

    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    write(engine, Customer, 4, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, 8, prefix="kept")
    log_ids = ids(engine)
    seal_audit_log(engine)
    before = current_epoch(engine)
    untouched = [e for e in before if e[0] > log_ids[3]]
    assert len(untouched) == 4
    read = []
    original = integrity._Log.rows

    def counting(self, lower, upper, extra=None):
        for row in original(self, lower, upper, extra):
            read.append(int(row[0]))
            yield row

    monkeypatch.setattr(integrity._Log, "rows", counting)
    assert prune_audit_log(engine, bound) == 4
    assert read == log_ids[:4]  # the removed rows' intervals only
    # the same intervals, counts and rows digests; the first one now starts at id 1, over the
    # intervals emptied by the prune (the new epoch covers every id from 1)
    assert current_epoch(engine) == [(1,) + untouched[0][1:]] + untouched[1:]
    assert verify_audit_log(engine).ok


def test_tampering_in_an_untouched_interval_is_still_reported_after_a_prune(engine, Customer, monkeypatch) -> None:
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    write(engine, Customer, 4, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, 4, prefix="kept")
    log_ids = ids(engine)
    seal_audit_log(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'forged' WHERE id = :id"),
                     {"id": log_ids[-1]})
    assert kinds(verify_audit_log(engine)) == [("altered", log_ids[-2], log_ids[-1])]
    assert prune_audit_log(engine, bound) == 4  # it does not read that interval
    result = verify_audit_log(engine, head=seal_audit_log(engine))
    assert kinds(result) == [("altered", log_ids[-2], log_ids[-1])]  # not laundered


@pytest.mark.parametrize("tampered", ["removed", "kept"])
def test_prune_refuses_tampering_inside_an_interval_it_touches(engine, Customer, monkeypatch, tampered) -> None:
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    write(engine, Customer, 3, prefix="old")  # the second interval holds old and kept rows
    bound = just_after_last_record(engine)
    write(engine, Customer, 3, prefix="kept")
    log_ids = ids(engine)
    seal_audit_log(engine)
    target = log_ids[2] if tampered == "removed" else log_ids[3]
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'forged' WHERE id = :id"), {"id": target})
    with pytest.raises(SQLAuditIntegrityError, match=r"refusing to prune: .*its rows differ"):
        prune_audit_log(engine, bound)
    assert ids(engine) == log_ids
    assert kinds(verify_audit_log(engine)) == [("altered", log_ids[2], log_ids[3])]


def test_prune_refuses_to_remove_a_row_inserted_below_every_sealed_range(engine, Customer) -> None:
    write(engine, Customer, 2)
    seal_audit_log(engine)
    with engine.begin() as conn:
        insert_with_id(conn,
            "INSERT INTO sqlaudit_log (id, table_name, operation, changed_at, changed_by) "
            "VALUES (0, 'customers', 'update', CURRENT_TIMESTAMP, 'ceo')")
    with pytest.raises(SQLAuditIntegrityError, match="refusing to prune: .*inserted out of order"):
        prune_audit_log(engine, datetime.now(timezone.utc) + timedelta(days=1))
    assert len(ids(engine)) == 3


def test_a_prune_of_every_row_of_many_entries_keeps_the_chain_verifiable(engine, Customer, monkeypatch) -> None:
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    write(engine, Customer, 5)
    seal_audit_log(engine)
    pruned = ids(engine)
    assert prune_audit_log(engine, datetime.now(timezone.utc) + timedelta(days=1)) == 5
    # PostgreSQL and MariaDB never give an id twice: the pruned ids stay sealed as holding
    # nothing, so a row inserted later with one of them is reported (test_prune_attacks).
    # SQLite gives them again, so its new epoch starts empty.
    empty = hashlib.sha256().hexdigest()
    assert current_epoch(engine) == ([] if engine.dialect.name == "sqlite" else [(1, pruned[-1], 0, empty)])
    write(engine, Customer, 3, prefix="new")  # SQLite gives the pruned ids again
    assert verify_audit_log(engine).ok
    assert verify_audit_log(engine, head=seal_audit_log(engine)).ok


def test_a_prune_limited_to_some_models_keeps_the_chain_verifiable(engine, Customer, monkeypatch) -> None:
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)
    for i in range(3):
        write(engine, Customer, 2, prefix=f"c{i}")
        with engine.begin() as conn:  # records of another table between them
            conn.execute(text(
                "INSERT INTO sqlaudit_log (table_name, operation, changed_at, changed_by) "
                "VALUES ('orders', 'insert', CURRENT_TIMESTAMP, 'someone')"))
    others = [i for i in ids(engine)][2::3]
    head = seal_audit_log(engine)
    assert prune_audit_log(engine, datetime.now(timezone.utc) + timedelta(days=1), models=[Customer]) == 6
    assert ids(engine) == others
    result = verify_after_prune(engine, head)
    assert result.ok, result.problems
    assert result.sealed_rows == 3
    write(engine, Customer, 1, prefix="after")
    assert verify_audit_log(engine, head=seal_audit_log(engine)).ok


@pytest.mark.postgresql_only
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_session_settings_do_not_change_digests(make_engine, Customer, engine) -> None:
    """PostgreSQL only: SQLite has no session settings that change how values read back."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sqlaudit_log (table_name, operation, changed_at, new_data) VALUES "
            "('customers', 'insert', '2024-02-03 04:05:06.789012+00', "
            "'{\"f\": 0.30000000000000004, \"d\": \"2024-02-03\", \"n\": 1e400, \"s\": \"\\u00e9\"}')"))
    write(engine, Customer, 2)
    settings = [
        {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "extra_float_digits": "1"},
        {"TimeZone": "Pacific/Chatham", "DateStyle": "SQL, DMY", "extra_float_digits": "0"},
        {"TimeZone": "America/St_Johns", "DateStyle": "German", "extra_float_digits": "-15"},
    ]

    def with_settings(conn, values):
        for k, v in values.items():
            conn.execute(text("SELECT set_config(:k, :v, false)"), {"k": k, "v": v})

    with engine.connect() as conn:
        with_settings(conn, settings[0])
        head = seal_audit_log(conn)
        conn.commit()
    for values in settings[1:]:
        with engine.connect() as conn:
            with_settings(conn, values)
            result = verify_audit_log(conn, head=head)
            assert result.ok, (values, result.problems)
            assert result.sealed_rows == 3


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
def test_a_row_committed_after_a_seal_with_a_lower_id_is_sealed_next_time(engine, Customer) -> None:
    """PostgreSQL and MariaDB: SQLite has one writer at a time, so no row commits out of id order."""
    write(engine, Customer, 2)
    slow = engine.connect()
    try:
        slow_tx = slow.begin()
        slow.execute(text("INSERT INTO customers (name, user_id) VALUES ('slow', 1)"))
        low = slow.execute(text("SELECT max(id) FROM sqlaudit_log")).scalar()
        write(engine, Customer, 1, prefix="fast")  # commits a higher id first
        done = threading.Event()

        def seal() -> None:
            seal_audit_log(engine)
            done.set()

        worker = threading.Thread(target=seal)
        worker.start()
        worker.join(30)
        assert done.is_set(), "sealing waited for the open transaction"
        slow_tx.commit()
    finally:
        slow.close()
    assert max(ids(engine)) > low
    result = verify_audit_log(engine)
    assert result.ok, result.problems
    assert result.unsealed_rows == 2  # the late row and the one after it
    head = seal_audit_log(engine)
    result = verify_audit_log(engine, head=head)
    assert result.ok and (result.sealed_rows, result.unsealed_rows) == (4, 0)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_text_that_is_not_utf8_is_reported_not_raised(engine, Customer) -> None:
    """SQLite only: PostgreSQL refuses invalid UTF-8 text on input."""
    write(engine, Customer, 2)
    seal_audit_log(engine)
    with engine.begin() as conn:
        bypass(conn, "sqlite")
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = CAST(X'FF00' AS TEXT)"))
    log_ids = ids(engine)
    assert kinds(verify_audit_log(engine)) == [("altered", log_ids[0], log_ids[-1])]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_a_seal_entry_given_a_value_of_another_type_is_reported_not_raised(engine, Customer) -> None:
    """SQLite only: PostgreSQL's typed columns refuse text in an integer column."""
    write(engine, Customer, 2)
    seal_audit_log(engine)
    with engine.begin() as conn:
        bypass(conn, "sqlite", table="sqlaudit_seal")
        conn.execute(text("UPDATE sqlaudit_seal SET last_id = 'many'"))
    result = verify_audit_log(engine)
    assert [p.kind for p in result.problems] == ["chain"] and not result.ok


def test_the_seal_benchmark_runs_on_a_small_log(dialect, request) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "seal.py"
    spec = importlib.util.spec_from_file_location("bench_seal", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    url = {"postgresql": "postgres_url", "mariadb": "mariadb_url"}.get(dialect)
    timings = bench.run(dialect, 300, 1, url and request.getfixturevalue(url))
    assert len(timings["seal"]) == len(timings["verify"]) == 1
    assert timings["version"].split()[0] == {"sqlite": "SQLite", "postgresql": "PostgreSQL",
                                             "mariadb": "MariaDB"}[dialect]


def test_sealing_a_database_without_an_audit_log_says_what_to_do(engine) -> None:
    from sqlaudit.exceptions import SQLAuditError

    with pytest.raises(SQLAuditError, match="sqlaudit_log does not exist .*create_all"):
        seal_audit_log(engine)
    with pytest.raises(SQLAuditError, match="sqlaudit_log does not exist"):
        verify_audit_log(engine)


def test_verify_names_a_head_that_is_not_a_digest(engine, Customer) -> None:
    with pytest.raises(TypeError, match="head must be the hex digest"):
        verify_audit_log(engine, head=b"00")  # type: ignore[arg-type]


def test_a_column_added_to_the_log_later_is_sealed_and_old_seals_still_verify(engine, Customer) -> None:
    write(engine, Customer, 2)
    seal_audit_log(engine)
    name = "mariadb" if engine.dialect.name == "mysql" else engine.dialect.name
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE sqlaudit_log ADD COLUMN score "
                          + {"postgresql": "double precision", "sqlite": "REAL",
                             "mariadb": "DOUBLE"}[name]))
    write(engine, Customer, 2, prefix="new")
    with engine.begin() as conn:
        bypass(conn, name)
        conn.execute(text({"sqlite": "UPDATE sqlaudit_log SET score = CAST(0.1 AS REAL) + CAST(0.2 AS REAL)",
                           "postgresql": "UPDATE sqlaudit_log SET score = 0.1::float8 + 0.2::float8",
                           "mariadb": "UPDATE sqlaudit_log SET score = 0.1e0 + 0.2e0"}[name]))
    head = seal_audit_log(engine)
    assert verify_audit_log(engine, head=head).ok
    log_ids = ids(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET score = 0.3 WHERE id = :id"), {"id": log_ids[-1]})
    assert kinds(verify_audit_log(engine)) == [("altered", log_ids[2], log_ids[-1])]


@pytest.mark.postgresql_only
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_a_float_column_added_later_reads_the_same_under_any_extra_float_digits(engine, Customer) -> None:
    """PostgreSQL only: its float text output depends on the session; SQLite's does not."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE sqlaudit_log ADD COLUMN score double precision"))
    write(engine, Customer, 2)
    with engine.begin() as conn:
        bypass(conn, "postgresql")
        conn.execute(text("UPDATE sqlaudit_log SET score = 0.1::float8 + 0.2::float8"))
    with engine.connect() as conn:
        conn.execute(text("SET extra_float_digits = 3"))
        head = seal_audit_log(conn)
        conn.commit()
    with engine.connect() as conn:
        conn.execute(text("SET extra_float_digits = 0"))  # would print 0.3
        assert verify_audit_log(conn, head=head).ok
        assert conn.execute(text("SHOW extra_float_digits")).scalar() == "0"  # restored


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
def test_sealing_refuses_a_repeatable_read_transaction(engine, Customer) -> None:
    """PostgreSQL and MariaDB (whose default it is): an older snapshot could miss rows
    and seal entries committed below the horizon. SQLite has no such level."""
    from sqlaudit.exceptions import SQLAuditError

    write(engine, Customer, 1)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with pytest.raises(SQLAuditError, match="needs a READ COMMITTED transaction"):
            seal_audit_log(conn)
    seal_audit_log(engine)  # given an Engine, it picks READ COMMITTED itself
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with pytest.raises(SQLAuditError, match="needs a READ COMMITTED transaction"):
            prune_audit_log(conn, datetime.now(timezone.utc) + timedelta(days=1))  # seals first
    assert len(ids(engine)) == 1


# ------------------------------------------------------------ the canonical text of values


def test_four_byte_text_decimals_datetimes_and_json_are_sealed_exactly(engine, Base, dialect) -> None:
    """A record of 4-byte characters, an exact decimal, a datetime with microseconds and a
    nested JSON value verifies; one 4-byte character swapped for another is reported, and
    the original text put back verifies again (the canonical text is deterministic)."""
    @track_table(tracked_fields=["label", "price", "due", "data"])
    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        label: Mapped[str] = mapped_column(String(50))
        price: Mapped[Decimal] = mapped_column(Numeric(12, 4))
        due: Mapped[datetime] = mapped_column(DateTime)
        data: Mapped[dict] = mapped_column(JSON)

    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Item(id=1, label="ok \U0001F600 \u00e9", price=Decimal("12.3400"),
                   due=datetime(2024, 2, 29, 23, 59, 59, 999999),
                   data={"b": [1.5, 0.1, 10**20], "a": "\U0001F680", "n": None}))
        s.commit()
    head = seal_audit_log(engine)
    assert verify_audit_log(engine, head=head).ok
    read = "SELECT CAST(new_data AS TEXT) FROM sqlaudit_log" if dialect == "postgresql" else \
        "SELECT new_data FROM sqlaudit_log"
    write_back = ("UPDATE sqlaudit_log SET new_data = CAST(:v AS jsonb)" if dialect == "postgresql"
                  else "UPDATE sqlaudit_log SET new_data = :v")
    with engine.connect() as conn:
        original = conn.execute(text(read)).scalar()
    assert "\U0001F600" in original
    with engine.begin() as conn:
        bypass(conn, dialect)
        conn.execute(text(write_back), {"v": original.replace("\U0001F600", "\U0001F601")})
    assert [p.kind for p in verify_audit_log(engine).problems] == ["altered"]
    with engine.begin() as conn:
        bypass(conn, dialect)
        conn.execute(text(write_back), {"v": original})
    assert verify_audit_log(engine, head=head).ok


def test_sealing_and_verifying_read_the_log_in_pages(engine, Customer, monkeypatch) -> None:
    """Rows are fetched a page at a time (MariaDB: one query per page); pages and seal
    entries need not line up."""
    monkeypatch.setattr("sqlaudit.integrity._FETCH", 3)
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 4)
    write(engine, Customer, 10)
    head = seal_audit_log(engine)
    result = verify_audit_log(engine, head=head)
    assert result.ok and (result.seals, result.sealed_rows) == (3, 10), result.problems
    log_ids = ids(engine)
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'x' WHERE id = :id"), {"id": log_ids[5]})
    assert kinds(verify_audit_log(engine)) == [("altered", log_ids[4], log_ids[7])]


def test_an_id_left_by_a_rolled_back_write_does_not_hold_the_seal_back(engine, Customer) -> None:
    """With no transaction in flight, a gap in the ids is a rolled-back write: the seal goes
    past it (SQLite leaves no gap)."""
    write(engine, Customer, 1)
    with pytest.raises(RuntimeError):
        with Session(engine) as s, s.begin():
            s.add(Customer(name="rolled back", user_id=1))
            s.flush()
            raise RuntimeError("rollback")
    write(engine, Customer, 1, prefix="d")
    result = verify_audit_log(engine, head=seal_audit_log(engine))
    assert result.ok and (result.sealed_rows, result.unsealed_rows) == (2, 0), result.problems


# ------------------------------------------------------------ concurrent sealers


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
def test_concurrent_seals_and_writers_build_one_chain(engine, Customer, monkeypatch) -> None:
    """PostgreSQL and MariaDB (SQLite has one writer at a time): sealers running at once,
    with writers committing between them, append to one chain: no entry forks it, no row
    is sealed twice or skipped."""
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 3)
    errors: list[BaseException] = []

    def run(work) -> None:
        try:
            work()
        except BaseException as exc:  # reported below
            errors.append(exc)

    def writer(tag: str) -> None:
        for i in range(12):
            write(engine, Customer, 2, prefix=f"{tag}{i}-")

    def sealer() -> None:
        for _ in range(6):
            seal_audit_log(engine)

    threads = [threading.Thread(target=run, args=(lambda t=t: writer(t),)) for t in "ab"]
    threads += [threading.Thread(target=run, args=(sealer,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    head = seal_audit_log(engine)
    result = verify_audit_log(engine, head=head)
    assert result.ok, result.problems
    assert (result.sealed_rows, result.unsealed_rows) == (48, 0)


# ------------------------------------------------------------ MariaDB only

mariadb = pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)


def seal_lock_holder(conn):
    """The MariaDB session holding this database's seal lock, or None."""
    database = conn.execute(text("SELECT DATABASE()")).scalar()
    name = "sqlaudit.seal." + hashlib.sha1(database.encode()).hexdigest()
    return conn.execute(text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()


@mariadb
def test_mariadb_digests_do_not_depend_on_the_connections_charset_or_time_zone(engine, Customer) -> None:
    """MariaDB only: text is read as its stored bytes, DATETIME as written and TIMESTAMP as
    epoch seconds. A latin1 connection (which reads a 4-byte character as '?') in another
    time zone verifies what a utf8mb4 one sealed, and seals what can only be told apart in
    utf8mb4: swapping one 4-byte character for another is still reported."""
    from sqlalchemy import create_engine

    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE sqlaudit_log ADD COLUMN stamped TIMESTAMP(6) NULL, "
                          "ADD COLUMN stamped_s TIMESTAMP NULL"))
    with Session(engine) as s:
        s.add(Customer(name="\U0001F600 \u00e9", email="a@example.com", user_id=1))
        s.commit()
    with engine.begin() as conn:
        bypass(conn, "mariadb")
        conn.execute(text("SET time_zone = '+00:00'"))
        conn.execute(text("UPDATE sqlaudit_log SET stamped = '2024-03-31 01:30:00.123456', "
                          "stamped_s = '2024-03-31 01:30:00'"))
    other = create_engine(engine.url.update_query_dict({"charset": "latin1"}),
                          connect_args={"init_command": "SET time_zone = '+05:45'"})
    try:
        with other.connect() as conn:
            assert conn.execute(text("SELECT name FROM customers")).scalar() == "? \u00e9"
        assert verify_audit_log(other, head=seal_audit_log(engine)).ok
        write(engine, Customer, 1, prefix="\U0001F680")
        head = seal_audit_log(other)
        assert verify_audit_log(engine, head=head).ok
        with engine.begin() as conn:
            bypass(conn, "mariadb")
            conn.execute(text("UPDATE sqlaudit_log SET new_data = REPLACE(new_data, :a, :b)"),
                         {"a": "\U0001F680", "b": "\U0001F681"})
        assert [p.kind for p in verify_audit_log(other).problems] == ["altered"]
    finally:
        other.dispose()


@mariadb
def test_mariadb_the_seal_lock_is_held_until_the_transaction_has_ended(engine, Customer) -> None:
    """MariaDB only: the lock is the session's; it outlives the COMMIT (the next sealer must
    read this one's entries) and goes at the next transaction's start or at checkin."""
    write(engine, Customer, 1)
    with engine.connect() as probe:
        with engine.connect().execution_options(isolation_level="READ COMMITTED") as sealer:
            me = sealer.execute(text("SELECT CONNECTION_ID()")).scalar()
            sealer.commit()
            seal_audit_log(sealer)
            assert seal_lock_holder(probe) == me
            sealer.commit()
            assert seal_lock_holder(probe) == me
            sealer.execute(text("SELECT 1"))  # the next transaction begins
            assert seal_lock_holder(probe) is None
            write(engine, Customer, 1, prefix="b")
            seal_audit_log(sealer)
            sealer.rollback()
        assert seal_lock_holder(probe) is None  # checked in
        seal_audit_log(engine)
        assert seal_lock_holder(probe) is None
    assert verify_audit_log(engine).ok


@mariadb
def test_mariadb_a_seal_that_waits_too_long_for_the_lock_says_so(engine, Customer) -> None:
    from sqlaudit.exceptions import SQLAuditError

    write(engine, Customer, 1)
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as holder:
        seal_audit_log(holder)  # holds the lock: its transaction is still open
        with engine.connect().execution_options(isolation_level="READ COMMITTED") as other:
            other.execute(text("SET SESSION lock_wait_timeout = 1"))
            with pytest.raises(SQLAuditError, match=r"held the seal lock for longer than "
                                                    r"lock_wait_timeout \(1 s\); nothing was done"):
                seal_audit_log(other)
            other.rollback()
        holder.commit()
    assert verify_audit_log(engine).ok


@mariadb
def test_mariadb_truncating_the_seal_table_is_caught_by_the_kept_head(engine, Customer) -> None:
    """MariaDB only: TRUNCATE fires no trigger, so the append-only guards cannot refuse it
    (do not grant DROP on sqlaudit_seal); the head kept outside the database reports it."""
    write(engine, Customer, 2)
    head = seal_audit_log(engine)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE TABLE sqlaudit_seal"))
    assert [p.kind for p in verify_audit_log(engine, head=head).problems] == ["head_mismatch"]


@mariadb
def test_mariadb_a_seal_puts_back_the_guards_missing_from_the_seal_table(engine, Customer) -> None:
    """MariaDB only: the seal table and its guards are created by separate statements, each
    committing on its own; a seal checks the guards and creates the missing ones."""
    write(engine, Customer, 1)
    seal_audit_log(engine)
    with engine.begin() as conn:
        bypass(conn, "mariadb", table="sqlaudit_seal")
    with engine.begin() as conn:
        conn.execute(text("UPDATE sqlaudit_seal SET sealed_by = 'unguarded'"))
    seal_audit_log(engine)
    for statement in ("UPDATE sqlaudit_seal SET row_count = 0", "DELETE FROM sqlaudit_seal"):
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))


@mariadb
def test_mariadb_a_connection_without_a_database_is_told_to_name_one(engine, Customer) -> None:
    from sqlalchemy import create_engine

    from sqlaudit.exceptions import SQLAuditError

    bare = create_engine(engine.url._replace(database=None))  # URL.set() keeps a database
    try:
        for call in (seal_audit_log, verify_audit_log):
            with pytest.raises(SQLAuditError, match="no database is selected .*name the database"):
                call(bare)
    finally:
        bare.dispose()


@mariadb
def test_mariadb_the_first_seal_commits_the_open_transaction_is_a_documented_hole(engine, Customer) -> None:
    """MariaDB only: the first seal creates sqlaudit_seal and its guards, and DDL commits
    the open transaction there; a rollback after it no longer undoes what came before."""
    with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn:
        conn.execute(text("INSERT INTO customers (name, user_id) VALUES ('before the seal', 1)"))
        seal_audit_log(conn)
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM customers")).scalars().all() == ["before the seal"]


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
def test_a_prune_committed_while_verifying_is_not_reported(engine, Customer, monkeypatch) -> None:
    """PostgreSQL and MariaDB (on SQLite the verifying read keeps writers out):
    verify_audit_log(engine) reads the seal entries and the rows from one snapshot, so a
    prune committed between the two reads is seen by neither."""
    from sqlaudit import integrity

    write(engine, Customer, 3, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, 2, prefix="kept")
    seal_audit_log(engine)
    original = integrity._Log.entries
    pruned: list[int] = []
    started: list[bool] = []

    def entries_then_prune(self):
        found = original(self)
        if not started:  # the verify's read, not the prune's own
            started.append(True)
            pruned.append(prune_audit_log(engine, bound))  # another connection, committed
        return found

    monkeypatch.setattr(integrity._Log, "entries", entries_then_prune)
    result = verify_audit_log(engine)
    monkeypatch.undo()
    assert pruned == [3]
    assert result.ok and result.sealed_rows == 5, result.problems
