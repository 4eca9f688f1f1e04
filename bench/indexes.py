"""What the audit table's read indexes cost on bulk writes and buy on reads (PostgreSQL).

    python bench/indexes.py [--rows N] [--rounds N] [--audit-records N]
                            [--read-rounds N] [--read-calls N] [--output FILE]

``sqlaudit_log`` carries three B-tree indexes that serve retrieval,
``(table_name, resource_id, changed_at)``, ``(substr(changed_by, 1, 200),
changed_at)`` and ``(transaction_id)``, and a BRIN index on ``changed_at``. postgresql-audit keeps no index for its
history queries and writes the 100,000-row INSERT and DELETE of the main
benchmark faster than sqlaudit; this script shows, in one process, how much
of that is the read indexes and what dropping one would cost the readers.

In interleaved rounds (order rotating, tables emptied and a CHECKPOINT
between rounds, every statement on a fresh connection, as in ``run.py``) it
times the set-based INSERT ... SELECT, UPDATE and DELETE of ``run.py`` on

* ``baseline``: no auditing;
* six sqlaudit variants (``VARIANTS``), each in a schema of its own, with
  ``register_hooks()`` and an acting user, that differ only in the indexes of
  ``sqlaudit_log``: as shipped, without the user index, without the resource
  index, without the transaction index, without all three, and with a hash
  index on ``resource_id`` instead of the three (the BRIN index and the
  primary key stay in all);
* ``limit_resource_index``: ``run.py``'s limit (the statement plus one hand-written
  ``INSERT ... SELECT`` of minimal audit rows) into a log table whose only read
  index is the resource B-tree;
* ``postgresql-audit``, when ``bench/.venvs/postgresql-audit`` exists (``run.py``
  creates it): set up by its own code, in a database of its own (its SQL
  expects schema ``public``). Its triggers run in the database, so the timed
  statements are the same raw SQL from this process; as in ``run.py``, no
  ``transaction`` row exists for them and its rows carry no actor.

Then it fills each variant's ``sqlaudit_log`` with the same generated records
(``--audit-records``, spread as in ``run.py``) and times
``get_resource_changes()`` for one resource's history, one user's day and
one user's latest 20 changes (``READS``).
It prints a Markdown report (and writes it to ``--output``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from sqlalchemy import Index, create_engine, text
from sqlalchemy.orm import DeclarativeBase, sessionmaker

import harness
import ours
import peers_setup
from harness import ACTOR, TRACKED, ItemColumns, System, run_sql, scalar

HERE = Path(__file__).resolve().parent
PGA_PYTHON = HERE / ".venvs" / "postgresql-audit" / "bin" / "python"
TABLE = "items_sqlaudit"  # the table name the generated audit records use for our table
RESOURCE_INDEX = "ix_sqlaudit_log_resource"
USER_INDEX = "ix_sqlaudit_log_user"
TRANSACTION_INDEX = "ix_sqlaudit_log_transaction"

HASH_INDEX = "ix_bench_resource_hash"

#: variant -> (title, indexes of sqlaudit_log to drop, indexes to create instead)
VARIANTS: Dict[str, "tuple[str, tuple[str, ...], tuple[str, ...]]"] = {
    "shipped": ("sqlaudit as shipped", (), ()),
    "no_user_index": ("without the user index", (USER_INDEX,), ()),
    "no_resource_index": ("without the resource index", (RESOURCE_INDEX,), ()),
    "no_transaction_index": ("without the transaction index", (TRANSACTION_INDEX,), ()),
    "no_read_indexes": ("without the three read indexes",
                        (RESOURCE_INDEX, USER_INDEX, TRANSACTION_INDEX), ()),
    "hash_resource_only": (
        "a hash index on resource_id instead of the three read indexes",
        (RESOURCE_INDEX, USER_INDEX, TRANSACTION_INDEX),
        (f"CREATE INDEX {HASH_INDEX} ON sqlaudit_log USING hash (resource_id)",)),
}
WORKLOADS = ("bulk_insert", "bulk_update", "bulk_delete")
READS = {"read_resource": "history of one resource",
         "read_user_day": "one user's day",
         "read_user_latest": "one user's latest 20 changes (no date range)"}

#: run by postgresql-audit's own Python: its tables, functions and triggers on "items"
_PGA_SETUP = """
import sys
sys.path.insert(0, sys.argv[2])
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase
import harness
from postgresql_audit import versioning_manager

