"""What every measured system shares: the table, the workloads, the rounds, the clock.

Imported by the in-process benchmark of sqlaudit (``ours.py``) and by every peer
worker (``peers/*.py``), which runs under another virtualenv's Python. So this
module depends on SQLAlchemy and the standard library only, and keeps to
syntax every supported Python understands.

A *system* is one way of running the workloads (no auditing, sqlaudit, the
limit, a peer library...). It implements the methods of :class:`System`; the
harness runs all systems of one process through the same interleaved rounds.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shlex
import statistics
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Dict, List, Optional, Sequence

from sqlalchemy import Boolean, DateTime, Integer, Numeric, Text, text
from sqlalchemy.orm import Mapped, mapped_column

#: The five tracked columns, one of each type the issue asks for.
TRACKED = ("name", "qty", "price", "updated_at", "active")
#: The two tracked columns every UPDATE workload changes.
UPDATED = ("name", "qty")
BASE_TIME = datetime(2024, 1, 1)
ACTOR = "user-42"

WRITE_WORKLOADS = ("bulk_insert", "bulk_update", "bulk_delete", "oltp_update", "oltp_insert")
READ_WORKLOADS = ("read_resource", "read_user_day")
WORKLOAD_TITLES = {
    "bulk_insert": "INSERT ... SELECT",
    "bulk_update": "UPDATE (2 columns)",
    "bulk_delete": "DELETE",
    "oltp_update": "ORM update + commit",
    "oltp_insert": "ORM insert + commit",
    "read_resource": "history of one resource",
    "read_user_day": "one user's day",
}


class ItemColumns:
    """Declarative mixin: the benchmark table (key + 5 tracked columns of mixed types)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)
    qty: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    active: Mapped[bool] = mapped_column(Boolean)


# ------------------------------------------------------------------ statements

#: MariaDB's Sequence engine: a virtual table of the integers 1..N (its recursive CTEs
#: stop at max_recursive_iterations, 1000 by default); ranges on it are index scans
MARIADB_SEQ = "seq_1_to_1000000000"


def is_mariadb(dialect: str) -> bool:
    return dialect in ("mariadb", "mysql")


def bulk_insert_sql(dialect: str, table: str) -> str:
    """INSERT ... SELECT of rows :lo..:hi (generated in the database)."""
    cols = "id, name, qty, price, updated_at, active"
    if is_mariadb(dialect):
        return (
            f"INSERT INTO {table} ({cols}) SELECT seq, CONCAT('item ', seq), seq % 1000, "
            f"(seq % 100000) / 100.0, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, "
            f"seq % 2 = 0 FROM {MARIADB_SEQ} WHERE seq BETWEEN :lo AND :hi"
        )
    if dialect == "postgresql":
        return (
            f"INSERT INTO {table} ({cols}) SELECT g, 'item ' || g, g % 1000, "
            f"(g % 100000) / 100.0, timestamp '2024-01-01' + g * interval '1 second', "
            f"g % 2 = 0 FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g"
        )
    return (
        f"WITH RECURSIVE s(g) AS (SELECT CAST(:lo AS INTEGER) UNION ALL SELECT g + 1 FROM s WHERE g < CAST(:hi AS INTEGER)) "
        f"INSERT INTO {table} ({cols}) SELECT g, 'item ' || g, g % 1000, "
        f"(g % 100000) / 100.0, strftime('%Y-%m-%d %H:%M:%S.000000', '2024-01-01', "
        f"'+' || g || ' seconds'), g % 2 = 0 FROM s"
    )


#: SET list of the bulk UPDATE (changes two tracked columns of every row).
UPDATE_SET = {"qty": "qty + 1", "name": "name || '*'"}
#: the same on MariaDB, where || is OR
UPDATE_SET_MARIADB = {"qty": "qty + 1", "name": "CONCAT(name, '*')"}


def bulk_update_sql(table: str, dialect: str = "") -> str:
    sets = UPDATE_SET_MARIADB if is_mariadb(dialect) else UPDATE_SET
    return f"UPDATE {table} SET " + ", ".join(f"{c} = {e}" for c, e in sets.items())


def bulk_delete_sql(table: str) -> str:
    return f"DELETE FROM {table}"


def new_item(cls: type, i: int) -> Any:
    """The ORM object the OLTP insert workload adds (same values as the bulk insert)."""
    return cls(id=i, name=f"item {i}", qty=i % 1000, price=Decimal(i % 100000) / 100,
               updated_at=BASE_TIME + timedelta(seconds=i), active=i % 2 == 0)


