"""Growth benchmark: what writes, reads and a monthly prune cost as sqlaudit_log grows.

Run from the repository root, in the dev environment (``pip install -e '.[bench]'``)::

    python bench/growth.py                 # full run: PostgreSQL 1M, 10M, 50M records,
                                           # SQLite 1M, 10M; writes docs/growth.{json,png}
                                           # and the "Growth" section of docs/benchmarks.md
    python bench/growth.py --quick         # 20,000 and 100,000 records, small workloads:
                                           # bench/results/growth-quick/ (a smoke run)

For each database, layout and log size, a fresh database (PostgreSQL: a schema;
SQLite: a file) gets a tracked table and an untracked twin of 100,000 rows each,
and ``sqlaudit_log`` is filled set-based (``generate_series`` on PostgreSQL, a
recursive CTE on SQLite, in chunks, with the log's indexes dropped during the
fill and rebuilt after) with generated records: 20 tables, about 10 records per
resource (the number of resources grows with the log), 500 users, three records
per transaction, ``changed_at`` spread evenly over 2024. Then, in interleaved
rounds (every step runs on every log size in turn, the order rotating from
round to round, so a slow minute of a shared machine is shared by all sizes):

* a bulk UPDATE of every row of the tracked table (100,000 audit records), and
  of the untracked twin (the baseline);
* 2,000 ORM transactions, each loading one row, changing two tracked columns,
  committing (with sqlaudit's hooks passing the acting user), and the same on
  the twin;
* reads through the History API, one call at a time, median per round: one
  resource's history (``get_resource_changes``), a user's latest 100 changes
  (``get_changes(user_ids=..., limit=100)``), one transaction's changes
  (``get_changes(transaction_ids=...)``).

The records a round writes are removed again (untimed) so every size keeps its
size. Last, per size: ``prune_audit_log`` removes January, a month out of
twelve, from the log as filled (never sealed), timed next to the floor:
February removed by hand with no library (DELETE with the guard lifted, or
DETACH and DROP of its partition). Then, on logs up to ``--seal-max`` records,
the whole log is sealed once (``seal_audit_log``, timed and reported on its
own) and March is pruned from the sealed log (timed: it also verifies and
re-seals the seal intervals holding removed records). The partitioned log has
the monthly partitions of 2024, as a log maintained through that year has.

``--layouts plain,partitioned``: the partitioned layout (PostgreSQL only; on
SQLite it is reported as not applicable) is made with
``sqlaudit.ddl.create_audit_log(bind, partition_by="month")``. PostgreSQL comes from SQLAUDIT_BENCH_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402

FULL = dict(sizes={"postgresql": [1_000_000, 10_000_000, 50_000_000],
                   "sqlite": [1_000_000, 10_000_000]},
            table_rows=100_000, commits=2000, rounds=3, calls=50, chunk=1_000_000)
QUICK = dict(sizes={"postgresql": [20_000, 100_000], "sqlite": [20_000, 100_000]},
             table_rows=5_000, commits=50, rounds=1, calls=5, chunk=50_000)

TABLES, USERS, RECORDS_PER_RESOURCE = 20, 500, 10
TRACKED_TABLE, PLAIN_TABLE = "items_sqlaudit", "items_plain"
PRUNE_BEFORE = datetime(2024, 2, 1, tzinfo=timezone.utc)  # January out of 2024
FLOOR_MONTH = (datetime(2024, 2, 1, tzinfo=timezone.utc), datetime(2024, 3, 1, tzinfo=timezone.utc))
SEALED_PRUNE_BEFORE = datetime(2024, 4, 1, tzinfo=timezone.utc)  # then March, from a sealed log
WRITE_RATIO_TARGET, READ_TARGET_MS, PRUNE_TARGET_S = 1.2, 5.0, 60.0
READS = {
    "resource": "one resource's history",
    "user_latest": "a user's latest 100 changes",
    "transaction": "one transaction's changes",
}
WRITES = {
    "bulk_update": "bulk UPDATE, per row",
    "orm_commit": "ORM update + commit, per commit",
}
START, END = "<!-- growth-benchmark:start -->", "<!-- growth-benchmark:end -->"


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/growth.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and workloads (a smoke run)")
    p.add_argument("--dialects", default="postgresql,sqlite")
    p.add_argument("--layouts", default="plain",
                   help="plain,partitioned (partitioned needs sqlaudit.ddl.create_audit_log)")
    p.add_argument("--sizes", help="log sizes for every database, e.g. 1000000,10000000 "
                                   "(default: PostgreSQL 1M,10M,50M; SQLite 1M,10M)")
    p.add_argument("--pg-sizes", help="log sizes on PostgreSQL only")
    p.add_argument("--sqlite-sizes", help="log sizes on SQLite only")
    p.add_argument("--table-rows", type=int, help="rows of the tracked table (the bulk UPDATE)")
    p.add_argument("--commits", type=int, help="ORM transactions per round")
    p.add_argument("--rounds", type=int)
    p.add_argument("--calls", type=int, help="calls per read per round")
    p.add_argument("--no-prune", action="store_true", help="skip the seal and the prune of a month")
    p.add_argument("--prune-max", type=int, help="prune only the logs of at most this size")
    p.add_argument("--seal-max", type=int, default=10_000_000,
                   help="seal (and prune a sealed month from) only the logs of at most this size "
                        "(default 10M: a first seal costs ~15 s per million records)")
    p.add_argument("--output-dir", help="where growth.json, growth.png (and growth.md for "
                                        "--quick) go (default: docs/, or bench/results/growth-quick/)")
    p.add_argument("--render", metavar="JSON", help="only re-render the report (plot, section) "
                                                  "of a saved growth.json")
    p.add_argument("--markdown", help="Markdown file whose Growth section is (re)written "
                                      "(default: docs/benchmarks.md for a full run)")
    return p.parse_args(argv)


def _sizes(value: Optional[str]) -> Optional[List[int]]:
    return None if not value else sorted(int(v.replace("_", "")) for v in value.split(",") if v.strip())


def settings(args: argparse.Namespace) -> Dict[str, Any]:
    s = json.loads(json.dumps(QUICK if args.quick else FULL))
    every = _sizes(args.sizes)
    if every:
        s["sizes"] = {d: list(every) for d in s["sizes"]}
    for dialect, value in (("postgresql", args.pg_sizes), ("sqlite", args.sqlite_sizes)):
        if _sizes(value):
            s["sizes"][dialect] = _sizes(value)
    for key in ("table_rows", "commits", "rounds", "calls"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s["prune"] = not args.no_prune
    s["prune_max"] = args.prune_max
    s["seal_max"] = args.seal_max
    return s


# ------------------------------------------------------------------ the generated log

def generate_sql(dialect: str) -> str:
    """INSERT ... SELECT of log rows g = :lo..:hi out of :m (set-based)."""
    pg = dialect == "postgresql"
    table = f"CASE WHEN (g * 7) % {TABLES} = 0 THEN '{TRACKED_TABLE}' ELSE 'table_' || ((g * 7) % {TABLES}) END"
    resource = f"CAST(1 + ((g / {TABLES}) * 7919) % :resources AS TEXT)"
    op = "CASE g % 10 WHEN 0 THEN 'insert' WHEN 1 THEN 'delete' ELSE 'update' END"
    obj = "jsonb_build_object" if pg else "json_object"
    old = f"CASE WHEN g % 10 = 0 THEN NULL ELSE {obj}('name', 'item ' || g, 'qty', g % 100) END"
    new = f"CASE WHEN g % 10 = 1 THEN NULL ELSE {obj}('name', 'item ' || (g + 1), 'qty', g % 100 + 1) END"
    user = f"'user-' || (((g / 7) * 13) % {USERS})"
    cols = "table_name, resource_id, operation, changed_at, changed_by, transaction_id, old_data, new_data"
    values = f"{table}, {resource}, {op}, {harness.g_time(dialect, aware=True)}, {user}, g / 3, {old}, {new}"
    if pg:
        return (f"INSERT INTO sqlaudit_log ({cols}) SELECT {values} FROM "
                f"generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS s(g)")
    return (f"WITH RECURSIVE s(g) AS (SELECT CAST(:lo AS INTEGER) UNION ALL SELECT g + 1 FROM s "
            f"WHERE g < CAST(:hi AS INTEGER)) INSERT INTO sqlaudit_log ({cols}) SELECT {values} FROM s")


def resources_for(size: int) -> int:
    return max(1, size // (TABLES * RECORDS_PER_RESOURCE))


def read_args(k: int, size: int) -> Dict[str, Any]:
    return {"resource": 1 + (k * 613) % resources_for(size), "user": f"user-{(k * 7) % USERS}",
            "transaction": (k * 7919) % max(1, size // 3)}


class Setup:
    """One log of one size: a fresh database with the tracked table, its twin and the log."""

    def __init__(self, dialect: str, layout: str, size: int, s: Dict[str, Any], pg_url: str):
        import ours
        from sqlalchemy.orm import DeclarativeBase, sessionmaker

        from sqlaudit import track_table
        from sqlaudit.ddl import drop_audit_triggers, install_audit_triggers

        self.dialect, self.layout, self.size = dialect, layout, size
        self.pg = dialect == "postgresql"
        self.db = ours.Database(dialect, pg_url)
        self.engine = self.db.engine()

        class Base(DeclarativeBase):
            pass

        self.Item = type("Item", (harness.ItemColumns, Base), {"__tablename__": TRACKED_TABLE})
        track_table(tracked_fields=list(harness.TRACKED))(self.Item)
        self.Plain = type("PlainItem", (harness.ItemColumns, Base), {"__tablename__": PLAIN_TABLE})
        if layout == "partitioned":
            from sqlaudit.ddl import create_audit_log

            create_audit_log(self.engine, partition_by="month")
            self._partitions_of_2024()
        Base.metadata.create_all(self.engine)
        self.Session = sessionmaker(bind=self.engine)
        drop_audit_triggers(self.engine, self.Item)  # the live rows predate auditing
        for table in (TRACKED_TABLE, PLAIN_TABLE):
            harness.run_sql(self.engine, harness.bulk_insert_sql(dialect, table), lo=1, hi=s["table_rows"])
        install_audit_triggers(self.engine, self.Item)
        self.fill = self._fill(s["chunk"])
        self.top = int(harness.scalar(self.engine, "SELECT max(id) FROM sqlaudit_log") or 0)

    def _partitions_of_2024(self) -> None:
        """The monthly partitions a log maintained through 2024 has (maintain_audit_partitions
        creates them month by month; the generated records are dated 2024)."""
        from sqlaudit import _partitions

        with self.engine.begin() as conn:
            schema = _partitions._schema(conn)
            for month in range(1, 13):
                start = datetime(2024, month, 1, tzinfo=timezone.utc)
                _partitions._run(conn, _partitions.range_statements(
                    schema, start, _partitions.next_start(start, "month")))

    def _fill(self, chunk: int) -> Dict[str, Any]:
        from sqlalchemy import MetaData

        from sqlaudit.schema import audit_table

        label = f"{self.dialect} {self.layout} {self.size:,}"
        indexes = []
        if self.layout == "plain":  # maintained row by row, an index costs more than a build
            indexes = list(audit_table(MetaData()).indexes)
            with self.engine.begin() as conn:
                for index in indexes:
                    index.drop(conn)
        sql, started, done = generate_sql(self.dialect), time.perf_counter(), 0
        while done < self.size:
            hi = min(self.size, done + chunk)
            harness.run_sql(self.engine, sql, lo=done + 1, hi=hi, m=self.size,
                            resources=resources_for(self.size))
            done = hi
            elapsed = time.perf_counter() - started
            rate = done / elapsed
            harness.progress(f"  fill {label}: {done:,} rows, {rate:,.0f} rows/s, "
                             f"{(self.size - done) / rate / 60:.1f} min to go")
        inserted = time.perf_counter() - started
        build = time.perf_counter()
        with self.engine.begin() as conn:
            if self.pg:
                conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            for index in indexes:
                index.create(conn)
        built = time.perf_counter() - build
        settle = time.perf_counter()
        harness.settle(self.engine)
        settled = time.perf_counter() - settle
        harness.progress(f"  fill {label}: inserted in {inserted:.0f} s ({self.size / inserted:,.0f} "
                         f"rows/s), indexes built in {built:.0f} s, settled in {settled:.0f} s")
        return {"rows": self.size, "insert_s": inserted, "index_s": built, "settle_s": settled,
                "rows_per_s": self.size / inserted}

    # -- untimed upkeep

    def added(self) -> int:
        return int(harness.scalar(self.engine, "SELECT count(*) FROM sqlaudit_log WHERE id > :top",
                                  top=self.top) or 0)

    def remove_added(self) -> None:
        """Delete the records a round wrote (the owner's way round the guard), untimed."""
        from sqlalchemy import MetaData, text

        with self.engine.begin() as conn:
            if self.pg:
                conn.execute(text("SELECT set_config('sqlaudit.prune_before', 'infinity', true)"))
                conn.execute(text("DELETE FROM sqlaudit_log WHERE id > :top"), {"top": self.top})
            else:
                from sqlaudit.ddl import _protect

                conn.exec_driver_sql("DROP TRIGGER IF EXISTS main.sqlaudit_log_no_delete")
                conn.execute(text("DELETE FROM sqlaudit_log WHERE id > :top"), {"top": self.top})
                _protect(conn, MetaData())

    def close(self) -> None:
        self.db.close()

    # -- timed work

    def bulk_update(self, table: str) -> float:
        from sqlalchemy import text

        def run() -> None:
            with self.engine.begin() as conn:
                conn.execute(text(harness.bulk_update_sql(table)))

        return harness.timed(run)

    def orm_commits(self, audited: bool, commits: int, tag: str) -> float:
        from sqlaudit import SQLAuditConfig, clear_config, set_config
        from sqlaudit.hooks import register_hooks, unregister_hooks

        if audited:  # the hooks pass the acting user, as in an application
            set_config(SQLAuditConfig(get_user_id_callback=lambda: harness.ACTOR, time_zone="UTC"))
            register_hooks()
        try:
            cls = self.Item if audited else self.Plain
            return harness.timed(lambda: harness.oltp_update(self.Session, cls, range(1, commits + 1), tag))
        finally:
            unregister_hooks()
            clear_config()

    def reads(self) -> Dict[str, Callable[[int], int]]:
        from sqlaudit.retrieval import get_changes, get_resource_changes

        def resource(k: int) -> int:
            with self.Session() as session:
                return len(get_resource_changes(self.Item, session=session,
                                                filter_resource_ids=read_args(k, self.size)["resource"]))

        def user_latest(k: int) -> int:
            with self.Session() as session:
                return len(get_changes(session, user_ids=read_args(k, self.size)["user"], limit=100))

        def transaction(k: int) -> int:
            with self.Session() as session:
                return len(get_changes(session, transaction_ids=read_args(k, self.size)["transaction"]))

        return {"resource": resource, "user_latest": user_latest, "transaction": transaction}

    def prune(self, seal: bool) -> Dict[str, Any]:
        """January by prune_audit_log on the log as filled (never sealed); February by hand,
        the cheapest removal of a month (the floor); then, if ``seal``, the whole log sealed
        and March pruned from the sealed log."""
        from sqlaudit.ddl import prune_audit_log
        from sqlaudit.integrity import seal_audit_log, verify_audit_log

        label = f"{self.dialect} {self.layout} {self.size:,}"
        out: Dict[str, Any] = {}
        start = time.perf_counter()
        out["removed"] = prune_audit_log(self.engine, PRUNE_BEFORE)
        out["prune_s"] = time.perf_counter() - start
        harness.progress(f"  {label}: pruned January ({out['removed']:,} records) in {out['prune_s']:.1f} s")
        out["floor_removed"], out["floor_s"] = self._remove_by_hand(FLOOR_MONTH)
        harness.progress(f"  {label}: removed February by hand ({out['floor_removed']:,} records) "
                         f"in {out['floor_s']:.1f} s")
        if seal:
            start = time.perf_counter()
            seal_audit_log(self.engine)
            out["seal_s"] = time.perf_counter() - start
            harness.progress(f"  {label}: sealed the log in {out['seal_s']:.1f} s")
            start = time.perf_counter()
            out["sealed_removed"] = prune_audit_log(self.engine, SEALED_PRUNE_BEFORE)
            out["sealed_prune_s"] = time.perf_counter() - start
            harness.progress(f"  {label}: pruned March from the sealed log "
                             f"({out['sealed_removed']:,} records) in {out['sealed_prune_s']:.1f} s")
            out["verified"] = bool(verify_audit_log(self.engine).ok) if self.size <= 200_000 else None
        return out

    def _remove_by_hand(self, month: tuple) -> tuple:
        """What a DBA would do with no library: DELETE the month's rows with the guard lifted
        (plain log), or detach and drop its partition (partitioned). Timed, in one transaction."""
        from sqlalchemy import MetaData, text

        first, after = month
        started = time.perf_counter()
        with self.engine.begin() as conn:
            if self.layout == "partitioned":
                from sqlaudit import _partitions

                name = _partitions.partition_name(first)
                removed = int(conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar() or 0)
                conn.exec_driver_sql(f'ALTER TABLE sqlaudit_log DETACH PARTITION "{name}"')
                conn.exec_driver_sql(f'DROP TABLE "{name}"')
            elif self.pg:
                conn.execute(text("SELECT set_config('sqlaudit.prune_before', :b, true)"),
                             {"b": after.isoformat()})
                removed = conn.execute(text("DELETE FROM sqlaudit_log WHERE changed_at >= :a "
                                            "AND changed_at < :b"), {"a": first, "b": after}).rowcount
            else:
                from sqlaudit.ddl import _protect

                conn.exec_driver_sql("DROP TRIGGER IF EXISTS main.sqlaudit_log_no_delete")
                removed = conn.execute(text("DELETE FROM sqlaudit_log WHERE changed_at >= :a "
                                            "AND changed_at < :b"),
                                       {"a": first.replace(tzinfo=None), "b": after.replace(tzinfo=None)}
                                       ).rowcount
                _protect(conn, MetaData())
        return int(removed), time.perf_counter() - started


# ------------------------------------------------------------------ rounds

def _layout_missing(dialect: str, layout: str) -> Optional[str]:
    if layout == "plain":
        return None
    if layout != "partitioned":
        return f"unknown layout {layout!r} (plain or partitioned)"
    if dialect != "postgresql":
        return f"not applicable: on {dialect} sqlaudit_log is one table"
    return None


def run_layout(dialect: str, layout: str, s: Dict[str, Any], pg_url: str) -> Dict[str, Any]:
    sizes = s["sizes"][dialect]
    setups: List[Setup] = []
    out: Dict[str, Any] = {"available": True, "sizes": {}}
    try:
        for size in sizes:
            harness.progress(f"{dialect} {layout}: filling a log of {size:,} records")
            setups.append(Setup(dialect, layout, size, s, pg_url))
        samples: List[Dict[str, Any]] = []
        capture: Dict[int, Dict[str, int]] = {}
        for rnd in range(s["rounds"] + 1):  # round 0 warms up, untimed
            shift = rnd % len(setups)
            order = setups[shift:] + setups[:shift]
            tag = f"r{rnd}"

            def record(setup: Setup, workload: str, system: str, seconds: float, n: int) -> None:
                if rnd:
                    samples.append({"size": setup.size, "workload": workload, "system": system,
                                    "seconds": seconds, "n": n, "round": rnd})

            for setup in order:
                record(setup, "bulk_update", "sqlaudit", setup.bulk_update(TRACKED_TABLE), s["table_rows"])
                capture.setdefault(setup.size, {})["bulk_update"] = setup.added()
                setup.remove_added()
                record(setup, "bulk_update", "baseline", setup.bulk_update(PLAIN_TABLE), s["table_rows"])
            for setup in order:
                record(setup, "orm_commit", "sqlaudit",
                       setup.orm_commits(True, s["commits"], tag), s["commits"])
                capture[setup.size]["orm_commit"] = setup.added()
                setup.remove_added()
                record(setup, "orm_commit", "baseline",
                       setup.orm_commits(False, s["commits"], tag), s["commits"])
            for name in READS:
                for setup in order:
                    call = setup.reads()[name]
                    times, found = [], []
                    for k in range(s["calls"]):
                        start = time.perf_counter()
                        found.append(call(k + rnd * s["calls"]))
                        times.append(time.perf_counter() - start)
                    record(setup, name, "sqlaudit", statistics.median(times), 1)
                    capture[setup.size][f"{name}_records"] = round(statistics.mean(found))
            if rnd:
                harness.progress(f"{dialect} {layout}: round {rnd}/{s['rounds']} done")
        for setup in setups:
            entry: Dict[str, Any] = {"fill": setup.fill, "capture": capture[setup.size]}
            for (workload, system), values in _group(samples, setup.size).items():
                entry.setdefault(workload, {})[system] = values
            out["sizes"][str(setup.size)] = entry
        if s["prune"]:
            for setup in setups:
                if s.get("prune_max") is None or setup.size <= s["prune_max"]:
                    out["sizes"][str(setup.size)]["prune"] = setup.prune(
                        seal=s.get("seal_max") is None or setup.size <= s["seal_max"])
    finally:
        for setup in setups:
            setup.close()
    return out


def _group(samples: List[Dict[str, Any]], size: int) -> Dict[tuple, Dict[str, float]]:
    groups: Dict[tuple, List[float]] = {}
    for sample in samples:
        if sample["size"] == size:
            groups.setdefault((sample["workload"], sample["system"]), []).append(
                sample["seconds"] / sample["n"])
    return {key: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for key, v in groups.items()}


def collect(command: str, dialects: List[str], layouts: List[str], s: Dict[str, Any],
            partial: Optional[Path] = None) -> Dict[str, Any]:
    import peers_setup

    pg_url = os.environ.get("SQLAUDIT_BENCH_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    started = time.time()
    results: Dict[str, Any] = {"command": command, "settings": s, "runs": {}}
    for dialect in dialects:
        for layout in layouts:
            missing = _layout_missing(dialect, layout)
            if missing:
                harness.progress(f"{dialect} {layout}: {missing}")
                results["runs"].setdefault(dialect, {})[layout] = {"available": False, "reason": missing}
                continue
            results["runs"].setdefault(dialect, {})[layout] = run_layout(dialect, layout, s, pg_url)
            if partial is not None:  # a later failure does not lose what is measured
                partial.write_text(json.dumps(results, indent=1, default=str))
    f = peers_setup.machine_facts()
    results["machine"] = (f"{f['cpu']}, {f['cores']} cores, {f['ram']} RAM; {f['os']}; Python "
                          f"{f['python']}, SQLAlchemy {f['sqlalchemy']}, {f['driver']}, "
                          f"SQLite {f['sqlite']}; PostgreSQL on the same machine")
    results["elapsed"] = time.time() - started
    return results


# ------------------------------------------------------------------ report

def _size(n: int) -> str:
    return f"{n / 1_000_000:g}M" if n >= 1_000_000 else f"{n:,}"


def _cost(workload: str, seconds: float) -> str:
    if workload == "bulk_update":
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1000:.2f} ms"


def section(results: Dict[str, Any], png: Optional[str]) -> str:
    s = results["settings"]
    lines = [START, "## Growth", "",
             f"Generated by `bench/growth.py` (its docstring has the method). Command: "
             f"`{results['command']}`; machine: {results.get('machine', 'not recorded')}; the run took "
             f"{results.get('elapsed', float('nan')) / 60:.1f} min.", "",
             f"What writes, reads and a monthly prune cost as `sqlaudit_log` grows. Writes: a bulk "
             f"UPDATE of {s['table_rows']:,} tracked rows (cost per row) and {s['commits']:,} ORM "
             f"transactions (cost per commit), each next to the same work on an untracked twin "
             f"table (baseline); reads: {s['calls']} calls per round, median of the round "
             f"medians. {s['rounds']} interleaved rounds; min–max of the rounds in small. Targets: "
             f"at the largest log the per-row write cost at most {WRITE_RATIO_TARGET:g}× that at "
             f"the smallest; one resource's history < {READ_TARGET_MS:g} ms; pruning a month out "
             f"of 12 in seconds. Pruning: `prune_audit_log` removes January from the log as "
             f"filled (never sealed: a DELETE on the plain log, a partition dropped on the "
             f"partitioned one), next to the floor, February removed by hand with no library "
             f"(a DELETE with the guard lifted; a DETACH and DROP of its partition). Then, on "
             f"logs up to {_size(s.get('seal_max') or 0)} records, the whole log is sealed (the "
             f"first seal, its own row) and March pruned from the sealed log: that prune also "
             f"verifies the chain of seal entries, verifies and re-seals the rows of the seal "
             f"intervals holding removed records and carries the other entries over without "
             f"reading their rows (`sqlaudit.integrity.prune_sealed`).", ""]
    if png:
        lines += [f"![cost against log size]({png})", ""]
    for dialect, layouts in results["runs"].items():
        for layout, run in layouts.items():
            lines += [f"### {dialect}, {layout} log", ""]
            if not run.get("available"):
                lines += [f"Not measured: {run['reason']}.", ""]
                continue
            sizes = sorted(run["sizes"], key=int)
            head = "| log size | " + " | ".join(_size(int(n)) for n in sizes) + " |"
            lines += [head, "|---|" + "---:|" * len(sizes)]
            fill = [run["sizes"][n]["fill"] for n in sizes]
            lines.append("| fill (insert + index build) | " + " | ".join(
                f"{f['insert_s'] + f['index_s']:.0f} s <sub>{f['rows_per_s']:,.0f} rows/s</sub>"
                for f in fill) + " |")
            for workload, title in WRITES.items():
                for system, label in (("sqlaudit", title), ("baseline", f"{title}, untracked twin")):
                    cells = []
                    for n in sizes:
                        v = run["sizes"][n][workload][system]
                        cells.append(f"{_cost(workload, v['median'])} <sub>{_cost(workload, v['min'])}–"
                                     f"{_cost(workload, v['max'])}</sub>")
                    lines.append(f"| {label} | " + " | ".join(cells) + " |")
            for workload, title in READS.items():
                cells = []
                for n in sizes:
                    v = run["sizes"][n][workload]["sqlaudit"]
                    found = run["sizes"][n]["capture"][f"{workload}_records"]
                    cells.append(f"{v['median'] * 1000:.2f} ms <sub>{v['min'] * 1000:.2f}–"
                                 f"{v['max'] * 1000:.2f}, ~{found} changes</sub>")
                lines.append(f"| {title} | " + " | ".join(cells) + " |")
            if any("prune" in run["sizes"][n] for n in sizes):
                pruned = [run["sizes"][n].get("prune") for n in sizes]

                def row(title: str, seconds: str, count: str) -> None:
                    lines.append(f"| {title} | " + " | ".join(
                        f"{p[seconds]:.1f} s <sub>{p[count]:,} records</sub>"
                        if p and seconds in p else "not run" for p in pruned) + " |")

                row("prune January (1 month of 12), log never sealed", "prune_s", "removed")
                row("floor: February removed by hand", "floor_s", "floor_removed")
                lines.append("| seal the whole log (first seal) | " + " | ".join(
                    f"{p['seal_s']:.1f} s" if p and "seal_s" in p else "not run" for p in pruned) + " |")
                row("prune March from the sealed log", "sealed_prune_s", "sealed_removed")
            lines.append("")
            lines += verdicts(run, sizes) + [""]
    lines.append(END)
    return "\n".join(lines)


def verdicts(run: Dict[str, Any], sizes: List[str]) -> List[str]:
    small, large = run["sizes"][sizes[0]], run["sizes"][sizes[-1]]
    out = []
    for workload, title in WRITES.items():
        ratio = large[workload]["sqlaudit"]["median"] / small[workload]["sqlaudit"]["median"]
        verdict = "met" if ratio <= WRITE_RATIO_TARGET else "not met"
        out.append(f"* {title} at {_size(int(sizes[-1]))} records: {ratio:.2f}× the cost at "
                   f"{_size(int(sizes[0]))} (target ≤ {WRITE_RATIO_TARGET:g}×: {verdict}).")
    prune = large.get("prune")
    if prune:
        verdict = "met" if prune["prune_s"] < PRUNE_TARGET_S else "not met"
        out.append(f"* Pruning a month at {_size(int(sizes[-1]))} records: {prune['prune_s']:.1f} s "
                   f"(floor, a month removed by hand: {prune['floor_s']:.1f} s; target: seconds, "
                   f"< {PRUNE_TARGET_S:g} s: {verdict}).")
    worst = max(run["sizes"][n]["resource"]["sqlaudit"]["median"] for n in sizes) * 1000
    out.append(f"* One resource's history: at most {worst:.2f} ms over the sizes "
               f"(target < {READ_TARGET_MS:g} ms: {'met' if worst < READ_TARGET_MS else 'not met'}).")
    return out


def plot(results: Dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        harness.progress("matplotlib is not installed: no plot")
        return False
    panels = [("bulk_update", "bulk UPDATE: µs per row", 1e6), ("orm_commit", "ORM commit: ms", 1e3),
              ("resource", "one resource's history: ms", 1e3),
              ("user_latest", "a user's latest 100 changes: ms", 1e3),
              ("transaction", "one transaction's changes: ms", 1e3), ("prune", "prune a month: s", 1)]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, (key, title, scale) in zip(axes.flat, panels):
        for dialect, layouts in results["runs"].items():
            for layout, run in layouts.items():
                if not run.get("available"):
                    continue
                sizes = sorted(run["sizes"], key=int)
                xs, ys, base = [], [], []
                for n in sizes:
                    entry = run["sizes"][n]
                    if key == "prune":
                        if "prune" not in entry:
                            continue
                        ys.append(entry["prune"]["prune_s"])
                    else:
                        ys.append(entry[key]["sqlaudit"]["median"] * scale)
                        if "baseline" in entry[key]:
                            base.append(entry[key]["baseline"]["median"] * scale)
                    xs.append(int(n))
                if not xs:
                    continue
                line = ax.plot(xs, ys, marker="o", label=f"{dialect} {layout}")[0]
                if len(base) == len(xs):
                    ax.plot(xs, base, linestyle="--", color=line.get_color(), alpha=0.6,
                            label=f"{dialect} untracked twin")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("records in sqlaudit_log")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        if key == "resource":
            ax.axhline(READ_TARGET_MS, color="grey", linestyle=":", label="target")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_section(path: Path, text: str) -> None:
    harness.write_section(path, text, START, END)


def public_command(command: str) -> str:
    """The command as a report shows it: without where its files went (no paths)."""
    return re.sub(r" --(output-dir|markdown|render)(=| )\S+", "", command)


def publish(results: Dict[str, Any], out: Path, markdown: Optional[Path]) -> None:
    """growth.json, growth.png and the Growth section (in ``markdown``, else growth.md)."""
    results["command"] = public_command(results["command"])
    (out / "growth.json").write_text(json.dumps(results, indent=1, default=str))
    png = "growth.png" if plot(results, out / "growth.png") else None
    text = section(results, png)
    if markdown is not None:
        write_section(markdown, text)
        harness.progress(f"wrote the Growth section of {markdown}")
    else:
        (out / "growth.md").write_text(text + "\n")
    harness.progress(f"wrote {out / 'growth.json'}" + (f" and {out / png}" if png else ""))


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    if args.render:  # re-render the report of a saved run
        out = Path(args.output_dir) if args.output_dir else ROOT / "docs"
        out.mkdir(parents=True, exist_ok=True)
        results = json.loads(Path(args.render).read_text())
        publish(results, out, Path(args.markdown) if args.markdown else ROOT / "docs" / "benchmarks.md")
        return 0
    s = settings(args)
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    layouts = [v.strip() for v in args.layouts.split(",") if v.strip()]
    out = Path(args.output_dir) if args.output_dir else (
        ROOT / "bench" / "results" / "growth-quick" if args.quick else ROOT / "docs")
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "growth.partial.tmp"
    results = collect(harness.command_line("growth.py", argv), dialects, layouts, s, partial)
    partial.unlink(missing_ok=True)
    markdown = Path(args.markdown) if args.markdown else (
        None if args.quick or args.output_dir else ROOT / "docs" / "benchmarks.md")
    publish(results, out, markdown)
    harness.progress(f"the run took {results['elapsed'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
