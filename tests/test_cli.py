"""The ``sqlaudit`` command line, run as a program (``python -m sqlaudit``) against
a real SQLite file and a real PostgreSQL schema.

Each test seeds its database through a ``@track_table`` model module written to
a temporary folder (the subprocess imports the same file with ``--models``),
then checks what the command prints and its exit code. Needs the ``cli`` extra.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Optional

import pytest
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

import click  # noqa: E402,F401  (the test extra installs the cli extra's libraries)
import rich  # noqa: E402,F401

from sqlaudit import audit_context, register_hooks  # noqa: E402
from sqlaudit.retrieval import get_changes, get_transactions  # noqa: E402

MODELS_SOURCE = '''
from typing import Optional

from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqlaudit import track_table


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "quantity"], table_label="Product")
class Product(Base):
    __tablename__ = "cli_products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[Optional[str]] = mapped_column(String(100), nullable=True)


@track_table(require_user_id=True)
class Tag(Base):
    __tablename__ = "cli_tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
'''


# ---------------------------------------------------------------- helpers

@dataclass
class Models:
    name: str
    folder: Path
    module: Any


@dataclass
class Seeded:
    """What ``seeded`` wrote: three transactions by alice, bob and carol."""

    tx_alice: int
    tx_bob: int
    tx_carol: int


@pytest.fixture
def models(tmp_path: Path) -> Any:
    """The models module: a file the subprocess imports, loaded here too."""
    name = f"cli_models_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "app"
    folder.mkdir()
    path = folder / f"{name}.py"
    path.write_text(MODELS_SOURCE)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield Models(name, folder, module)
    sys.modules.pop(name, None)


@pytest.fixture
def url(engine: Engine, dialect: str) -> str:
    """A URL of this test's database for another process (PostgreSQL: its schema)."""
    if dialect == "postgresql":
        schema = engine.info_schema  # type: ignore[attr-defined]
        return engine.url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def created(engine: Engine, models: Models) -> Models:
    """The models' tables, with their audit triggers, and sqlaudit's hooks."""
    models.module.Base.metadata.create_all(engine)
    register_hooks()
    return models


@pytest.fixture
def seeded(engine: Engine, created: Models) -> Seeded:
    Product, Tag = created.module.Product, created.module.Tag
    with Session(engine) as s, audit_context(user_id="alice", reason="seed", context={"request": "r1"}):
        s.add_all([Product(id=1, name="pen", quantity=1), Product(id=2, name="ink", quantity=5)])
        s.add(Tag(id=1, label="new"))
        s.commit()
    with Session(engine) as s, audit_context(user_id="bob"):
        s.get(Product, 1).quantity = 2
        s.commit()
    with Session(engine) as s, audit_context(user_id="carol"):
        s.delete(s.get(Product, 2))
        s.commit()
    with Session(engine) as s:
        by_user = {r.changed_by: r.transaction_id for r in get_changes(s)}
    return Seeded(by_user["alice"], by_user["bob"], by_user["carol"])