def oltp_update(session_factory: Callable[[], Any], cls: type, ids: Sequence[int], tag: str,
                before_change: Optional[Callable[..., None]] = None,
                deadline: Optional[float] = None) -> int:
    """One transaction per id: load the row, change two tracked columns, commit.
    Stops early after ``deadline`` (a perf_counter value); returns the count done."""
    for done, i in enumerate(ids):
        if deadline is not None and time.perf_counter() > deadline:
            return done
        with session_factory() as session:
            obj = session.get(cls, i)
            name, qty = f"item {i} {tag}", obj.qty + 1
            if before_change is not None:
                before_change(session, i, name, qty)
            obj.name = name
            obj.qty = qty
            session.commit()
    return len(ids)


def oltp_insert(session_factory: Callable[[], Any], cls: type, ids: Sequence[int],
                after_flush: Optional[Callable[..., None]] = None,
                deadline: Optional[float] = None) -> int:
    """One transaction per id: add one new row, commit. Stops early after ``deadline``."""
    for done, i in enumerate(ids):
        if deadline is not None and time.perf_counter() > deadline:
            return done
        with session_factory() as session:
            session.add(new_item(cls, i))
            if after_flush is not None:
                session.flush()
                after_flush(session, i)
            session.commit()
    return len(ids)


# ------------------------------------------------------------------ retrieval data

#: the spread of the generated audit records (row g of m)
TABLES, RESOURCES_PER_TABLE, USERS = 20, 5000, 50
G_TABLE = f"((g * 7) % {TABLES})"                       # 0 is the benchmark's tracked table
G_RESOURCE = f"(1 + ((g / {TABLES}) * 7919) % {RESOURCES_PER_TABLE})"
G_USER = f"('user-' || (((g / 7) * 13) % {USERS}))"


def g_exprs(dialect: str) -> "tuple[str, str, str]":
    """(G_TABLE, G_RESOURCE, G_USER) for ``dialect`` (MariaDB: DIV for the integer
    division, CONCAT for ||)."""
    if not is_mariadb(dialect):
        return G_TABLE, G_RESOURCE, G_USER
    return (G_TABLE, G_RESOURCE.replace(" / ", " DIV ").replace("/", " DIV "),
            f"CONCAT('user-', (((g DIV 7) * 13) % {USERS}))")


def concat(dialect: str, *parts: str) -> str:
    """SQL concatenation of ``parts`` (|| or, on MariaDB, CONCAT)."""
    return f"CONCAT({', '.join(parts)})" if is_mariadb(dialect) else " || ".join(parts)


def series(dialect: str) -> "tuple[str, str]":
    """(prefix, source) so that ``{prefix} INSERT ... SELECT ... FROM {source}`` runs
    over g = 1..:m on either database."""
    if is_mariadb(dialect):
        return "", f"(SELECT seq AS g FROM {MARIADB_SEQ} WHERE seq <= :m) AS s"
    if dialect == "postgresql":
        return "", "generate_series(1, CAST(:m AS integer)) AS s(g)"
    return ("WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :m)", "s")


def g_time(dialect: str, aware: bool = False) -> str:
    """Row g's time: one year from 2024-01-01 UTC, evenly spread over the m rows."""
    if dialect == "postgresql":
        start = "timestamptz '2024-01-01 00:00:00+00'" if aware else "timestamp '2024-01-01'"
        return f"({start} + (g - 1) * (interval '365 days' / :m))"
    if is_mariadb(dialect):
        # milliseconds: g is a BIGINT UNSIGNED there, whose product with the year's
        # microseconds would overflow at a million rows
        return ("(TIMESTAMP'2024-01-01 00:00:00' + INTERVAL ((g - 1) * 31536000000 DIV :m) * 1000 "
                "MICROSECOND)")
    return ("(strftime('%Y-%m-%d %H:%M:%f', '2024-01-01', '+' || printf('%.3f', (g - 1) * "
            "31536000.0 / :m) || ' seconds') || '000')")


def read_args(k: int) -> Dict[str, Any]:
    """Retrieval call k's resource id, user and day (spread over the generated data)."""
    from datetime import timezone
    day = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=(k * 37) % 365)
    return {"resource": 1 + (k * 613) % RESOURCES_PER_TABLE, "user": f"user-{(k * 7) % USERS}",
            "start": day, "end": day + timedelta(days=1) - timedelta(microseconds=1)}


# ------------------------------------------------------------------ systems

