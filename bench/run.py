"""sqlaudit benchmark: write overhead against no auditing, against the limit, and against peers.

Run from the repository root, in the dev environment (``pip install -e '.[bench]'``)::

    python bench/run.py            # full run: writes docs/benchmarks.md and docs/benchmarks.png
    python bench/run.py --quick    # small sizes, 2 rounds; writes to bench/results/quick/

PostgreSQL comes from SQLAUDIT_BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test); sqlaudit gets a fresh schema
there, each peer a fresh database, all dropped afterwards. MariaDB (``--dialects
mariadb``) comes from SQLAUDIT_BENCH_MARIADB_URL (default
mysql+pymysql://root@127.0.0.1:3306/test); sqlaudit and each peer get a fresh
database there, dropped afterwards. SQLite uses files in a temporary directory. Peers are installed from PyPI into bench/.venvs/NAME on
first use (``--no-peers`` skips them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import peers_setup  # noqa: E402

FULL = dict(rows=100_000, transactions=2_000, audit_records=1_000_000, rounds=3,
            read_rounds=5, read_calls=100, peer_rounds=2, peer_read_rounds=5, peer_read_calls=100,
            peer_oltp_budget=20.0)
QUICK = dict(rows=10_000, transactions=200, audit_records=100_000, rounds=2,
             read_rounds=2, read_calls=20, peer_rounds=1, peer_read_rounds=2, peer_read_calls=20,
             peer_oltp_budget=10.0)


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes and fewer rounds, to iterate (output to bench/results/quick)")
    p.add_argument("--sizes", metavar="ROWS,TX,AUDIT",
                   help="rows of the set-based workloads, ORM transactions, audit records "
                        "for retrieval, e.g. 100000,2000,1000000")
    p.add_argument("--rounds", type=int, help="timed rounds of the write workloads (sqlaudit)")
    p.add_argument("--peer-rounds", type=int, help="timed rounds in each peer worker")
    p.add_argument("--read-rounds", type=int, help="timed rounds of the retrieval queries")
    p.add_argument("--read-calls", type=int, help="query calls per round and system")
    p.add_argument("--peer-read-rounds", type=int, help="timed retrieval rounds in each peer worker")
    p.add_argument("--peer-read-calls", type=int, help="query calls per round in each peer worker")
    p.add_argument("--peer-oltp-budget", type=float,
                   help="seconds after which a peer's ORM workload stops; its time is then "
                        "scaled from the transactions done, and flagged (default 20)")
    p.add_argument("--dialects", default="postgresql,sqlite",
                   help="comma-separated, from postgresql, sqlite, mariadb")
    p.add_argument("--merge-into", metavar="JSON",
                   help="merge this run's dialects into a saved benchmarks.json (replacing "
                        "those dialects' results, keeping the others with their own run "
                        "facts) and re-render the report next to it")
    p.add_argument("--peers", default="all",
                   help=f"'all', 'none' or comma-separated from: {', '.join(peers_setup.PEERS)}")
    p.add_argument("--no-peers", action="store_true", help="same as --peers none")
    p.add_argument("--only-peers", action="store_true",
                   help="skip the in-process sqlaudit part (to iterate on a peer worker)")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip the sqlaudit-without-actor variant and the profiles")
    p.add_argument("--no-history", action="store_true",
                   help="skip the History API reads (bench/history.py)")
    p.add_argument("--output-dir", help="where benchmarks.md/.png/.json go "
                                        "(default: docs/ for a full run, bench/results/quick/ with --quick)")
    return p.parse_args(argv)


def settings(args: argparse.Namespace) -> Dict[str, Any]:
    s = dict(QUICK if args.quick else FULL)
    if args.sizes:
        rows, tx, audit = (int(x.replace("_", "")) for x in args.sizes.split(","))
        s.update(rows=rows, transactions=tx, audit_records=audit)
    for key in ("rounds", "peer_rounds", "read_rounds", "read_calls", "peer_read_rounds",
                "peer_read_calls", "peer_oltp_budget"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    return s


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    s = settings(args)
    dialects = [d.strip() for d in args.dialects.split(",") if d.strip()]
    for d in dialects:
        if d not in ("postgresql", "sqlite", "mariadb"):
            raise SystemExit(f"unknown dialect {d!r}; known: postgresql, sqlite, mariadb")
    peer_names = [] if args.no_peers or args.peers == "none" else (
        [p for p, spec in peers_setup.PEERS.items() if not spec.get("history")]
        if args.peers == "all" else
        [p.strip() for p in args.peers.split(",") if p.strip()])
    for name in peer_names:
        if name not in peers_setup.PEERS:
            raise SystemExit(f"unknown peer {name!r}; known: {', '.join(peers_setup.PEERS)}")
    merge_into = Path(args.merge_into) if args.merge_into else None
    out_dir = Path(args.output_dir) if args.output_dir else (
        merge_into.parent if merge_into else
        ROOT / "bench" / "results" / "quick" if args.quick else ROOT / "docs")
    pg_url = os.environ.get("SQLAUDIT_BENCH_POSTGRES_URL", "") or None
    my_url = os.environ.get("SQLAUDIT_BENCH_MARIADB_URL", "") or None
    command = harness.command_line("run.py", argv)
    started = time.time()
    harness.progress(f"{command}: sizes {s['rows']:,} rows / {s['transactions']:,} transactions / "
                     f"{s['audit_records']:,} audit records; {s['rounds']} rounds; dialects "
                     f"{', '.join(dialects)}; peers {', '.join(peer_names) or 'none'}")

    import ours
    results: Dict[str, Any] = {
        "command": command, "settings": s,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "ours": {}, "peers": [],
    }
    if "postgresql" in dialects:
        peers_setup.check_postgres(pg_url or ours.DEFAULT_POSTGRES_URL)
    if "mariadb" in dialects:
        peers_setup.check_mariadb(my_url or ours.DEFAULT_MARIADB_URL)

    def load(phase: str) -> None:  # another busy process on a 2-core machine shows here
        results["load"].append([phase, round(os.getloadavg()[0], 2)])

    results["load"] = []
    load("start")
    venvs: Dict[str, Any] = {}
    if peer_names:
        venvs = peers_setup.prepare_venvs(peer_names)

    for dialect in ([] if args.only_peers else dialects):
        results["ours"][dialect] = ours.run_dialect(
            dialect, rows=s["rows"], transactions=s["transactions"],
            audit_records=s["audit_records"], rounds=s["rounds"], read_rounds=s["read_rounds"],
            read_calls=s["read_calls"], postgres_url=pg_url, mariadb_url=my_url,
            diagnostics=not args.no_diagnostics, profile=not args.no_diagnostics)
        load(f"after sqlaudit on {dialect}")

    for name in peer_names:
        for dialect in dialects:
            if dialect not in peers_setup.PEERS[name]["dialects"]:
                continue
            results["peers"].append(peers_setup.run_peer(
                name, dialect, venvs[name], s, pg_url or ours.DEFAULT_POSTGRES_URL,
                my_url or ours.DEFAULT_MARIADB_URL))
            load(f"after {name} on {dialect}")

    results["machine"] = peers_setup.machine_facts()
    results["elapsed_seconds"] = time.time() - started
    import report
    # this run's own results first, unmerged (bench/results/ is git-ignored): a report
    # that fails to render can be rendered again with bench/report.py
    raw = ROOT / "bench" / "results" / "last-run.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1, default=str))
    if merge_into is not None:
        results = report.merge(json.loads(merge_into.read_text()), results, dialects)
    paths = report.write(results, out_dir)
    # the History API reads (bench/history.py) run on PostgreSQL and SQLite; a merged
    # run keeps the section already in the report
    history_dialects = [d for d in dialects if d in ("postgresql", "sqlite")]
    if not args.no_history and not args.only_peers and history_dialects and merge_into is None:
        import history
        overrides = None if not args.sizes else dict(
            audit_records=s["audit_records"], table_rows=s["rows"], rounds=s["read_rounds"],
            calls=s["read_calls"], table_rounds=1)
        hist = history.collect(command, history_dialects, args.quick, bool(peer_names), overrides)
        history.write_section(out_dir / "benchmarks.md", history.section(hist))
    harness.progress(f"done in {(time.time() - started) / 60:.1f} min: "
                     + ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
                                 for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
