"""History API benchmark: the investigator's reads on a log of 1,000,000 audit records.

Run from the repository root, in the dev environment (``pip install -e '.[bench]'``)::

    python bench/history.py            # full run: writes the "History API" section of docs/benchmarks.md
                                       # (bench/run.py runs it too, unless --no-history)
    python bench/history.py --quick    # 100,000 records, 2 rounds; prints the section only

For PostgreSQL and SQLite: ``sqlaudit_log`` is filled set-based with the same
generated records as ``bench/run.py`` (20 tables, 5,000 resources per table, 50
users, one year, three records per transaction), plus a live tracked table of
100,000 rows written with its triggers off (rows older than auditing). Then, in
interleaved rounds of calls (each on its own Session from a warm pool, timed
one by one with the garbage collector paused, median per call):

* one transaction's changes: ``get_changes(transaction_ids=tx)``;
* a user's last 100 changes across tables: ``get_changes(user_ids=u, limit=100)``;
* a user's last 10 transactions: ``get_transactions(user_ids=u, limit=10)``;
* one resource's state as of a date: ``get_resource_state(Item, id, at=day)``;

and ``get_table_state`` of the 100,000-row table as of mid-year (read to the
end, a few rounds). SQLAlchemy-Continuum's equivalents (the versions of one
transaction, a user's last 100 versions, a row's version as of a date) run on
the same spread of records in its own virtualenv (``bench/.venvs/continuum``);
``--no-peers`` skips it. PostgreSQL comes from SQLAUDIT_BENCH_POSTGRES_URL, MariaDB
(``--dialects mariadb``, a fresh database dropped afterwards) from
SQLAUDIT_BENCH_MARIADB_URL. A full run of some dialects keeps the other dialects'
results from docs/benchmarks-history.json, each with the run that measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import peers_setup  # noqa: E402

FULL = dict(audit_records=1_000_000, table_rows=100_000, rounds=5, calls=100, table_rounds=3)
QUICK = dict(audit_records=100_000, table_rows=10_000, rounds=2, calls=20, table_rounds=1)
TARGET_MS = 5.0
TABLE_TARGET_S = 2.0
#: the state of the live table is taken at this time (middle of the generated year)
MIDYEAR = datetime(2024, 7, 1, tzinfo=timezone.utc)
TITLES = {
    "tx": "one transaction's changes",
    "user_latest": "a user's last 100 changes, across tables",
    "user_transactions": "a user's last 10 transactions",
    "state": "one resource's state as of a date",
}
START, END = "<!-- history-benchmark:start -->", "<!-- history-benchmark:end -->"


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/history.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, printed only")
    p.add_argument("--dialects", default="postgresql,sqlite",
                   help="comma-separated, from postgresql, sqlite, mariadb")
    p.add_argument("--no-peers", action="store_true", help="skip SQLAlchemy-Continuum")
    p.add_argument("--output", help="Markdown file whose History API section is (re)written "
                                    "(default: docs/benchmarks.md for a full run)")
    return p.parse_args(argv)


def _setup(dialect: str, s: Dict[str, Any], pg_url: str, my_url: Optional[str]) -> Any:
    from sqlalchemy import text
    from sqlalchemy.orm import DeclarativeBase

    import ours
    from sqlaudit import track_table
    from sqlaudit.ddl import drop_audit_triggers, install_audit_triggers

    class Base(DeclarativeBase):
        pass

    Item = type("Item", (harness.ItemColumns, Base), {"__tablename__": "items_sqlaudit"})
    track_table(tracked_fields=list(harness.TRACKED))(Item)
    db = ours.Database(dialect, pg_url, my_url)
    engine = db.engine()
    Base.metadata.create_all(engine)
    drop_audit_triggers(engine, Item)  # the live rows predate auditing
    harness.run_sql(engine, harness.bulk_insert_sql(dialect, "items_sqlaudit"),
                    lo=1, hi=s["table_rows"])
    install_audit_triggers(engine, Item)
    harness.run_sql(engine, ours._generate_sql(dialect, "sqlaudit_log"), m=s["audit_records"])
    harness.settle(engine)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar()
    return db, engine, Item, count


def _queries(engine: Any, Item: type, s: Dict[str, Any]) -> Dict[str, Any]:
    from sqlalchemy.orm import sessionmaker

    from sqlaudit.retrieval import get_changes, get_resource_state, get_transactions

    Session = sessionmaker(bind=engine)
    transactions = max(1, s["audit_records"] // 3)

    def tx(k: int) -> int:
        with Session() as session:
            return len(get_changes(session, transaction_ids=(k * 7919) % transactions))

    def user_latest(k: int) -> int:
        with Session() as session:
            return len(get_changes(session, user_ids=harness.read_args(k)["user"], limit=100))

    def user_transactions(k: int) -> int:
        with Session() as session:
            return len(get_transactions(session, user_ids=harness.read_args(k)["user"], limit=10))

    def state(k: int) -> int:
        a = harness.read_args(k)
        with Session() as session:
            found = get_resource_state(Item, a["resource"], at=a["start"], session=session)
        return 0 if found is None else 1

    return {"tx": tx, "user_latest": user_latest, "user_transactions": user_transactions,
            "state": state}


def _table_state(engine: Any, Item: type, rounds: int) -> Dict[str, Any]:
    from sqlalchemy.orm import Session

    from sqlaudit.retrieval import get_table_state

    seconds, rows = [], 0
    for rnd in range(rounds + 1):
        with Session(engine) as session:
            start = time.perf_counter()
            rows = sum(1 for _ in get_table_state(Item, at=MIDYEAR, session=session))
            elapsed = time.perf_counter() - start
        if rnd:
            seconds.append(elapsed)
        harness.progress(f"  get_table_state {'warm-up' if not rnd else f'round {rnd}'}: "
                         f"{rows:,} rows in {elapsed:.2f} s")
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds),
            "rows": rows}


def _plans(engine: Any) -> Dict[str, str]:
    """EXPLAIN of the statements that serve the reads (PostgreSQL), to show the indexes."""
    from sqlalchemy import text

    plans = {}
    statements = {
        "tx": "SELECT * FROM sqlaudit_log WHERE transaction_id IN (4242) ORDER BY changed_at DESC, id DESC",
        "user_latest": ("SELECT * FROM sqlaudit_log WHERE substr(changed_by, 1, 200) IN ('user-7') "
                        "AND changed_by IN ('user-7') ORDER BY changed_at DESC, id DESC LIMIT 500"),
    }
    with engine.connect() as conn:
        for name, sql in statements.items():
            rows = conn.execute(text(f"EXPLAIN {sql}")).all()
            plans[name] = "\n".join(str(r[0]) if len(r) == 1 else " ".join(map(str, r)) for r in rows)
    return plans


def run_ours(dialect: str, s: Dict[str, Any], pg_url: str,
             my_url: Optional[str] = None) -> Dict[str, Any]:
    harness.progress(f"sqlaudit on {dialect}: filling {s['audit_records']:,} audit records")
    db, engine, Item, count = _setup(dialect, s, pg_url, my_url)
    try:
        queries = {"sqlaudit": _queries(engine, Item, s)}
        reads = harness.run_read_rounds(queries, rounds=s["rounds"], calls=s["calls"],
                                        label=f"sqlaudit {dialect:<10} ")
        return {"audit_rows": count, "read": harness.summarize(reads["samples"]),
                "records": reads["records"], "table_state": _table_state(engine, Item, s["table_rounds"]),
                "plans": _plans(engine)}
    finally:
        db.close()


def run_continuum(dialect: str, s: Dict[str, Any], pg_url: str,
                  my_url: Optional[str] = None) -> Dict[str, Any]:
    venvs = peers_setup.prepare_venvs(["continuum"])
    job = dict(s, read_rounds=s["rounds"], read_calls=s["calls"], rows=0, transactions=0,
               peer_rounds=0, peer_read_rounds=s["rounds"], peer_read_calls=s["calls"])
    return peers_setup.run_peer("continuum-history", dialect, venvs["continuum"], job, pg_url,
                                my_url)


# ------------------------------------------------------------------ report

def _ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def section(results: Dict[str, Any]) -> str:
    s = results["settings"]
    lines = [START, "## History API", "",
             f"Generated by `bench/history.py` (its docstring has the method). Command: "
             f"`{results['command']}`; machine: {results['machine']}; the run took "
             f"{results['elapsed'] / 60:.1f} min.", "",
             f"{s['audit_records']:,} generated audit records (plus a live tracked table of "
             f"{s['table_rows']:,} rows older than auditing); {s['rounds']} rounds × "
             f"{s['calls']} calls per read; median per call, min–max of the calls in small. "
             f"Target: each read < {TARGET_MS:g} ms, `get_table_state` of the table "
             f"< {TABLE_TARGET_S:g} s.", ""]
    for dialect, res in results["ours"].items():
        peer = results["peers"].get(dialect) or {"error": "not run (--no-peers)"}
        peer_read = peer.get("read") or {}
        lines += [f"### {dialect}", ""]
        own = res.get("run")
        if own and own.get("command") != results["command"]:
            lines += [f"Measured in a run of its own: `{own['command']}`; machine: "
                      f"{own['machine']}; the run took {own['elapsed'] / 60:.1f} min.", ""]
        lines += ["| read | sqlaudit | target | SQLAlchemy-Continuum equivalent |",
                  "|---|---:|---|---:|"]
        for key, title in TITLES.items():
            mine = res["read"]["sqlaudit"][key]
            theirs = (peer_read.get("continuum") or {}).get(key)
            other = (f"{_ms(theirs['median'])} <sub>{_ms(theirs['min'])}–{_ms(theirs['max'])}</sub>"
                     if theirs else (peer.get("error") or "no equivalent"))
            verdict = "met" if mine["median"] * 1000 < TARGET_MS else "not met"
            lines.append(f"| {title} | {_ms(mine['median'])} <sub>{_ms(mine['min'])}–"
                         f"{_ms(mine['max'])}</sub> | < {TARGET_MS:g} ms: {verdict} | {other} |")
        t = res["table_state"]
        verdict = "met" if t["median"] < TABLE_TARGET_S else "not met"
        lines.append(f"| `get_table_state`, {t['rows']:,} rows as of {MIDYEAR:%Y-%m-%d} | "
                     f"{t['median']:.2f} s <sub>{t['min']:.2f}–{t['max']:.2f} s</sub> | "
                     f"< {TABLE_TARGET_S:g} s: {verdict} | no equivalent (one query per row) |")
        lines.append("")
        if res.get("plans") and dialect == "postgresql":
            lines += ["Plans (the indexes that serve the reads):", ""]
            for name, plan in res["plans"].items():
                lines += [f"* {TITLES[name]}:", "", "  ```", *["  " + p for p in plan.splitlines()],
                          "  ```", ""]
    lines += ["Continuum's equivalents: the `ItemVersion` rows of one transaction; a user's "
              "last 100 versions (joined to its `transaction` table, newest first); the newest "
              "version of a row whose transaction was issued at or before the date. Continuum "
              "keeps one version table per model, so its reads see the tracked table's share "
              "of the records (1 in 20); sqlaudit's read the one shared log. Continuum's "
              "`version.revert()` is one ORM write per row, like `revert_transaction`; it is "
              "not timed here.", "", END]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    harness.write_section(path, text, START, END)


def collect(command: str, dialects: List[str], quick: bool, peers: bool,
            overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run every read on every dialect (and Continuum's when ``peers``); the results.
    ``overrides`` replaces sizes and rounds (``bench/run.py --sizes``)."""
    s = dict(QUICK if quick else FULL, **(overrides or {}))
    pg_url = os.environ.get("SQLAUDIT_BENCH_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    my_url = os.environ.get("SQLAUDIT_BENCH_MARIADB_URL") or None
    started = time.time()
    results: Dict[str, Any] = {"command": command, "settings": s, "ours": {}, "peers": {}}
    for dialect in dialects:
        results["ours"][dialect] = run_ours(dialect, s, pg_url, my_url)
        if peers:
            results["peers"][dialect] = run_continuum(dialect, s, pg_url, my_url)
    f = peers_setup.machine_facts()
    results["machine"] = (f"{f['cpu']}, {f['cores']} cores, {f['ram']} RAM; {f['os']}; Python "
                          f"{f['python']}, SQLAlchemy {f['sqlalchemy']}, {f['driver']}, "
                          f"SQLite {f['sqlite']}; PostgreSQL and MariaDB on the same machine")
    results["elapsed"] = time.time() - started
    run = {k: results[k] for k in ("command", "machine", "elapsed")}
    for res in results["ours"].values():
        res["run"] = run
    return results


def merge(saved: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """``new``'s dialects in place of ``saved``'s, the other dialects of ``saved`` kept
    (each with the run that measured it); the header names ``new``'s run."""
    merged = dict(new, ours=dict(saved.get("ours", {})), peers=dict(saved.get("peers", {})))
    for dialect, res in saved.get("ours", {}).items():
        res.setdefault("run", {k: saved[k] for k in ("command", "machine", "elapsed")})
    merged["ours"].update(new["ours"])
    merged["peers"].update(new["peers"])
    order = ("postgresql", "sqlite", "mariadb")
    merged["ours"] = {d: merged["ours"][d] for d in sorted(merged["ours"], key=order.index)}
    return merged


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    results = collect(harness.command_line("history.py", argv), dialects, args.quick,
                      not args.no_peers)
    text = section(results)
    out = Path(args.output) if args.output else (None if args.quick else ROOT / "docs" / "benchmarks.md")
    saved = out.parent / "benchmarks-history.json" if out is not None else None
    if saved is not None and saved.exists():
        results = merge(json.loads(saved.read_text()), results)
        text = section(results)
    if out is not None:
        write_section(out, text)
        (out.parent / "benchmarks-history.json").write_text(json.dumps(results, indent=1, default=str))
        harness.progress(f"wrote the History API section of {out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