class System:
    """One way of running the write workloads. Subclasses fill in the methods.

    ``count_audit()`` returns ``(rows, rows_with_actor)`` of the system's audit
    table (``(0, 0)`` when it has none); the harness compares the counts before and
    after each timed workload to tell whether the system captured it.
    """

    name = "system"

    def bulk_insert(self, lo: int, hi: int) -> None: raise NotImplementedError
    def bulk_update(self) -> None: raise NotImplementedError
    def bulk_delete(self) -> None: raise NotImplementedError
    #: seconds of timed ORM work a workload may take before it stops early (None: never);
    #: run_write_rounds spreads it over the workload's blocks through ``budget_left``
    budget: Optional[float] = None
    budget_left: Optional[float] = None

    def oltp_update(self, ids: Sequence[int], tag: str) -> None: raise NotImplementedError
    def oltp_insert(self, ids: Sequence[int]) -> None: raise NotImplementedError
    def delete_above(self, n: int) -> None: raise NotImplementedError
    def count_audit(self) -> "tuple[int, int]": return (0, 0)
    def reset(self) -> None: raise NotImplementedError
    def fresh_connection(self) -> None: """Untimed, before each timed workload."""
    def before(self, workload: str) -> None: """Untimed; e.g. switch hooks on."""
    def after(self, workload: str) -> None: """Untimed; e.g. switch hooks off."""
    def close(self) -> None: pass


def settle_mariadb(engine: Any) -> None:
    """MariaDB: wait until InnoDB has purged what earlier statements left behind (the old
    row versions of an UPDATE or DELETE, the delete-marked index entries of a TRUNCATE),
    so that no timed statement shares the server with a previous one's purge. Needs the
    global privilege to set innodb_max_purge_lag_wait (root has it); without it, skipped."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SET GLOBAL innodb_max_purge_lag_wait = 0"))
    except Exception:  # noqa: BLE001 - a benchmark aid, not a requirement
        pass


class PlainSystem(System):
    """Runs the workloads on one table with plain SQL statements and ORM sessions."""

    def __init__(self, name: str, engine: Any, cls: type, dialect: str):
        from sqlalchemy.orm import sessionmaker

        self.name, self.engine, self.cls, self.dialect = name, engine, cls, dialect
        self.table = cls.__tablename__
        self.Session = sessionmaker(bind=engine)
        self.pg = dialect == "postgresql"
        self.my = is_mariadb(dialect)

    def bulk_insert(self, lo: int, hi: int) -> None:
        run_sql(self.engine, bulk_insert_sql(self.dialect, self.table), lo=lo, hi=hi)

    def bulk_update(self) -> None:
        run_sql(self.engine, bulk_update_sql(self.table, self.dialect))

    def bulk_delete(self) -> None:
        run_sql(self.engine, bulk_delete_sql(self.table))

    def _deadline(self) -> Optional[float]:
        return None if self.budget_left is None else time.perf_counter() + self.budget_left

    def oltp_update(self, ids: Sequence[int], tag: str) -> int:
        return oltp_update(self.Session, self.cls, ids, tag, deadline=self._deadline())

    def oltp_insert(self, ids: Sequence[int]) -> int:
        return oltp_insert(self.Session, self.cls, ids, deadline=self._deadline())

    def delete_above(self, n: int) -> None:
        run_sql(self.engine, f"DELETE FROM {self.table} WHERE id > :n", n=n)

    def fresh_connection(self) -> None:
        """PostgreSQL: start each workload on a new connection (opened here, untimed), so
        no plan a backend cached for the previous workload (e.g. a trigger's plan for
        100,000 rows) carries over; ours.cached_plan_effect() measures that case apart."""
        if self.pg:
            self.engine.dispose()
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        if self.my:
            settle_mariadb(self.engine)

    def reset(self) -> None:
        run_sql(self.engine, (f"TRUNCATE {self.table}" if self.pg or self.my
                              else f"DELETE FROM {self.table}"))

    def close(self) -> None:
        self.engine.dispose()


def run_sql(engine: Any, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def settle(engine: Any) -> None:
    """After generating audit data, before timing reads: the same state for every
    system. PostgreSQL: VACUUM ANALYZE (statistics, visibility map, hint bits) and a
    CHECKPOINT, so no reader competes with the flush of the freshly written pages;
    SQLite: ANALYZE; MariaDB: ANALYZE TABLE of every table (InnoDB statistics)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
    elif is_mariadb(engine.dialect.name):
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(text("SHOW TABLES"))]
            if tables:
                conn.execute(text("ANALYZE TABLE " + ", ".join(f"`{t}`" for t in tables))).all()
    else:
        run_sql(engine, "ANALYZE")


