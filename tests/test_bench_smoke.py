"""The benchmark (bench/run.py) runs end to end on tiny sizes and measures what it claims.

No timing assertions: only that every workload and variant produced numbers and
that the audited variants really wrote their audit rows (with the acting user).
Peers are skipped (they need PyPI); the report is generated without the plot
when matplotlib is missing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
ROWS, TRANSACTIONS, AUDIT_RECORDS = 200, 20, 2000
WRITE = ("bulk_insert", "bulk_update", "bulk_delete", "oltp_update", "oltp_insert")
READ = ("read_resource", "read_user_day")


def _bench_module(script: str) -> Any:
    """bench/<script>.py loaded as a module (bench/ is not a package)."""
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"sqlaudit_bench_{script}", BENCH / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_benchmark_core_runs_and_records(dialect: str, request: pytest.FixtureRequest,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if dialect == "postgresql":
        monkeypatch.setenv("SQLAUDIT_BENCH_POSTGRES_URL", request.getfixturevalue("postgres_url"))
    main = _bench_module("run").main
    code = main([
        "--sizes", f"{ROWS},{TRANSACTIONS},{AUDIT_RECORDS}", "--rounds", "1", "--read-rounds", "1",
        "--read-calls", "3", "--dialects", dialect, "--no-peers", "--output-dir", str(tmp_path),
    ])
    assert code == 0
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    run = results["ours"][dialect]

    timed = {(s["system"], s["workload"]) for s in run["write"]["samples"] if s["seconds"] > 0}
    for variant in ("baseline", "sqlaudit", "limit", "sqlaudit_noactor", "rowtrigger"):
        for workload in WRITE:
            assert (variant, workload) in timed, (variant, workload)
    read = {(s["system"], s["workload"]) for s in run["read"]["samples"] if s["seconds"] > 0}
    assert read == {(v, w) for v in ("sqlaudit", "limit") for w in READ}

    capture = run["write"]["capture"]
    for workload in WRITE:
        expected = ROWS if workload.startswith("bulk") else TRANSACTIONS
        assert capture["baseline"][workload]["audit_rows"] == 0
        for variant in ("sqlaudit", "limit", "rowtrigger"):
            got = capture[variant][workload]
            assert got["expected"] == expected
            assert got["audit_rows"] == expected, (variant, workload, got)
            assert got["with_actor"] == expected, (variant, workload, got)
        assert capture["sqlaudit_noactor"][workload]["audit_rows"] == expected
        assert capture["sqlaudit_noactor"][workload]["with_actor"] == 0

    assert run["audit_rows"] == AUDIT_RECORDS
    for workload in READ:
        assert "sqlaudit_log" in run["plans"][workload]["sql"]
        assert run["plans"][workload]["plan"].strip()

    doc = (tmp_path / "benchmarks.md").read_text()
    for title in ("INSERT ... SELECT", "UPDATE (2 columns)", "DELETE", "ORM update + commit",
                  "ORM insert + commit", "history of one resource", "one user's day",
                  "Why the design is fast", "## History API", "one transaction's changes",
                  "one resource's state as of a date", "`get_table_state`"):
        assert title in doc


def test_benchmark_core_runs_and_records_on_mariadb(mariadb_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``run.py --quick --dialects mariadb`` on tiny sizes (in a fresh database, dropped at
    the end): every variant timed, the audited ones (row triggers included) recorded every
    row with the actor, the statements per ORM transaction counted, the report has the
    MariaDB section with its targets; merged into a saved report, the other dialects stay."""
    monkeypatch.setenv("SQLAUDIT_BENCH_MARIADB_URL", mariadb_url)
    from sqlalchemy import create_engine, text

    admin = create_engine(mariadb_url)
    with admin.connect() as conn:
        before = {r[0] for r in conn.execute(text("SHOW DATABASES LIKE 'sqlaudit_bench%'"))}
    main = _bench_module("run").main
    code = main([
        "--quick", "--sizes", f"{ROWS},{TRANSACTIONS},{AUDIT_RECORDS}", "--rounds", "1",
        "--read-rounds", "1", "--read-calls", "3", "--dialects", "mariadb", "--no-peers",
        "--output-dir", str(tmp_path),
    ])
    assert code == 0
    with admin.connect() as conn:
        after = {r[0] for r in conn.execute(text("SHOW DATABASES LIKE 'sqlaudit_bench%'"))}
    admin.dispose()
    assert after <= before  # its database was dropped
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    run = results["ours"]["mariadb"]
    variants = ("baseline", "sqlaudit", "limit", "sqlaudit_noactor", "rowtrigger",
                "limit_noindex", "rowtrigger_uservar", "rowtrigger_record")
    timed = {(s["system"], s["workload"]) for s in run["write"]["samples"] if s["seconds"] > 0}
    assert timed == {(v, w) for v in variants for w in WRITE}
    read = {(s["system"], s["workload"]) for s in run["read"]["samples"] if s["seconds"] > 0}
    assert read == {(v, w) for v in ("sqlaudit", "limit") for w in READ}
    capture = run["write"]["capture"]
    for workload in WRITE:
        expected = ROWS if workload.startswith("bulk") else TRANSACTIONS
        assert capture["baseline"][workload]["audit_rows"] == 0
        for variant in ("sqlaudit", "limit", "rowtrigger", "limit_noindex", "rowtrigger_uservar",
                        "rowtrigger_record"):
            got = capture[variant][workload]
            assert got["audit_rows"] == got["with_actor"] == expected, (variant, workload, got)
        assert capture["sqlaudit_noactor"][workload]["audit_rows"] == expected
        assert capture["sqlaudit_noactor"][workload]["with_actor"] == 0
    assert run["audit_rows"] == AUDIT_RECORDS
    statements = run["round_trips"]["statements"]
    for workload in ("oltp_update", "oltp_insert"):
        base = statements["baseline"][workload]
        assert statements["limit"][workload] == base + 1  # its one INSERT ... SELECT
        assert statements["rowtrigger"][workload] == base  # the trigger costs no statement
        # setting and clearing the user: two statements, for sqlaudit as for the hand-written floor
        assert (statements["sqlaudit"][workload] == statements["rowtrigger_uservar"][workload]
                == statements["rowtrigger_record"][workload] == base + 2)
    steps = {s["system"] for s in run["trigger_steps"]["samples"] if s["seconds"] > 0}
    assert steps == set(_bench_module("ours").MARIADB_STEPS)
    for workload in READ:
        assert "sqlaudit_log" in run["plans"][workload]["sql"]
        assert "ix_sqlaudit_log" in run["plans"][workload]["plan"]

    doc = (tmp_path / "benchmarks.md").read_text()
    assert "## MariaDB: sqlaudit against the baseline and the limit" in doc
    assert "≤ 1.2× row trigger:" in doc and "≤ 1.05× limit:" in doc and "< 5 ms:" in doc
    assert "≤ 1.1× record floor:" in doc and "≤ 1.05× record floor:" in doc
    assert "MariaDB: what a per-transaction user costs an ORM transaction" in doc

    # merged into a saved report of the other dialects, which keep their sections
    saved = tmp_path / "saved"
    saved.mkdir()
    docs = BENCH.parent / "docs"
    (saved / "benchmarks.json").write_text((docs / "benchmarks.json").read_text())
    (saved / "benchmarks.md").write_text((docs / "benchmarks.md").read_text())
    report = _bench_module("report")
    assert report.main([str(tmp_path / "benchmarks.json"), "--merge-into",
                        str(saved / "benchmarks.json")]) == 0
    merged = (saved / "benchmarks.md").read_text()
    for title in ("## PostgreSQL: sqlaudit against", "## SQLite: sqlaudit against",
                  "## MariaDB: sqlaudit against", "MariaDB, measured in a run of its own",
                  "## History API", "## Growth"):
        assert title in merged, title


