"""Adversarial review of the range-bounded prune (bc5430d, dd55b55).

Each test is an attack by the table owner (guards off, rows of sqlaudit_log
written with chosen ids, sqlaudit_seal only appended to) or a careless
operator.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from sqlaudit import seal_audit_log, verify_audit_log
from sqlaudit.ddl import create_audit_log, prune_audit_log
from sqlaudit.integrity import SQLAuditIntegrityError

from sample_models import readme_models
from test_integrity import (Customer, bypass, current_epoch, ids, insert_with_id,  # noqa: F401
                            just_after_last_record, kinds, verify_after_prune, write)

MARIADB_PORTED = True

pg = pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
sqlite = pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
#: Concurrent writers and sealers (SQLite has one writer at a time).
servers = pytest.mark.parametrize("dialect", ["postgresql", "mariadb"], indirect=True)
#: prune_audit_log(export_to=...) is not built for MariaDB yet (docs/mariadb.md).
with_archives = pytest.mark.parametrize("dialect", ["sqlite", "postgresql"], indirect=True)
FAR = timedelta(days=1)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr("sqlaudit.integrity.CHUNK_ROWS", 2)


def forge(engine, sql, **params):
    with engine.begin() as conn:
        bypass(conn, engine.dialect.name)
        conn.execute(text(sql), params)


def insert_row(engine, row_id, changed_by="ceo", old=True):
    """old=True: a record dated 2000 (the prune matches it); False: dated 2100 (it never does)."""
    at = "'2000-01-01 00:00:00'" if old else "'2100-01-01 00:00:00'"
    with engine.begin() as conn:
        insert_with_id(conn,
            "INSERT INTO sqlaudit_log (id, table_name, operation, changed_at, changed_by) "
            f"VALUES (:id, 'customers', 'update', {at}, :by)", {"id": row_id, "by": changed_by})


def layout(engine, Customer, old=4, kept=6):
    """`old` records before the returned bound, `kept` after; sealed; ids returned."""
    write(engine, Customer, old, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, kept, prefix="kept")
    head = seal_audit_log(engine)
    return bound, ids(engine), head


# ------------------------------------------------------------ tampering before a prune


@pytest.mark.parametrize("how", ["alter_removed", "alter_kept", "delete_removed", "delete_kept",
                                 "insert_gap_matching", "insert_gap_not_matching"])
def test_tampering_in_a_touched_interval_is_refused(engine, Customer, how) -> None:
    # intervals [1,2] [3,4] [5,6]; ids 1..3 removed: [3,4] holds one removed and one kept row
    write(engine, Customer, 3, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, 3, prefix="kept")
    log_ids = ids(engine)
    seal_audit_log(engine)
    removed, kept = log_ids[2], log_ids[3]
    if how == "alter_removed":
        forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=removed)
    elif how == "alter_kept":
        forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=kept)
    elif how == "delete_removed":
        forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=removed)
    elif how == "delete_kept":
        forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=kept)
    else:  # swap: delete a kept row, insert another with its id (same count)
        forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=kept)
        insert_row(engine, kept, old=how == "insert_gap_matching")
    before = ids(engine)
    if how == "delete_removed":  # [3,4] no longer holds a row to remove: untouched, carried over
        assert prune_audit_log(engine, bound) == 2
        assert kinds(verify_audit_log(engine)) == [("deleted", 1, log_ids[3])]  # still reported
        return
    with pytest.raises(SQLAuditIntegrityError, match="refusing to prune"):
        prune_audit_log(engine, bound)
    assert ids(engine) == before
    assert not verify_audit_log(engine).ok


@pytest.mark.parametrize("how", ["alter", "delete", "delete_all", "insert_swap"])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_tampering_in_an_untouched_interval_survives_a_prune(engine, Customer, how, where) -> None:
    bound, log_ids, head = layout(engine, Customer, old=3, kept=7)  # ids 1..3 old, 4..10 kept
    # intervals [1,2][3,4][5,6][7,8][9,10]; the prune touches the first two
    a, b = (log_ids[6], log_ids[7]) if where == "middle" else (log_ids[8], log_ids[9])
    if how == "alter":
        forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=b)
    elif how == "delete":
        forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=b)
    elif how == "delete_all":
        forge(engine, "DELETE FROM sqlaudit_log WHERE id IN (:a, :b)", a=a, b=b)
    elif how == "insert_swap":
        forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=b)
        insert_row(engine, b, old=False)
    assert not verify_audit_log(engine).ok
    assert prune_audit_log(engine, bound) == 3
    for _ in range(2):  # after the prune, and after new rows reuse ids (SQLite) and a seal
        assert not verify_audit_log(engine, head=head).ok, (how, where)
        write(engine, Customer, 3, prefix="new")
        seal_audit_log(engine)


def test_rows_inserted_into_the_range_a_prune_emptied_are_reported(engine, Customer) -> None:
    """The carried entry now starts at id 1: an id in 1..4 (removed) is inside it."""
    bound, log_ids, head = layout(engine, Customer, old=4, kept=4)  # [1,2][3,4] removed whole
    assert prune_audit_log(engine, bound) == 4
    assert current_epoch(engine)[0][:2] == (1, log_ids[5])  # carried [5,6] widened to [1,6]
    insert_row(engine, log_ids[1])  # a pruned id, back in the widened interval
    assert kinds(verify_audit_log(engine)) == [("inserted", 1, log_ids[5])]
    # and a swap (same count): delete a real row of the widened entry, insert a pruned id
    forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=log_ids[4])
    assert [k for k, *_ in kinds(verify_audit_log(engine))] == ["altered"]


def test_rows_inserted_below_the_first_interval_after_a_prune_are_reported(engine, Customer) -> None:
    bound, log_ids, head = layout(engine, Customer, old=3, kept=4)
    insert_row(engine, 0, old=False)  # not matching: the prune ignores it
    assert prune_audit_log(engine, bound) == 3
    assert ("inserted", 0, 0) in kinds(verify_audit_log(engine, head=head))
    with pytest.raises(SQLAuditIntegrityError, match="below every sealed range"):
        prune_audit_log(engine, datetime(2101, 1, 1, tzinfo=timezone.utc))  # one that would remove it


# ------------------------------------------------------------ between two prunes


@pytest.mark.parametrize("touch", [True, False])
def test_tampering_between_two_prunes(engine, Customer, touch) -> None:
    bound, log_ids, head = layout(engine, Customer, old=3, kept=6)
    assert prune_audit_log(engine, bound) == 3
    forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=log_ids[5])  # 1st carried
    with engine.begin() as conn:  # two old 'orders' records at the end (their own interval)
        for _ in range(2):
            conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                              "VALUES ('orders', 'insert', '2000-01-01 00:00:00')"))
    seal_audit_log(engine)
    if touch:  # the second prune touches the tampered (widened, carried) interval
        with pytest.raises(SQLAuditIntegrityError):
            prune_audit_log(engine, datetime.now(timezone.utc) + FAR)
    else:  # the second prune touches only the later interval (old-dated rows at the end)
        assert prune_audit_log(engine, bound) == 2
    assert not verify_audit_log(engine, head=head).ok


def test_models_prune_carries_tampering_of_other_tables(engine, Customer) -> None:
    for i in range(3):
        write(engine, Customer, 2, prefix=f"c{i}")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                              "VALUES ('orders', 'insert', CURRENT_TIMESTAMP)"))
    with engine.begin() as conn:  # two orders rows in an interval of their own
        for _ in range(3):
            conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                              "VALUES ('orders', 'insert', CURRENT_TIMESTAMP)"))
    head = seal_audit_log(engine)
    log_ids = ids(engine)
    forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=log_ids[-1])
    assert prune_audit_log(engine, datetime.now(timezone.utc) + FAR, models=[Customer]) == 6
    assert not verify_audit_log(engine, head=head).ok


@with_archives
def test_export_prune_refuses_tampering_and_writes_no_file(engine, Customer, tmp_path) -> None:
    bound, log_ids, head = layout(engine, Customer, old=3, kept=2)
    forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=log_ids[1])
    out = tmp_path / "a.jsonl"
    with pytest.raises(SQLAuditIntegrityError):
        prune_audit_log(engine, bound, export_to=out)
    assert not out.exists()


@with_archives
def test_export_prune_archive_matches_the_prune_entry(engine, Customer, tmp_path) -> None:
    bound, log_ids, head = layout(engine, Customer, old=3, kept=2)
    out = tmp_path / "a.jsonl"
    assert prune_audit_log(engine, bound, export_to=out) == 3
    archived = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    with engine.connect() as conn:
        p = conn.execute(text("SELECT first_id, last_id, row_count FROM sqlaudit_seal "
                              "WHERE kind='prune'")).one()
    assert archived == log_ids[:3] and (p.first_id, p.last_id, p.row_count) == (
        log_ids[0], log_ids[2], 3)
    assert verify_after_prune(engine, head).ok


# ------------------------------------------------------------ SQLite id reuse


@sqlite
def test_sqlite_ids_reused_after_pruning_the_newest_rows_are_sealed_and_protected(engine, Customer) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sqlaudit_log (table_name, operation, changed_at) "
                          "VALUES ('orders', 'insert', CURRENT_TIMESTAMP)"))
    write(engine, Customer, 5)  # ids 2..6
    head = seal_audit_log(engine)
    assert prune_audit_log(engine, datetime.now(timezone.utc) + FAR, models=[Customer]) == 5
    assert ids(engine) == [1]  # the orders row
    write(engine, Customer, 3, prefix="new")  # reuse ids 2..4
    assert ids(engine) == [1, 2, 3, 4]
    assert verify_after_prune(engine, head).ok
    head = seal_audit_log(engine)
    forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=3")
    assert [p.kind for p in verify_audit_log(engine, head=head).problems] == ["altered"]


# ------------------------------------------------ PostgreSQL and MariaDB: concurrent writers, ids never reused


@servers
def test_a_writer_committing_a_lower_id_during_a_prune_keeps_its_row(engine, Customer) -> None:
    write(engine, Customer, 2)
    seal_audit_log(engine)
    slow = engine.connect()
    try:
        tx = slow.begin()
        slow.execute(text("INSERT INTO customers (name, user_id) VALUES ('slow', 1)"))
        low = slow.execute(text("SELECT max(id) FROM sqlaudit_log")).scalar()
        write(engine, Customer, 1, prefix="fast")
        n = prune_audit_log(engine, datetime.now(timezone.utc) + FAR)
        tx.commit()
    finally:
        slow.close()
    assert n == 2 and low in ids(engine) and len(ids(engine)) == 2
    assert verify_audit_log(engine).ok
    assert verify_audit_log(engine, head=seal_audit_log(engine)).ok


@pg
@pytest.mark.parametrize("export", [False, True])
def test_pg_partitioned_prune_drops_a_row_committed_during_the_prune(engine, Base, tmp_path, export) -> None:
    from sqlaudit import _partitions

    assert create_audit_log(engine, partition_by="month") is True
    User, Customer_ = readme_models(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(User(user_id=1))
        s.commit()
    write(engine, Customer_, 3)
    head = seal_audit_log(engine)
    with engine.connect() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
    # the operator prunes everything up to the end of the current month's partition
    bound = _partitions.next_start(_partitions.period_start(now, "month"), "month") + timedelta(hours=1)
    slow = engine.connect()
    tx = slow.begin()
    slow.execute(text("INSERT INTO customers (name, user_id) VALUES ('slow', 1)"))
    late = slow.execute(text("SELECT max(id) FROM sqlaudit_log")).scalar()
    out = tmp_path / "a.jsonl"
    got: dict = {}

    def prune() -> None:
        try:
            got["n"] = prune_audit_log(engine, bound, export_to=out if export else None)
        except Exception as exc:  # pragma: no cover
            got["error"] = exc

    worker = threading.Thread(target=prune)
    worker.start()
    time.sleep(3)  # the prune has counted the partition and waits for ACCESS EXCLUSIVE
    tx.commit()
    slow.close()
    worker.join(60)
    assert "error" not in got, got
    remaining = ids(engine)
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT sum(row_count) FROM sqlaudit_seal WHERE kind='prune'")).scalar()
    archived = ([json.loads(line)["id"] for line in out.read_text().splitlines()] if export else None)
    print("prune returned", got["n"], "recorded", recorded, "late id", late, "remaining", remaining,
          "archived", archived, "verify", verify_audit_log(engine, head=head))
    # what the design promises: rows of transactions in flight wait for the next prune
    assert late in remaining


@servers
def test_old_id_inserted_after_a_prune_of_every_row_is_reported(engine, Customer) -> None:
    write(engine, Customer, 3)
    seal_audit_log(engine)
    log_ids = ids(engine)
    assert prune_audit_log(engine, datetime.now(timezone.utc) + FAR) == 3
    after_prune = seal_audit_log(engine)  # the head kept after the prune
    assert verify_audit_log(engine, head=after_prune).ok
    insert_row(engine, log_ids[1])  # back-dated record with an id below the pruned head
    write(engine, Customer, 1, prefix="after")
    result = verify_audit_log(engine, head=seal_audit_log(engine))
    assert [(p.kind, p.first_id, p.last_id) for p in result.problems] == [
        ("inserted", 1, log_ids[-1])]


@servers
def test_old_id_inserted_after_a_partial_prune_is_reported(engine, Customer) -> None:
    bound, log_ids, head = layout(engine, Customer, old=3, kept=1)
    assert prune_audit_log(engine, bound) == 3
    insert_row(engine, log_ids[1])
    assert not verify_audit_log(engine, head=seal_audit_log(engine)).ok


# ------------------------------------------------------------ the chain itself


def test_a_forged_prune_entry_cannot_launder_tampering_past_the_kept_head(engine, Customer) -> None:
    """The owner may INSERT into sqlaudit_seal and compute unkeyed digests, so a forged
    ``prune`` entry followed by a fresh seal self-verifies; the head kept outside the
    database refuses to vouch for any prune recorded after it."""
    from sqlaudit import integrity

    write(engine, Customer, 5)
    head = seal_audit_log(engine)  # kept outside the database
    forge(engine, "UPDATE sqlaudit_log SET changed_by = 'ceo'")
    forge(engine, "DELETE FROM sqlaudit_log WHERE id = 2")
    assert not verify_audit_log(engine, head=head).ok
    with engine.begin() as conn:  # INSERT only: the seal table's guard does not refuse it
        log = integrity._Log(conn)
        integrity._Chain(log, log.entries()).add("prune", None, None, 0, "0" * 64,
                                                 '{"older_than":"2000-01-01T00:00:00+00:00"}')
    laundered = seal_audit_log(engine)  # the public API seals the tampered log as a fresh epoch
    assert verify_audit_log(engine).ok  # self-consistent without a kept head, as documented
    assert verify_audit_log(engine, head=laundered).ok  # a head kept after the forgery vouches for it
    result = verify_audit_log(engine, head=head)
    assert [p.kind for p in result.problems] == ["pruned_after_head"]
    assert "after the head kept outside the database" in result.problems[0].message


@pg
@pytest.mark.parametrize("how", ["alter_kept", "delete_kept", "swap_doomed_for_kept"])
def test_pg_tampering_committed_between_the_prune_check_and_its_delete(engine, Customer, monkeypatch, how) -> None:
    """A concurrent owner commits right after the prune read (and verified) the touched rows."""
    from sqlaudit import integrity

    write(engine, Customer, 3, prefix="old")  # [1,2] [3,4] [5,6]: [3,4] holds ids 3 (old) and 4 (kept)
    bound = just_after_last_record(engine)
    write(engine, Customer, 3, prefix="kept")
    log_ids = ids(engine)
    head = seal_audit_log(engine)
    original = integrity._Log.rows
    fired: list[int] = []

    def rows(self, lower, upper, extra=None):
        yield from original(self, lower, upper, extra)
        if extra is not None and not fired:  # the prune's read of the touched intervals is done
            fired.append(1)
            if how == "alter_kept":
                forge(engine, "UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i", i=log_ids[3])
            elif how == "delete_kept":
                forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=log_ids[3])
            else:  # same count for the DELETE: a doomed row goes, a kept row becomes doomed
                forge(engine, "DELETE FROM sqlaudit_log WHERE id=:i", i=log_ids[2])
                forge(engine, "UPDATE sqlaudit_log SET changed_at='2000-01-01' WHERE id=:i", i=log_ids[3])

    monkeypatch.setattr(integrity._Log, "rows", rows)
    assert prune_audit_log(engine, bound) == 3
    monkeypatch.undo()
    assert fired
    assert not verify_audit_log(engine, head=head).ok  # re-sealed from what was read: not laundered


@pg
@pytest.mark.parametrize("where", ["dropped_partition", "kept_partition"])
def test_pg_partitioned_prune_with_tampering(engine, Base, where) -> None:
    from test_log_partitions import _add_past_partitions, _insert_log_rows

    assert create_audit_log(engine, partition_by="month") is True
    readme_models(Base)
    Base.metadata.create_all(engine)
    (s0, e0), (s1, e1) = _add_past_partitions(engine, 2)
    _insert_log_rows(engine, [s0 + timedelta(days=1), s0 + timedelta(days=2),
                              s1 + timedelta(days=1), s1 + timedelta(days=2), s1 + timedelta(days=3)])
    head = seal_audit_log(engine)  # intervals [1,2] (s0, dropped whole) [3,4] [5]
    target = 1 if where == "dropped_partition" else 5
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE sqlaudit_log SET changed_by='x' WHERE id=:i"), {"i": target})
    if where == "dropped_partition":
        with pytest.raises(SQLAuditIntegrityError):
            prune_audit_log(engine, e0)
        assert len(ids(engine)) == 5
    else:
        assert prune_audit_log(engine, e0) == 2
    assert not verify_audit_log(engine, head=head).ok


# ------------------------------------------------- a first seal racing a prune of a log never sealed


def _waits_for_a_lock(engine, pid, worker, timeout=30.0):
    """True once the session ``pid`` waits for a lock (False if ``worker`` finishes first,
    or nothing waits within ``timeout``): a PostgreSQL backend with a lock not granted, a
    MariaDB session in GET_LOCK ("User lock")."""
    waiting = (text("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = :pid AND NOT granted)")
               if engine.dialect.name == "postgresql" else
               text("SELECT count(*) FROM information_schema.PROCESSLIST "
                    "WHERE ID = :pid AND STATE = 'User lock'"))
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while worker.is_alive() and time.monotonic() < deadline:
            if conn.execute(waiting, {"pid": pid}).scalar():
                return True
            conn.rollback()
            time.sleep(0.05)
    return False


def read_committed(conn):
    """MariaDB seals only in READ COMMITTED (its default is REPEATABLE READ); a no-op on
    PostgreSQL, where it is the default."""
    return conn.execution_options(isolation_level="READ COMMITTED")


def _in_thread(work):
    got: dict = {}

    def run() -> None:
        try:
            got["value"] = work()
        except Exception as exc:  # reported by the test
            got["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    return worker, got


def _blocked_in_thread(engine, work):
    """``work(conn)`` then COMMIT on a connection of its own, in a thread; returns once
    that connection waits for a lock (asserted), with the thread and its outcome."""
    pid: dict = {}

    def run():
        with read_committed(engine.connect()) as conn:
            pid["pid"] = conn.execute(text("SELECT pg_backend_pid()" if engine.dialect.name == "postgresql"
                                           else "SELECT CONNECTION_ID()")).scalar()
            value = work(conn)
            conn.commit()
            return value

    worker, got = _in_thread(run)
    while "pid" not in pid and worker.is_alive():
        time.sleep(0.01)
    assert _waits_for_a_lock(engine, pid["pid"], worker), got
    return worker, got


def _three_old_two_kept(engine, Customer):
    """Three records before the returned cutoff, two after it."""
    write(engine, Customer, 3, prefix="old")
    bound = just_after_last_record(engine)
    write(engine, Customer, 2, prefix="kept")
    return bound


@servers
def test_a_first_seal_waits_for_a_prune_of_a_log_never_sealed(engine, Customer) -> None:
    """The prune has deleted old rows and not committed: a first seal must not seal them
    (they would be reported deleted once the prune commits); it waits, then seals what is left."""
    bound = _three_old_two_kept(engine, Customer)
    pruner = engine.connect()
    try:
        tx = pruner.begin()
        assert prune_audit_log(pruner, bound) == 3
        worker, got = _blocked_in_thread(engine, seal_audit_log)
        tx.commit()
    finally:
        pruner.close()
    worker.join(60)
    assert "error" not in got, got
    result = verify_audit_log(engine, head=got["value"])
    assert result.ok, result.problems
    assert (result.sealed_rows, result.unsealed_rows) == (2, 0)


@servers
def test_a_prune_waiting_for_a_first_seal_records_what_it_removes(engine, Customer) -> None:
    """The other order: the first seal holds its transaction open; the prune waits for it,
    then finds the log sealed and records the prune, so verification passes."""
    bound = _three_old_two_kept(engine, Customer)
    sealer = read_committed(engine.connect())
    try:
        tx = sealer.begin()
        seal_audit_log(sealer)
        worker, got = _blocked_in_thread(engine, lambda conn: prune_audit_log(conn, bound))
        tx.commit()
    finally:
        sealer.close()
    worker.join(60)
    assert got.get("value") == 3, got
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlaudit_seal WHERE kind = 'prune'")).scalar() == 1
    result = verify_audit_log(engine, head=seal_audit_log(engine))
    assert result.ok, result.problems