def scalar(engine: Any, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


# ------------------------------------------------------------------ clock and rounds

_T0 = time.perf_counter()


def command_line(script: str, argv: Sequence[str]) -> str:
    """How a benchmark command was run, for its report; with PYTHONPATH when it is
    set (a run on a snapshot of another commit says so)."""
    command = f"python bench/{script}" + ("" if not argv else " " + shlex.join(argv))
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    return command


def write_section(path: Any, text: str, start: str, end: str) -> None:
    """Replace the part of the Markdown file ``path`` from marker ``start`` to ``end``
    with ``text`` (which carries both markers), or append it when it is not there."""
    import re
    from pathlib import Path

    path = Path(path)
    doc = path.read_text() if path.exists() else ""
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: text, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc)


def progress(message: str) -> None:
    """One progress line on stderr (the parent process forwards workers' lines)."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


#: blocks each ORM workload is split into (see run_write_rounds)
OLTP_BLOCKS = 10


def _blocks(ids: Sequence[int], count: int) -> List[Sequence[int]]:
    """``ids`` in ``count`` consecutive blocks of (nearly) equal size, none empty."""
    count = max(1, min(count, len(ids)))
    bounds = [len(ids) * k // count for k in range(count + 1)]
    return [ids[a:b] for a, b in zip(bounds, bounds[1:])]


def rotate(items: Sequence[Any], k: int) -> List[Any]:
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def run_write_rounds(systems: Sequence[System], *, rows: int, transactions: int, rounds: int,
                     label: str = "", warmup: bool = True,
                     between_rounds: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Time every write workload on every system, interleaved, ``rounds`` times.

    Each round runs the chain INSERT ... SELECT -> UPDATE -> ORM updates -> ORM
    inserts -> DELETE; within each step every system runs once, in an order
    that rotates from round to round. The ORM steps run in ``OLTP_BLOCKS``
    blocks of transactions, every system one block in turn (the order rotating
    from block to block), and a system's time is the sum over its blocks, so
    a slow minute of the machine is shared by all systems instead of landing on
    one. A system with a ``budget`` stops once its summed time passes it.
    Between rounds every system resets (empty tables, empty audit tables),
    untimed. A smaller warm-up round comes first and is discarded.

    Returns ``{"samples": [...], "capture": {...}}`` where each sample is
    ``{"system", "workload", "round", "seconds", "units"}`` and capture maps
    ``system -> workload -> {"expected", "audit_rows", "with_actor"}`` (minimum
    over the timed rounds).
    """
    samples: List[Dict[str, Any]] = []
    capture: Dict[str, Dict[str, Dict[str, int]]] = {s.name: {} for s in systems}
    plan = [(0, max(rows // 10, 10), max(transactions // 10, 5))] if warmup else []
    plan += [(r, rows, transactions) for r in range(1, rounds + 1)]
    for rnd, n, t in plan:
        what = "warm-up" if rnd == 0 else f"round {rnd}/{rounds}"
        rng = random.Random(1000 + rnd)
        update_ids = rng.sample(range(1, n + 1), min(t, n))
        insert_ids = list(range(n + 1, n + t + 1))
        steps: List[tuple] = [
            ("bulk_insert", n, lambda s, _: s.bulk_insert(1, n)),
            ("bulk_update", n, lambda s, _: s.bulk_update()),
            ("oltp_update", len(update_ids), lambda s, ids: s.oltp_update(ids, f"r{rnd}")),
            ("oltp_insert", len(insert_ids), lambda s, ids: s.oltp_insert(ids)),
            ("bulk_delete", n, lambda s, _: s.bulk_delete()),
        ]
        for step, (workload, units, action) in enumerate(steps):
            if workload == "bulk_delete":
                for s in systems:
                    s.delete_above(n)  # untimed: leave exactly n rows for the DELETE
            # ORM workloads run in blocks, every system one block in turn, so a slow
            # stretch of the machine (disk, neighbours) falls on all of them alike
            blocks = _blocks(update_ids if workload == "oltp_update" else insert_ids,
                             OLTP_BLOCKS) if workload.startswith("oltp") else [None]
            seconds: Dict[str, float] = {s.name: 0.0 for s in systems}
            done: Dict[str, int] = {s.name: 0 for s in systems}
            audit: Dict[str, List[int]] = {s.name: [0, 0] for s in systems}
            for b, block in enumerate(blocks):
                for s in rotate(systems, rnd + step + b):
                    if b == 0:
                        s.fresh_connection()
                    if s.budget is not None:
                        s.budget_left = s.budget - seconds[s.name]
                        if s.budget_left <= 0:
                            continue  # out of budget: later blocks are skipped
                    s.before(workload)
                    before = s.count_audit()
                    box: List[Any] = []
                    seconds[s.name] += timed(lambda: box.append(action(s, block)))
                    after = s.count_audit()
                    s.after(workload)
                    size = units if block is None else len(block)
                    done[s.name] += box[0] if isinstance(box[0], int) else size
                    audit[s.name][0] += after[0] - before[0]
                    audit[s.name][1] += after[1] - before[1]
            times = [f"{name} {sec:.3f}s" + ("" if done[name] == units else
                                            f" ({done[name]} of {units}, budget)")
                     for name, sec in seconds.items()]
            progress(f"{label}{what} {workload:12s} " + ", ".join(times))
            if rnd == 0:
                continue
            for s in systems:
                # a run stopped by its time budget is scaled to the full count (and flagged)
                samples.append({"system": s.name, "workload": workload, "round": rnd,
                                "seconds": seconds[s.name] * units / max(done[s.name], 1),
                                "units": units, "done": done[s.name]})
                got = {"expected": done[s.name], "audit_rows": audit[s.name][0],
                       "with_actor": audit[s.name][1]}
                prev = capture[s.name].get(workload)
                if prev is None or got["audit_rows"] < prev["audit_rows"]:
                    capture[s.name][workload] = got
        for s in systems:
            s.reset()
        if between_rounds is not None:
            between_rounds()
    return {"samples": samples, "capture": capture}


#: seconds of timed calls after which a retrieval round stops, and the calls it makes first
READ_ROUND_BUDGET = 5.0
READ_MIN_CALLS = 5


def run_read_rounds(queries: Dict[str, Dict[str, Callable[[int], int]]], *, rounds: int,
                    calls: int, label: str = "") -> Dict[str, Any]:
    """Time read queries, interleaved: ``queries[system][workload](k)`` runs call k
    (different resource/user each call) and returns the number of records read.
    One warm-up pass, then ``rounds`` rounds of ``calls`` calls per system and workload;
    a round stops early once its calls took READ_ROUND_BUDGET seconds (after at least
    READ_MIN_CALLS calls), so a system that needs a second per call does not hold the
    run up for hours while a fast one still gets every call.
    """
    samples: List[Dict[str, Any]] = []
    counts: Dict[str, Dict[str, List[int]]] = {}
    systems = list(queries)
    workloads = sorted({w for q in queries.values() for w in q})
    for rnd in range(0, rounds + 1):
        for step, workload in enumerate(workloads):
            line = []
            for system in rotate(systems, rnd + step):
                fn = queries[system].get(workload)
                if fn is None:
                    continue
                per_call = []
                gc.collect()
                gc.disable()  # as timeit does: no collection pause inside a timed call
                try:
                    for k in range(min(calls, 3) if rnd == 0 else calls):  # short warm-up
                        start = time.perf_counter()
                        n = fn(rnd * calls + k)
                        per_call.append(time.perf_counter() - start)
                        counts.setdefault(system, {}).setdefault(workload, []).append(n)
                        if len(per_call) >= READ_MIN_CALLS and sum(per_call) > READ_ROUND_BUDGET:
                            break
                finally:
                    gc.enable()
                if rnd > 0:
                    samples += [{"system": system, "workload": workload, "round": rnd,
                                 "seconds": sec, "units": 1} for sec in per_call]
                line.append(f"{system} {statistics.median(per_call) * 1000:.2f}ms")
            what = "warm-up" if rnd == 0 else f"round {rnd}/{rounds}"
            progress(f"{label}{what} {workload:13s} median/call " + ", ".join(line))
    records = {sys_: {w: {"mean": statistics.mean(v), "min": min(v), "max": max(v)}
                      for w, v in per.items()} for sys_, per in counts.items()}
    return {"samples": samples, "records": records}


def summarize(samples: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """system -> workload -> {median, min, max, n} in seconds."""
    groups: Dict[tuple, List[float]] = {}
    for s in samples:
        groups.setdefault((s["system"], s["workload"]), []).append(s["seconds"])
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    for (system, workload), values in groups.items():
        out.setdefault(system, {})[workload] = {
            "median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values),
        }
    return out


def emit(result: Dict[str, Any]) -> None:
    """Workers print their result as one JSON line on stdout."""
    print(json.dumps(result, default=str), flush=True)