def test_index_tradeoff_runs_and_checks_its_variants(postgres_url: str, tmp_path: Path) -> None:
    """bench/indexes.py (PostgreSQL only) on tiny sizes, without the peer: every variant
    has exactly the indexes it claims and records every row with the actor (the script
    checks both and exits otherwise), and the report has all rows and the verdicts."""
    module = _bench_module("indexes")
    out = tmp_path / "indexes.md"
    code = module.main(["--rows", str(ROWS), "--rounds", "1", "--audit-records",
                        str(AUDIT_RECORDS), "--read-rounds", "1", "--read-calls", "3",
                        "--no-peer", "--postgres-url", postgres_url, "--output", str(out)])
    assert code == 0
    doc = out.read_text()
    for title in [v[0] for v in module.VARIANTS.values()] + [
            "no auditing (baseline)", "the limit with the resource index only"]:
        assert f"| {title} |" in doc, title
    assert "without the three read indexes: ix_sqlaudit_log_changed_at, sqlaudit_log_pkey" in doc
    assert "## Reading it" in doc
    assert "postgresql-audit 0" not in doc  # --no-peer: no peer row


def test_growth_benchmark_runs_and_records(dialect: str, request: pytest.FixtureRequest,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/growth.py --quick on tiny sizes: every size has its writes (that really wrote
    their audit rows), reads, fill and prune; the partitioned layout is measured on
    PostgreSQL and reported not applicable on SQLite; the JSON, the plot (when matplotlib is there) and the section are written."""
    if dialect == "postgresql":
        monkeypatch.setenv("SQLAUDIT_BENCH_POSTGRES_URL", request.getfixturevalue("postgres_url"))
    module = _bench_module("growth")
    code = module.main(["--quick", "--dialects", dialect, "--layouts", "plain,partitioned",
                        "--sizes", "2000,6000", "--table-rows", "300", "--commits", "5",
                        "--calls", "2", "--output-dir", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "growth.json").read_text())
    plain = results["runs"][dialect]["plain"]
    assert sorted(plain["sizes"], key=int) == ["2000", "6000"]
    for size, entry in plain["sizes"].items():
        assert entry["fill"]["rows"] == int(size)
        assert entry["capture"]["bulk_update"] == 300 and entry["capture"]["orm_commit"] == 5
        for workload in ("bulk_update", "orm_commit"):
            assert entry[workload]["sqlaudit"]["median"] > 0 and entry[workload]["baseline"]["median"] > 0
        for read in ("resource", "user_latest", "transaction"):
            assert entry[read]["sqlaudit"]["median"] > 0 and entry["capture"][f"{read}_records"] > 0
        assert entry["prune"]["removed"] > 0 and entry["prune"]["verified"] is True
    partitioned = results["runs"][dialect]["partitioned"]
    if dialect == "sqlite":
        assert partitioned == {"available": False,
                               "reason": "not applicable: on sqlite sqlaudit_log is one table"}
    else:
        assert partitioned["available"] and sorted(partitioned["sizes"], key=int) == ["2000", "6000"]
        for size, entry in partitioned["sizes"].items():
            assert entry["fill"]["rows"] == int(size)
            assert entry["prune"]["removed"] > 0 and entry["prune"]["verified"] is True
    doc = (tmp_path / "growth.md").read_text()
    assert "## Growth" in doc and "one resource's history" in doc and "prune January" in doc
    assert (tmp_path / "growth.png").exists() == (importlib.util.find_spec("matplotlib") is not None)


def test_the_record_floor_writes_the_record_sqlaudit_writes_on_mariadb(
        mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's record floor (the cheapest row trigger said to record what sqlaudit
    records) writes, for an insert and a delete, the row sqlaudit's trigger writes: same key,
    operation, user, account, client host and values, both with a transaction id. (Its
    update row holds all five old and new values, a superset of sqlaudit's changed ones.)"""
    from sqlalchemy import text

    from sqlaudit.config import SQLAuditConfig, set_config
    from sqlaudit.hooks import register_hooks, unregister_hooks

    ours = _bench_module("ours")
    harness = _bench_module("harness")
    db = ours.Database("mariadb", mariadb_url=mariadb_url)
    set_config(SQLAuditConfig(get_user_id_callback=lambda: harness.ACTOR))
    try:
        models = ours.build_models()
        engine = db.engine()
        models["Base"].metadata.create_all(engine)
        floor = ours.make_system("rowtrigger_record", db, models)
        register_hooks()
        try:
            with engine.begin() as conn:
                conn.execute(text(harness.bulk_insert_sql("mariadb", "items_sqlaudit")),
                             {"lo": 1, "hi": 3})
                conn.execute(text(harness.bulk_delete_sql("items_sqlaudit")))
        finally:
            unregister_hooks()
        floor.bulk_insert(1, 3)
        floor.bulk_delete()
        columns = ("resource_id, operation, changed_by, db_role, client_addr, reason, context, "
                   "JSON_EXTRACT(old_data, '$'), JSON_EXTRACT(new_data, '$'), "
                   "transaction_id IS NOT NULL")
        with engine.connect() as conn:
            theirs = conn.execute(text(
                f"SELECT {columns} FROM {ours.ROW_RECORD_LOG} ORDER BY operation, resource_id")).all()
            mine = conn.execute(text(f"SELECT {columns} FROM sqlaudit_log "
                                     "ORDER BY operation, resource_id")).all()
        assert [r[1] for r in mine] == ["delete"] * 3 + ["insert"] * 3
        assert [tuple(r) for r in theirs] == [tuple(r) for r in mine]
        assert all(r[2] == harness.ACTOR and r[3] and r[4] and r[9] for r in mine)
        floor.close()
    finally:
        db.close()


def test_the_history_benchmark_runs_on_mariadb_and_keeps_the_saved_dialects(
        mariadb_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``history.py --dialects mariadb`` on tiny sizes reads a MariaDB log with every History
    API call (each returning records), drops its database, and merged into the saved
    section keeps PostgreSQL's and SQLite's results with the run that measured them."""
    from sqlalchemy import create_engine, text

    monkeypatch.setenv("SQLAUDIT_BENCH_MARIADB_URL", mariadb_url)
    history = _bench_module("history")
    monkeypatch.setattr(history, "QUICK", dict(audit_records=3000, table_rows=300, rounds=1,
                                               calls=3, table_rounds=1))
    docs = BENCH.parent / "docs"
    (tmp_path / "benchmarks-history.json").write_text((docs / "benchmarks-history.json").read_text())
    out = tmp_path / "benchmarks.md"
    admin = create_engine(mariadb_url)
    with admin.connect() as conn:
        before = {r[0] for r in conn.execute(text("SHOW DATABASES LIKE 'sqlaudit_bench%'"))}
    assert history.main(["--quick", "--dialects", "mariadb", "--no-peers", "--output", str(out)]) == 0
    with admin.connect() as conn:
        after = {r[0] for r in conn.execute(text("SHOW DATABASES LIKE 'sqlaudit_bench%'"))}
    admin.dispose()
    assert after <= before
    saved = json.loads((tmp_path / "benchmarks-history.json").read_text())
    assert list(saved["ours"]) == ["postgresql", "sqlite", "mariadb"]
    mine = saved["ours"]["mariadb"]
    assert mine["audit_rows"] == 3000
    assert set(mine["read"]["sqlaudit"]) == {"tx", "user_latest", "user_transactions", "state"}
    assert all(mine["records"]["sqlaudit"][k]["mean"] > 0
               for k in ("tx", "user_latest", "user_transactions"))
    assert mine["table_state"]["rows"] > 0
    doc = out.read_text()
    assert "### mariadb" in doc and "### postgresql" in doc
    assert "Measured in a run of its own: `python bench/history.py`" in doc  # the saved run