def run(*args: str, url: Optional[str] = None, models: Optional[Models] = None,
        env: Optional[dict[str, str]] = None, stdin: Optional[str] = None) -> subprocess.CompletedProcess[str]:
    """``python -m sqlaudit ARGS`` (with ``--url URL`` and ``--models`` when given)."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("SQLAUDIT_DATABASE_URL", "DATABASE_URL", "COLUMNS")}
    if models is not None:
        environ["PYTHONPATH"] = os.pathsep.join([str(models.folder), environ.get("PYTHONPATH", "")])
    environ.update(env or {})
    command = [sys.executable, "-m", "sqlaudit", *args]
    if url is not None:
        command += ["--url", url]
    if models is not None:
        command += ["--models", models.name]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=120,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def changes(result: subprocess.CompletedProcess[str]) -> list[tuple[Any, ...]]:
    """(table, id, operation, field, old, new, user) of each JSON line."""
    return [(d["table_name"], d["resource_id"], d["operation"], d["field_name"], d["old_value"],
             d["new_value"], d["changed_by"]) for d in lines(result)]


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failing command prints on stderr (no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.strip()


def raw(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


MARIADB_PORTED = True

ALICE = {
    ("cli_products", "1", "insert", "name", None, "pen", "alice"),
    ("cli_products", "1", "insert", "quantity", None, 1, "alice"),
    ("cli_products", "2", "insert", "name", None, "ink", "alice"),
    ("cli_products", "2", "insert", "quantity", None, 5, "alice"),
    ("cli_tags", "1", "insert", "id", None, 1, "alice"),
    ("cli_tags", "1", "insert", "label", None, "new", "alice"),
}


# ---------------------------------------------------------------- log

def test_log_json_lines_are_every_change_newest_first(url, seeded) -> None:
    found = changes(run("log", "--format", "json", "--all", url=url))
    assert found[:3] == [
        ("cli_products", "2", "delete", "name", "ink", None, "carol"),
        ("cli_products", "2", "delete", "quantity", 5, None, "carol"),
        ("cli_products", "1", "update", "quantity", 1, 2, "bob"),
    ]
    assert set(found[3:]) == ALICE and len(found) == 9


def test_log_json_records_carry_transaction_reason_and_context(url, seeded) -> None:
    records = lines(run("log", "--format", "json", "--user", "alice", url=url))
    assert {(r["transaction_id"], r["reason"], json.dumps(r["context"])) for r in records} == {
        (seeded.tx_alice, "seed", '{"request": "r1"}')}
    assert set(records[0]) == {
        "table_name", "table_label", "resource_id", "field_name", "old_value", "new_value",
        "timestamp", "changed_by", "operation", "transaction_id", "reason", "db_role", "context",
        "application_name", "client_addr"}


def test_log_with_models_gives_table_labels(url, seeded, created) -> None:
    records = lines(run("log", "--format", "json", "--table", "cli_products", url=url, models=created))
    assert {r["table_label"] for r in records} == {"Product"}


def test_log_table_filter_without_models(url, seeded) -> None:
    found = changes(run("log", "--format", "json", "--table", "cli_tags", url=url))
    assert set(found) == {c for c in ALICE if c[0] == "cli_tags"} and len(found) == 2


def test_log_table_filter_applies_before_the_limit(url, seeded) -> None:
    # the tags' changes are the oldest: a filter after a limit of 2 would find none
    found = changes(run("log", "--format", "json", "--table", "cli_tags", "--limit", "2", url=url))
    assert {c[3] for c in found} == {"id", "label"}


def test_log_table_filter_with_models(url, seeded, created) -> None:
    found = changes(run("log", "--format", "json", "--table", "cli_tags", url=url, models=created))
    assert {c[0] for c in found} == {"cli_tags"} and len(found) == 2


def test_log_user_filter(url, seeded) -> None:
    assert changes(run("log", "--format", "json", "--user", "bob", url=url)) == [
        ("cli_products", "1", "update", "quantity", 1, 2, "bob")]


def test_log_transaction_filter(url, seeded) -> None:
    found = changes(run("log", "--format", "json", "--transaction", str(seeded.tx_carol), url=url))
    assert {c[6] for c in found} == {"carol"} and len(found) == 2


def test_log_id_filter(url, seeded) -> None:
    found = changes(run("log", "--format", "json", "--table", "cli_products", "--id", "2", url=url))
    assert [(c[2], c[3]) for c in found] == [("delete", "name"), ("delete", "quantity"),
                                            ("insert", "name"), ("insert", "quantity")]


def test_log_limit_keeps_the_newest_and_says_so(url, seeded) -> None:
    result = run("log", "--format", "json", "--limit", "3", url=url)
    assert [c[6] for c in changes(result)] == ["carol", "carol", "bob"]
    assert "--limit N or --all for more" in result.stderr


@pytest.mark.parametrize("since, until, expected", [
    ("1h", None, 9),
    ("30m", None, 9),
    (None, "2d", 0),  # up to two days ago
    (None, "2000-01-01", 0),
    ("2000-01-01", None, 9),
    ("2000-01-01T10:00Z", (date.today() + timedelta(days=2)).isoformat(), 9),
    ((date.today() + timedelta(days=2)).isoformat(), None, 0),
])
def test_log_human_dates(url, seeded, since, until, expected) -> None:
    args = ["log", "--format", "json", "--all"]
    args += ["--since", since] if since else []
    args += ["--until", until] if until else []
    assert len(lines(run(*args, url=url))) == expected


def test_log_csv_has_a_header_and_one_row_per_change(url, seeded) -> None:
    result = run("log", "--format", "csv", "--user", "bob", url=url)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1
    assert (rows[0]["table_name"], rows[0]["field_name"], rows[0]["old_value"],
            rows[0]["new_value"], rows[0]["changed_by"]) == ("cli_products", "quantity", "1", "2", "bob")
    assert rows[0]["transaction_id"] == str(seeded.tx_bob)


def test_log_table_format_shows_the_changes(url, seeded) -> None:
    result = run("log", "--user", "bob", url=url)
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if "bob" in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[1:] == ["cli_products", "1", "update", "quantity", "1", "2", "bob",
                         str(seeded.tx_bob)]


def test_log_table_format_escapes_terminal_control_characters(engine, url, created) -> None:
    with Session(engine) as s, audit_context(user_id="mallory"):
        s.add(created.module.Product(id=9, name="\x1b[2J\x1b]0;owned\x07", quantity=1))
        s.commit()
    result = run("log", "--user", "mallory", url=url)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "\\x1b[2J" in result.stdout
    as_json = run("log", "--format", "json", "--user", "mallory", url=url)
    assert "\x1b" not in as_json.stdout
    assert "\x1b[2J\x1b]0;owned\x07" in {r["new_value"] for r in lines(as_json)}


def test_log_reads_the_url_from_the_environment(url, seeded) -> None:
    found = changes(run("log", "--format", "json", "--user", "bob",
                        env={"SQLAUDIT_DATABASE_URL": url, "DATABASE_URL": "sqlite:///nowhere.db"}))
    assert [c[6] for c in found] == ["bob"]
    found = changes(run("log", "--format", "json", "--user", "bob", env={"DATABASE_URL": url}))
    assert [c[6] for c in found] == ["bob"]


def test_log_with_nothing_matching_prints_nothing(url, seeded) -> None:
    result = run("log", "--format", "json", "--user", "nobody", url=url)
    assert (result.returncode, result.stdout, result.stderr.strip()) == (0, "", "no changes match")


# ---------------------------------------------------------------- show

def test_show_json_is_the_whole_transaction(url, seeded) -> None:
    (tx,) = lines(run("show", str(seeded.tx_alice), "--format", "json", url=url))
    assert (tx["transaction_id"], tx["changed_by"], tx["reason"], tx["context"]) == (
        seeded.tx_alice, "alice", "seed", {"request": "r1"})
    assert {(c["table_name"], c["resource_id"], c["operation"], c["field_name"], c["old_value"],
             c["new_value"], c["changed_by"]) for c in tx["changes"]} == ALICE


def test_show_table_names_who_and_why(url, seeded) -> None:
    result = run("show", str(seeded.tx_carol), url=url)
    assert result.returncode == 0, result.stderr
    assert "carol" in result.stdout and "delete" in result.stdout and "ink" in result.stdout


def test_show_unknown_transaction_exits_9(url, seeded) -> None:
    result = run("show", "424242", url=url)
    assert result.returncode == 9
    assert error_line(result) == "Error: no transaction 424242 in the audit log"


# ---------------------------------------------------------------- status

def status(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, Any, Any]]:
    return {r["table"]: (r["state"], r["fields"], r["fail_closed"])
            for r in (json.loads(line) for line in result.stdout.splitlines())}


def test_status_is_current_and_exits_0(url, created) -> None:
    result = run("status", "--format", "json", url=url)
    assert result.returncode == 0, result.stderr
    assert status(result) == {"cli_products": ("current", ["name", "quantity"], False),
                              "cli_tags": ("current", ["id", "label"], True)}


def test_status_exits_1_after_a_trigger_is_dropped(engine, url, created, dialect) -> None:
    if dialect == "postgresql":
        raw(engine, "DROP TRIGGER sqlaudit_update ON cli_products")
    else:
        raw(engine, "DROP TRIGGER sqlaudit_cli_products_update")
    result = run("status", "--format", "json", url=url)
    assert result.returncode == 1
    assert status(result)["cli_products"][0] == "outdated"
    assert status(result)["cli_tags"][0] == "current"
    detail = json.loads(result.stdout.splitlines()[0])["detail"]
    # MariaDB has three row triggers per table; the others a fourth, for TRUNCATE
    expected = "2 of its 3" if dialect == "mariadb" else "3 of its 4"
    assert detail == f"{expected} triggers are installed"


def test_status_with_models_reports_a_table_without_triggers_as_missing(
        engine, url, created, dialect) -> None:
    from sqlaudit.ddl import drop_audit_triggers

    drop_audit_triggers(engine, created.module.Tag)
    assert status(run("status", "--format", "json", url=url)) == {
        "cli_products": ("current", ["name", "quantity"], False)}  # the database alone cannot know
    result = run("status", "--format", "json", url=url, models=created)
    assert result.returncode == 1
    assert status(result)["cli_tags"] == ("missing", ["id", "label"], True)


def test_status_reports_a_renamed_tracked_column_as_broken(engine, url, created) -> None:
    raw(engine, "ALTER TABLE cli_products RENAME COLUMN quantity TO amount")
    for models in (None, created):
        result = run("status", "--format", "json", url=url, models=models)
        assert result.returncode == 1
        row = next(json.loads(line) for line in result.stdout.splitlines() if "cli_products" in line)
        assert row["state"] == "broken" and "quantity" in row["detail"]


def test_status_table_format(url, created) -> None:
    result = run("status", url=url, models=created)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "cli_" in line]
    assert len(rows) == 2 and all("current" in row for row in rows)
    assert "yes" in next(row for row in rows if "cli_tags" in row)


# ---------------------------------------------------------------- sql

def test_sql_script_installs_triggers_that_status_finds_current(
        engine, url, models, dialect) -> None:
    """Tables created without sqlaudit, then the printed script: a working install."""
    plain = MetaData()
    for table in models.module.Base.metadata.sorted_tables:
        if table.name != "sqlaudit_log":
            table.to_metadata(plain)
    plain.create_all(engine)
    args = ["sql", "--dialect", dialect]
    if dialect == "postgresql":
        args += ["--audit-schema", engine.info_schema]  # type: ignore[attr-defined]
    result = run(*args, models=models)
    assert result.returncode == 0, result.stderr
    if dialect == "mariadb":  # run by the mariadb client, as the script's header says
        assert "mariadb DATABASE < this-file" in result.stdout.splitlines()[1]
        target = engine.url
        client = subprocess.run(
            ["mariadb", "-h", target.host or "127.0.0.1", "-P", str(target.port or 3306),
             "-u", target.username or "root", *([f"-p{target.password}"] if target.password else []),
             target.database], input=result.stdout, capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        checked = run("status", "--format", "json", url=url, models=models)
        assert checked.returncode == 0, checked.stdout
        return
    connection = engine.raw_connection()
    try:
        if dialect == "sqlite":
            connection.driver_connection.executescript(result.stdout)  # type: ignore[union-attr]
        else:
            connection.cursor().execute(result.stdout)
        connection.commit()
    finally:
        connection.close()
    assert run("status", url=url, models=models).returncode == 0
    register_hooks()
    with Session(engine) as s, audit_context(user_id="dave"):
        s.add(models.module.Product(id=7, name="cup", quantity=3))
        s.commit()
    assert set(changes(run("log", "--format", "json", url=url))) == {
        ("cli_products", "7", "insert", "name", None, "cup", "dave"),
        ("cli_products", "7", "insert", "quantity", None, 3, "dave")}


def test_sql_without_models_is_a_usage_error(dialect) -> None:
    result = run("sql", "--dialect", dialect)
    assert result.returncode == 2
    assert "needs --models" in result.stderr


def test_sql_triggers_only_renders_no_audit_table(models, dialect) -> None:
    result = run("sql", "--dialect", dialect, "--triggers-only", models=models)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE" not in result.stdout
    assert "cli_products" in result.stdout and "cli_tags" in result.stdout


# ---------------------------------------------------------------- prune

def tomorrow() -> str:
    return (date.today() + timedelta(days=1)).isoformat()


def log_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM sqlaudit_log")).scalar())


def test_prune_dry_run_counts_and_removes_nothing(engine, url, seeded) -> None:
    result = run("prune", "--older-than", tomorrow(), "--dry-run", url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("5 audit records older than ")
    assert "would be pruned (dry run: nothing was removed)" in result.stdout
    assert log_count(engine) == 5
    assert run("prune", "--older-than", "1d", "--dry-run", url=url).stdout.startswith("0 audit records")


def test_prune_of_a_log_never_sealed_removes_old_records_and_seals_nothing(engine, url, seeded) -> None:
    result = run("prune", "--older-than", tomorrow(), "--yes", url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [result.stdout.splitlines()[0]]  # no head: no chain
    assert log_count(engine) == 0
    assert not inspect(engine).has_table("sqlaudit_seal")


def test_prune_removes_old_records_and_the_log_still_verifies(engine, url, seeded) -> None:
    assert run("seal", url=url).returncode == 0
    result = run("prune", "--older-than", tomorrow(), "--yes", url=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pruned 5 audit records older than ")
    assert log_count(engine) == 0
    head = result.stdout.splitlines()[-1].removeprefix("head: ")
    assert run("verify", "--head", head, url=url).returncode == 0


def test_a_head_kept_before_a_prune_reports_the_prune(engine, url, seeded) -> None:
    before = run("seal", url=url).stdout.strip()
    assert run("prune", "--older-than", tomorrow(), "--yes", url=url).returncode == 0
    result = run("verify", "--head", before, "--format", "json", url=url)
    assert result.returncode != 0
    assert [p["kind"] for p in json.loads(result.stdout)["problems"]] == ["pruned_after_head"]


def test_prune_without_yes_and_without_a_terminal_is_refused(engine, url, seeded) -> None:
    result = run("prune", "--older-than", tomorrow(), url=url)
    assert result.returncode == 2
    assert "confirm with --yes" in result.stderr
    assert log_count(engine) == 5


def test_prune_with_nothing_old_enough(url, seeded) -> None:
    result = run("prune", "--older-than", "7d", "--yes", url=url)
    assert result.returncode == 0, result.stderr
    assert "nothing to prune" in result.stdout


# ---------------------------------------------------------------- seal and verify

def test_seal_prints_the_head_and_verify_accepts_it(url, seeded) -> None:
    sealed = run("seal", url=url)
    assert sealed.returncode == 0, sealed.stderr
    head = sealed.stdout.strip()
    assert len(head) == 64 and int(head, 16) >= 0
    (report,) = lines(run("verify", "--head", head, "--format", "json", url=url))
    assert (report["ok"], report["head"], report["sealed_rows"], report["unsealed_rows"],
            report["problems"]) == (True, head, 5, 0, [])


def test_verify_finds_an_altered_record_and_exits_1(engine, url, seeded, dialect) -> None:
    assert run("seal", url=url).returncode == 0
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER sqlaudit_log_no_update"))
        conn.execute(text("UPDATE sqlaudit_log SET changed_by = 'eve' WHERE changed_by = 'bob'"))
    result = run("verify", url=url)
    assert result.returncode == 1
    assert "TAMPERED" in result.stdout and "altered" in result.stdout
    (report,) = [json.loads(line) for line in run("verify", "--format", "json", url=url).stdout.splitlines()]
    assert [p["kind"] for p in report["problems"]] == ["altered"]


def test_verify_with_a_foreign_head_exits_1(url, seeded) -> None:
    assert run("seal", url=url).returncode == 0
    result = run("verify", "--head", "0" * 64, "--format", "json", url=url)
    assert result.returncode == 1
    assert [p["kind"] for p in json.loads(result.stdout)["problems"]] == ["head_mismatch"]


# ---------------------------------------------------------------- grant-read

@pytest.mark.postgresql_only
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_grant_read_lets_a_role_select_the_log(engine, url, created) -> None:
    role = f"cli_reader_{uuid.uuid4().hex[:8]}"
    raw(engine, f'CREATE ROLE "{role}"')
    try:
        result = run("grant-read", role, url=url)
        assert result.returncode == 0, result.stderr
        with engine.connect() as conn:
            assert conn.execute(text("SELECT has_table_privilege(:r, 'sqlaudit_log', 'SELECT'), "
                                     "has_table_privilege(:r, 'sqlaudit_log', 'DELETE')"),
                                {"r": role}).one() == (True, False)
    finally:
        raw(engine, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


@pytest.mark.sqlite_only
@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
def test_grant_read_on_sqlite_exits_10(url, created) -> None:
    result = run("grant-read", "reader", url=url)
    assert result.returncode == 10
    assert error_line(result) == "Error: grant_audit_read() needs PostgreSQL roles; sqlite has none."


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_grant_read_lets_a_mariadb_account_select_the_log(engine, url, created) -> None:
    account = f"cli_reader_{uuid.uuid4().hex[:8]}"
    raw(engine, f"CREATE USER '{account}'@'%'")
    try:
        result = run("grant-read", f"{account}@%", url=url)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"account '{account}@%' may now read sqlaudit_log")
        with engine.connect() as conn:
            grants = conn.execute(text(f"SHOW GRANTS FOR '{account}'@'%'")).scalars().all()
        assert sorted(grants) == [
            f"GRANT SELECT ON `{engine.info_schema}`.`sqlaudit_log` TO `{account}`@`%`",
            f"GRANT USAGE ON *.* TO `{account}`@`%`"]
    finally:
        raw(engine, f"DROP USER '{account}'@'%'")


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_grant_read_to_an_unknown_mariadb_account_exits_10(url, created) -> None:
    result = run("grant-read", "no_such_account_x2@%", url=url)
    assert result.returncode == 10
    assert error_line(result).startswith(
        "Error: grant_audit_read(): no account or role `no_such_account_x2`@`%` on this server; "
        "create it first")


# ---------------------------------------------------------------- MariaDB

@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
def test_maintain_partitions_on_mariadb_says_it_needs_postgresql(url, created) -> None:
    result = run("maintain-partitions", url=url)
    assert result.returncode == 10
    assert error_line(result) == (
        "Error: maintain_audit_partitions() needs PostgreSQL: on mysql sqlaudit_log is one table, "
        "without partitions to maintain: do not schedule this command for it.")


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
@pytest.mark.parametrize("mysqlclient", ["installed", "missing"])
def test_a_bare_mysql_url_works_with_or_without_mysqlclient(engine, url, seeded, tmp_path,
                                                           mysqlclient) -> None:
    """mysql:// and mariadb:// name no driver; SQLAlchemy's default, mysqlclient, is
    not sqlaudit's mysql extra: the command line uses it when it is installed and
    PyMySQL when it is not."""
    env = {}
    if mysqlclient == "missing":  # the CLI's interpreter cannot import MySQLdb
        (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['MySQLdb'] = None\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    else:
        from test_mariadb_drivers import require_c_driver

        require_c_driver("mysqldb")
    for scheme in ("mysql", "mariadb"):
        bare = engine.url.set(drivername=scheme).render_as_string(hide_password=False)
        found = changes(run("log", "--format", "json", "--user", "bob", url=bare, env=env))
        assert [c[6] for c in found] == ["bob"]


# ---------------------------------------------------------------- errors

def test_no_url_exits_3() -> None:
    result = run("log")
    assert result.returncode == 3
    assert error_line(result) == ("Error: no database URL: pass --url, or set "
                                  "SQLAUDIT_DATABASE_URL (or DATABASE_URL)")


def test_unusable_url_exits_3() -> None:
    result = run("status", url="mssql://someone@db.invalid/app")
    assert result.returncode == 3
    assert "sqlaudit supports PostgreSQL, SQLite and MariaDB / MySQL" in error_line(result)


def test_unreachable_database_exits_4(dialect, tmp_path, postgres_url_if) -> None:
    if dialect == "sqlite":
        target = f"sqlite:///{tmp_path / 'typo.db'}"
        expected = "does not exist"
    elif dialect == "mariadb":
        target = postgres_url_if.set(port=1).render_as_string(hide_password=False)
        expected = "Connection refused"
    else:
        target = postgres_url_if.set(port=1).render_as_string(hide_password=False)
        expected = "Connection refused"
    result = run("status", url=target)
    assert result.returncode == 4
    line = error_line(result)
    assert line.startswith("Error: cannot connect to ") and expected in line
    assert not (tmp_path / "typo.db").exists()  # a typo does not create an empty database


@pytest.fixture
def postgres_url_if(dialect: str, request: pytest.FixtureRequest) -> Any:
    """The server's URL (PostgreSQL, or MariaDB's despite the name); None on SQLite."""
    from sqlalchemy.engine import make_url

    if dialect == "mariadb":
        return make_url(request.getfixturevalue("mariadb_url"))
    if dialect != "postgresql":
        return None
    return make_url(request.getfixturevalue("postgres_url"))


def test_database_without_audit_table_exits_5(engine, url) -> None:
    with engine.connect():
        pass  # the SQLite file exists, empty
    result = run("log", url=url)
    assert result.returncode == 5
    assert error_line(result).startswith("Error: no audit table: sqlaudit_log does not exist in ")


def test_unknown_table_exits_6(url, seeded) -> None:
    result = run("log", "--table", "no_such_table", url=url)
    assert result.returncode == 6
    assert error_line(result) == (
        "Error: unknown table 'no_such_table': it has no sqlaudit triggers and no history in "
        "sqlaudit_log (tables with triggers: cli_products, cli_tags)")


@pytest.mark.parametrize("option, value", [("--since", "yesterday"), ("--until", "2026-13-45"),
                                           ("--since", "7 days")])
def test_bad_date_exits_7(url, seeded, option, value) -> None:
    result = run("log", option, value, url=url)
    assert result.returncode == 7
    assert error_line(result).startswith(f"Error: {option} {value!r} is not a date: use 2026-12-01")


def test_since_after_until_exits_7(url, seeded) -> None:
    result = run("log", "--since", "2026-02-01", "--until", "2026-01-01", url=url)
    assert result.returncode == 7
    assert "is after --until" in error_line(result)


def test_bad_prune_cutoff_exits_7(url, seeded) -> None:
    result = run("prune", "--older-than", "ninety days", "--dry-run", url=url)
    assert result.returncode == 7
    assert error_line(result).startswith("Error: --older-than 'ninety days' is not a date")


def test_models_that_cannot_be_imported_exit_8(url, seeded) -> None:
    result = run("log", "--models", "no_such_package.models", url=url)
    assert result.returncode == 8
    assert error_line(result) == ("Error: cannot import --models no_such_package.models: "
                                  "ModuleNotFoundError: No module named 'no_such_package'")


def test_the_command_line_without_its_extra_says_what_to_install() -> None:
    code = ("import runpy, sys; sys.modules['click'] = None; sys.argv = ['sqlaudit', 'log']; "
            "runpy.run_module('sqlaudit', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 10
    assert "needs its cli extra: pip install click rich" in error_line(result)


def test_prune_of_a_tampered_log_is_refused_with_exit_10(engine, url, seeded, dialect) -> None:
    assert run("seal", url=url).returncode == 0
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.execute(text("DROP TRIGGER sqlaudit_log_no_delete"))
        conn.execute(text("DELETE FROM sqlaudit_log WHERE changed_by = 'bob'"))
    result = run("prune", "--older-than", tomorrow(), "--yes", url=url)
    assert result.returncode == 10
    assert error_line(result).startswith("Error: refusing to prune: the audit log fails verification")
    assert log_count(engine) == 4


@pytest.mark.postgresql_only
@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_grant_read_to_an_unknown_role_exits_10(url, created) -> None:
    result = run("grant-read", f"no_such_role_{uuid.uuid4().hex[:8]}", url=url)
    assert result.returncode == 10
    line = error_line(result)
    assert line.startswith("Error: the database refused: ") and "does not exist" in line


def test_status_without_any_triggers_exits_1(engine, url, created) -> None:
    from sqlaudit.ddl import drop_audit_triggers

    drop_audit_triggers(engine, created.module.Product, created.module.Tag)
    result = run("status", url=url)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no sqlaudit triggers are installed in this database" in result.stderr


def test_url_and_models_may_precede_the_command(url, seeded, created) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("SQLAUDIT_DATABASE_URL", "DATABASE_URL")}
    environ["PYTHONPATH"] = str(created.folder)
    result = subprocess.run(
        [sys.executable, "-m", "sqlaudit", "--url", url, "--models", created.name,
         "log", "--format", "json", "--user", "bob"],
        capture_output=True, text=True, env=environ, timeout=120, stdin=subprocess.DEVNULL)
    assert [(r["table_label"], r["changed_by"]) for r in lines(result)] == [("Product", "bob")]


def test_sql_takes_the_dialect_from_the_url(url, models, dialect) -> None:
    result = run("sql", "--triggers-only", url=url, models=models)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("-- sqlaudit ")
    # a mysql+pymysql:// URL names MySQL's dialect, whose script also runs on MariaDB
    assert result.stdout.splitlines()[0].endswith(f"({'mysql' if dialect == 'mariadb' else dialect})")


# ---------------------------------------------------------------- state and revert

def test_state_shows_a_row_as_it_was_before_a_change(engine, url, models, seeded) -> None:
    with Session(engine) as s:
        (bob,) = get_transactions(s, transaction_ids=seeded.tx_bob)
    before = (bob.timestamp - timedelta(milliseconds=1)).isoformat()
    (row,) = lines(run("state", "cli_products", "1", "--at", before, "--format", "json",
                       url=url, models=models))
    assert row == {"name": "pen", "quantity": 1}
    (now,) = lines(run("state", "Product", "1", "--format", "json", url=url, models=models))
    assert now == {"name": "pen", "quantity": 2}


def test_state_of_a_whole_table_is_json_lines(url, models, seeded) -> None:
    rows = lines(run("state", "cli_products", url=url, models=models))
    assert rows == [{"resource_id": "1", "state": {"name": "pen", "quantity": 2}}]


def test_state_of_a_row_that_did_not_exist_exits_9(url, models, seeded) -> None:
    result = run("state", "cli_products", "2", "--at", "2000-01-01", url=url, models=models)
    assert result.returncode == 9 and "did not exist" in error_line(result)


def test_state_needs_models(url, seeded) -> None:
    result = run("state", "cli_products", "1", url=url)
    assert result.returncode == 2 and "--models" in result.stderr


def test_revert_undoes_a_transaction_and_is_audited(engine, url, models, seeded) -> None:
    result = run("revert", str(seeded.tx_carol), "--user", "ops", "--yes", url=url, models=models)
    assert result.returncode == 0, result.stderr
    assert "reverted 2 changes" in result.stdout
    with Session(engine) as s:
        (undo,) = get_transactions(s, limit=1)
    assert (undo.changed_by, undo.reason) == ("ops", f"revert of transaction {seeded.tx_carol}")
    assert {(c.field_name, c.new_value) for c in undo.changes} == {("name", "ink"), ("quantity", 5)}


def test_revert_in_conflict_exits_11_and_changes_nothing(engine, url, models, seeded) -> None:
    before = lines(run("log", "--format", "json", "--all", url=url))
    result = run("revert", str(seeded.tx_alice), "--yes", url=url, models=models)
    assert result.returncode == 11 and "later changes" in error_line(result)
    assert lines(run("log", "--format", "json", "--all", url=url)) == before