engine = sa.create_engine(sys.argv[1])

class Base(DeclarativeBase):
    pass

versioning_manager.init(Base)
type("Item", (harness.ItemColumns, Base), {"__tablename__": "items", "__versioned__": {}})
sa.orm.configure_mappers()
Base.metadata.create_all(engine, tables=[versioning_manager.transaction_cls.__table__,
                                         versioning_manager.activity_cls.__table__])
Base.metadata.create_all(engine)
import importlib.metadata
print(importlib.metadata.version("postgresql-audit"))
"""


def _fresh_schema(url: str, build: Callable[[Any], type],
                  after: Optional[Callable[[Any], None]] = None) -> "tuple[ours.Database, type]":
    """A new schema with the tables ``build(Base)`` declares (it returns the model),
    created, ``after(engine)`` run on them, and autovacuum off for all of them."""
    db = ours.Database("postgresql", url)

    class Base(DeclarativeBase):
        pass

    model = build(Base)
    setup = db.engine()
    Base.metadata.create_all(setup)
    if after is not None:
        after(setup)
    for table in Base.metadata.tables:
        run_sql(setup, f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    setup.dispose()
    return db, model


class _OwnSchema(ours.Plain):
    """A system whose schema is dropped when it closes."""

    def close(self) -> None:
        super().close()
        self.db.close()


class _Variant(_OwnSchema, ours.Audited):
    """sqlaudit in a schema of its own, with some of sqlaudit_log's indexes replaced."""

    def __init__(self, name: str, drop: Sequence[str], create: Sequence[str], url: str):
        from sqlaudit.decorators import track_table

        def build(Base: Any) -> type:
            return track_table(tracked_fields=list(TRACKED), table_label="Item")(
                type("Item", (ItemColumns, Base), {"__tablename__": TABLE}))

        def log_indexes(setup: Any) -> List[str]:
            with setup.connect() as conn:
                return sorted(conn.execute(text(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND tablename = 'sqlaudit_log'")).scalars())

        def replace_indexes(setup: Any) -> None:
            shipped = log_indexes(setup)
            for index in drop:
                run_sql(setup, f"DROP INDEX {index}")
            for sql in create:
                run_sql(setup, sql)
            self.indexes = log_indexes(setup)
            if (not set(drop) <= set(shipped) or set(drop) & set(self.indexes)
                    or len(self.indexes) != len(shipped) - len(drop) + len(create)):
                raise SystemExit(f"{name}: unexpected indexes on sqlaudit_log: {self.indexes}")

        db, self.model = _fresh_schema(url, build, replace_indexes)
        ours.Audited.__init__(self, name, db, self.model, actor=True)


class _LimitResourceIndex(_OwnSchema, ours.Limit):
    """run.py's limit (the statement plus one INSERT ... SELECT of minimal audit rows)
    writing into a log whose only read index is the resource B-tree: what minimal
    rows cost with just the index that serves one resource's history."""

    log = "bench_limit_resource_log"

    def __init__(self, url: str):
        def build(Base: Any) -> type:
            log = ours._log_table(Base.metadata, self.log, "limitres", indexes=False)
            Index("ix_bench_limitres_resource", log.c.table_name, log.c.resource_id,
                  log.c.changed_at)
            return type("ItemLimit", (ItemColumns, Base), {"__tablename__": "items_limit"})

        db, model = _fresh_schema(url, build)
        ours.Limit.__init__(self, "limit_resource_index", db, model)


class _Baseline(_OwnSchema):
    def __init__(self, url: str):
        db, model = _fresh_schema(url, lambda Base: type(
            "ItemBaseline", (ItemColumns, Base), {"__tablename__": "items_baseline"}))
        super().__init__("baseline", db, model)


class _PostgresqlAudit(harness.PlainSystem):
    """postgresql-audit's triggers on "items" in a database of its own."""

    def __init__(self, url: str):
        own, self._drop = peers_setup._fresh_database(url)
        try:
            setup = subprocess.run([str(PGA_PYTHON), "-c", _PGA_SETUP, own, str(HERE)],
                                   check=True, capture_output=True, text=True, timeout=300)
        except subprocess.CalledProcessError as exc:
            self._drop()
            raise SystemExit(f"postgresql-audit setup failed:\n{exc.stderr}") from exc
        engine = create_engine(own)

        class Base(DeclarativeBase):
            pass

        model = type("Item", (ItemColumns, Base), {"__tablename__": "items"})
        super().__init__("postgresql-audit", engine, model, "postgresql")
        for table in ("items", "activity", "transaction"):
            run_sql(engine, f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        self.version = setup.stdout.strip().splitlines()[-1]

    def count_audit(self) -> "tuple[int, int]":
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(t.actor_id) FROM activity AS a "
                                    "LEFT JOIN transaction AS t ON t.id = a.transaction_id")).one()
        return int(row[0]), int(row[1])

    def reset(self) -> None:
        run_sql(self.engine, "TRUNCATE items, activity, transaction")

    def close(self) -> None:
        self.engine.dispose()
        self._drop()


# ------------------------------------------------------------------ measuring

def run_writes(systems: List[System], rows: int, rounds: int,
               checkpoint: Callable[[], None]) -> Dict[str, Dict[str, List[float]]]:
    """Seconds per system and workload over ``rounds`` timed rounds (after a warm-up
    round at a tenth of the size). Exits unless every audited system recorded
    every changed row, and sqlaudit's variants and the limit the actor on each."""
    times: Dict[str, Dict[str, List[float]]] = {s.name: {w: [] for w in WORKLOADS}
                                                for s in systems}
    for rnd in range(rounds + 1):
        n = rows if rnd else max(rows // 10, 10)
        for s in systems:
            s.reset()
        checkpoint()
        actions = {"bulk_insert": lambda s: s.bulk_insert(1, n),
                   "bulk_update": lambda s: s.bulk_update(),
                   "bulk_delete": lambda s: s.bulk_delete()}
        for step, workload in enumerate(WORKLOADS):
            line = []
            for s in harness.rotate(systems, rnd + step):
                s.fresh_connection()
                s.before(workload)
                before = s.count_audit()
                seconds = harness.timed(lambda: actions[workload](s))
                after = s.count_audit()
                s.after(workload)
                recorded, with_actor = after[0] - before[0], after[1] - before[1]
                if s.name != "baseline" and recorded != n:
                    raise SystemExit(f"{s.name} recorded {recorded} of {n} rows on {workload}")
                if s.name not in ("baseline", "postgresql-audit") and with_actor != n:
                    raise SystemExit(f"{s.name} recorded the actor on {with_actor} of {n} rows "
                                     f"on {workload}")
                if rnd:
                    times[s.name][workload].append(seconds)
                line.append(f"{s.name} {seconds * 1000:.0f}ms")
            what = "warm-up" if rnd == 0 else f"round {rnd}/{rounds}"
            harness.progress(f"{what} {workload:11s} " + ", ".join(line))
    return times


def run_reads(variants: List[_Variant], audit_records: int, rounds: int,
              calls: int) -> Dict[str, Dict[str, List[float]]]:
    """Per-call seconds of get_resource_changes() for each variant's three queries
    (READS), on the same generated records."""
    from sqlaudit.retrieval import get_resource_changes

    queries: Dict[str, Dict[str, Callable[[int], int]]] = {}
    for v in variants:
        harness.progress(f"{v.name}: generating {audit_records:,} audit records")
        ours.clear_sqlaudit_log(v.engine, True)
        run_sql(v.engine, ours._generate_sql(True, "sqlaudit_log"), m=audit_records)
        harness.settle(v.engine)
        Session = sessionmaker(bind=v.engine)

        def resource(k: int, model: type = v.model, Session: Any = Session) -> int:
            a = harness.read_args(k)
            with Session() as s:
                return len(get_resource_changes(model, session=s,
                                                filter_resource_ids=a["resource"]))

        def user_day(k: int, model: type = v.model, Session: Any = Session) -> int:
            a = harness.read_args(k)
            with Session() as s:
                return len(get_resource_changes(model, session=s, filter_user_ids=a["user"],
                                                filter_date_range=(a["start"], a["end"])))

        def user_latest(k: int, model: type = v.model, Session: Any = Session) -> int:
            with Session() as s:
                return len(get_resource_changes(model, session=s, limit=20,
                                                filter_user_ids=harness.read_args(k)["user"]))

        queries[v.name] = {"read_resource": resource, "read_user_day": user_day,
                           "read_user_latest": user_latest}
    result = harness.run_read_rounds(queries, rounds=rounds, calls=calls)
    per: Dict[str, Dict[str, List[float]]] = {v.name: {} for v in variants}
    for sample in result["samples"]:
        per.setdefault(sample["system"], {}).setdefault(sample["workload"], []).append(
            sample["seconds"])
    return per


# ------------------------------------------------------------------ report

def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.2f} ms"


def report(writes: Dict[str, Dict[str, List[float]]], reads: Dict[str, Dict[str, List[float]]],
           facts: Dict[str, Any]) -> str:
    titles = {"baseline": "no auditing (baseline)", "postgresql-audit":
              f"postgresql-audit {facts.get('pga_version', '')} (no read index, no actor)",
              "limit_resource_index": "the limit with the resource index only"}
    titles.update({k: v[0] for k, v in VARIANTS.items()})
    med = {s: {w: statistics.median(x) for w, x in per.items()} for s, per in writes.items()}
    lines = [
        "# What the read indexes cost and buy",
        "",
        "Generated by `bench/indexes.py` (see its docstring for the method); every number "
        "below was measured in the run described here.",
        "",
        f"* **Date:** {facts['date']}; the run took {facts['minutes']:.1f} min.",
        f"* **Command:** `{facts['command']}` (from the repository root).",
        f"* **Machine:** {facts['machine']}; PostgreSQL {facts['server_version']}.",
        f"* **Measured:** {str(facts['measured']).split(' from ')[0]} (this repository).",
        f"* **Sizes:** {facts['rows']:,} rows per statement, timed rounds: {facts['rounds']} "
        f"(median shown, min–max small); {facts['audit_records']:,} audit records for the "
        f"reads, {facts['read_rounds']} × {facts['read_calls']} calls per query.",
        "",
        "Indexes of `sqlaudit_log` per variant (checked in the database before timing): "
        + "; ".join(f"{VARIANTS[k][0]}: {', '.join(v)}" for k, v in facts["indexes"].items())
        + ".",
        "",
        "## Bulk writes (one statement, commit included)",
        "",
        "| system | " + " | ".join(harness.WORKLOAD_TITLES[w] for w in WORKLOADS) + " |",
        "|---|" + "---:|" * len(WORKLOADS),
    ]
    shipped = med["shipped"]
    for system, per in writes.items():
        cells = []
        for w in WORKLOADS:
            x = per[w]
            cell = f"{_fmt(statistics.median(x))} <sub>{_fmt(min(x))}–{_fmt(max(x))}</sub>"
            if system not in ("shipped", "baseline"):
                cell += f" ({med[system][w] / shipped[w]:.2f}× shipped)"
            cells.append(cell)
        lines.append(f"| {titles[system]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Reads with {facts['audit_records']:,} records present "
        "(`get_resource_changes`, per call)",
        "",
        "The records are spread as in `run.py`: 20 tables, 5,000 resources per table, 50 "
        "users, one year, so a day holds 1/365 of them. A day's query without the user "
        "index reads that whole day (through the BRIN index); a query without a date range "
        "reads the whole table.",
        "",
        "| sqlaudit variant | " + " | ".join(READS.values()) + " |",
        "|---|" + "---:|" * len(READS),
    ]
    for system, per in reads.items():
        cells = [f"{_fmt(statistics.median(per[w]))} <sub>{_fmt(min(per[w]))}–"
                 f"{_fmt(max(per[w]))}</sub>" for w in READS]
        lines.append(f"| {titles[system]} | " + " | ".join(cells) + " |")
    lines += _verdicts(med, reads, titles)
    lines += ["", "A hash index keeps all entries of one key in one bucket and its overflow "
              "pages; PostgreSQL's documentation recommends hash indexes for unique or nearly "
              "unique data (https://www.postgresql.org/docs/15/hash-intro.html), while an audit "
              "table's resource_id repeats with every change of a row, so a frequently changed "
              "row makes its bucket long. The generated records hold about 200 entries per "
              "resource_id value (20 tables share the ids).",
              "", "The reads of postgresql-audit (which filter its activity table by the key "
              "inside the JSON, as it has no retrieval API) are in docs/benchmarks.md.", ""]
    return "\n".join(lines)


def _verdicts(med: Dict[str, Dict[str, float]], reads: Dict[str, Dict[str, List[float]]],
              titles: Dict[str, str]) -> List[str]:
    """For each sqlaudit variant: which bulk statements it wrote faster than
    postgresql-audit (medians of this run), and which histories it read in < 5 ms."""
    pga = med.get("postgresql-audit")
    lines = ["", "## Reading it", "",
             "Per variant, from the medians above: the bulk statements it wrote faster than "
             "postgresql-audit, and the reads it served in under 5 ms (the target for "
             "one resource's history).", ""]
    for name in med:
        if name in ("baseline", "postgresql-audit"):
            continue
        faster = ("postgresql-audit not measured" if pga is None else
                  "faster than postgresql-audit on "
                  + (", ".join(harness.WORKLOAD_TITLES[w] for w in WORKLOADS
                               if med[name][w] < pga[w]) or "none"))
        fast_reads = ("not measured" if name not in reads else
                      ", ".join(title for w, title in READS.items()
                                if statistics.median(reads[name][w]) < 0.005) or "none")
        lines.append(f"* {titles[name]}: {faster}; "
                     f"reads under 5 ms: {fast_reads}.")
    return lines


# ------------------------------------------------------------------ main

def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/indexes.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--audit-records", type=int, default=1_000_000)
    p.add_argument("--read-rounds", type=int, default=3)
    p.add_argument("--read-calls", type=int, default=100)
    p.add_argument("--postgres-url", default=os.environ.get("SQLAUDIT_BENCH_POSTGRES_URL")
                   or ours.DEFAULT_POSTGRES_URL, help="default: $SQLAUDIT_BENCH_POSTGRES_URL or "
                   "%(default)s")
    p.add_argument("--no-peer", action="store_true", help="leave postgresql-audit out")
    p.add_argument("--output", help="also write the report to this file")
    args = p.parse_args(argv)

    from sqlaudit.config import SQLAuditConfig, set_config
    from sqlaudit.hooks import unregister_hooks

    started = harness.time.perf_counter()
    set_config(SQLAuditConfig(get_user_id_callback=lambda: ACTOR, time_zone="UTC"))
    unregister_hooks()
    systems: List[System] = []
    facts: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": harness.command_line("indexes.py",
                                        argv if argv is not None else sys.argv[1:]),
        "machine": _machine(),
        "measured": _measured(),
        "rows": args.rows, "rounds": args.rounds, "audit_records": args.audit_records,
        "read_rounds": args.read_rounds, "read_calls": args.read_calls,
    }
    try:
        systems.append(_Baseline(args.postgres_url))
        variants = [_Variant(name, drop, create, args.postgres_url)
                    for name, (_, drop, create) in VARIANTS.items()]
        systems += variants
        facts["indexes"] = {v.name: v.indexes for v in variants}
        systems.append(_LimitResourceIndex(args.postgres_url))
        if not args.no_peer:
            if not PGA_PYTHON.exists():
                raise SystemExit(f"{PGA_PYTHON} is missing: run `python bench/run.py --quick "
                                 f"--only-peers --peers postgresql-audit` once to create it, "
                                 f"or pass --no-peer")
            pga = _PostgresqlAudit(args.postgres_url)
            facts["pga_version"] = pga.version
            systems.append(pga)
        facts["server_version"] = scalar(systems[0].engine, "SHOW server_version")

        def checkpoint() -> None:
            with systems[0].engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("CHECKPOINT"))

        writes = run_writes(systems, args.rows, args.rounds, checkpoint)
        for s in systems:
            s.reset()
        reads = run_reads(variants, args.audit_records, args.read_rounds, args.read_calls)
    finally:
        for s in systems:
            s.close()
        unregister_hooks()
    facts["minutes"] = (harness.time.perf_counter() - started) / 60
    text_ = report(writes, reads, facts)
    print(text_)
    if args.output:
        Path(args.output).write_text(text_)
    return 0


def _measured() -> str:
    import importlib.metadata

    import sqlaudit

    return (f"sqlaudit {importlib.metadata.version('sqlaudit')} from "
            f"{Path(sqlaudit.__file__).resolve().parent.parent}")


def _machine() -> str:
    m = peers_setup.machine_facts()
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram']} RAM; Python "
            f"{platform.python_version()}")


if __name__ == "__main__":
    raise SystemExit(main())
