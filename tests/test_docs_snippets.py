"""Every fenced block of README.md and docs/*.md runs, so the docs cannot rot.

The convention (written in the pages as an HTML comment on the line right
before a block's opening fence, which Markdown and MkDocs do not show):

* ``python`` blocks of a page run in order, as one script in a fresh
  interpreter on SQLite, in a temporary directory: a block may use what an
  earlier block of the same page defined. ``<!-- docs: new-script -->`` starts
  a new script (a fresh interpreter) at that block.
  ``<!-- docs: setup=NAME -->`` runs the named setup of ``SETUPS`` below first
  (it defines ``engine`` on a SQLite file with a few tracked tables).
  ``<!-- docs: postgresql -->`` starts a script that runs on PostgreSQL: its
  ``postgresql+psycopg://...`` URLs are replaced by the test server's (a fresh
  schema). ``<!-- docs: mariadb -->`` starts a script that runs on MariaDB: its
  ``mysql+pymysql://...`` URLs are replaced by the test server's (a fresh
  database).
* Expected output: ``# text`` comment lines right after a ``print(...)`` line
  are what that print writes; a block with such lines must print exactly
  them. A fence preceded by ``<!-- docs: output -->`` is the exact stdout of
  the python block before it.
* ``sql`` blocks run only when marked: ``<!-- docs: postgresql setup=NAME -->``,
  ``<!-- docs: sqlite setup=NAME -->`` or ``<!-- docs: mariadb setup=NAME -->``
  (statements one by one, in
  autocommit mode, so the block's own BEGIN/COMMIT count), ``rollback`` added
  to the marker runs the block in one transaction that is rolled back (role
  and publication examples). A block that sets ``sqlaudit.user_id`` (or
  reason, context) and writes a tracked table must leave that user (reason,
  context) on its newest audit record (on MariaDB: ``SET @sqlaudit_user_id = '...'``).
* Shell blocks (``sh``, ``bash``, ``console``): ``sqlaudit ...`` and
  ``python -m sqlaudit ...`` lines run as subprocesses against a prepared
  SQLite database (``--models app.models`` / ``myapp.models`` import the
  models it was made with), in order; a ``$ echo $?`` line gives the
  expected exit code of the command before it (0 otherwise); an ``Error:``
  line in a console block is the command's exact stderr; JSON Lines output
  must have the keys the page shows. ``<!-- docs: postgresql -->`` runs a
  shell block against PostgreSQL instead.
* ``<!-- docs: install -->`` marks a block that installs, clones or runs the
  test suite; it is not run, and every command in it must be one of those
  (the extras it names must exist in pyproject.toml).
* ``<!-- docs: alembic-env -->``, ``alembic-revision`` and ``alembic-shell``
  blocks are run by ``test_the_alembic_page_migrates_a_database`` in a real
  Alembic project.
* Blocks without a language (or ``text``) are output and are not run; one
  that shows a ``$ python bench/...`` command records a benchmark run, and that
  command runs here at a tiny size.
* A ``<!-- docs: signature=module.function -->`` python block is a signature,
  checked against the function's real parameters and defaults.
* The generated benchmark reports (``GENERATED``) hold captured queries and
  plans, not examples: they are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

#: The MariaDB blocks name their dialect (``<!-- docs: mariadb -->``); no test here
#: takes the ``dialect`` fixture without naming it.
MARIADB_PORTED = True

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = {"benchmarks.md", "read-indexes.md"}  # written by bench/run.py, bench/indexes.py
SHELL = {"sh", "bash", "console", "shell"}
OUTPUT = {"", "text"}
KNOWN = {"python", "sql", *SHELL, *OUTPUT}


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    marker: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def parse_marker(text_: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in text_.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


def page_blocks(path: Path) -> list[Block]:
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```(\S*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        marker: dict[str, str] = {}
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0:
            mm = re.match(r"^\s*<!--\s*docs:\s*(.*?)\s*-->\s*$", lines[j])
            if mm:
                marker = parse_marker(mm.group(1))
        body: list[str] = []
        i += 1
        while not re.match(rf"^{indent}```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        blocks.append(Block(path.name, i - len(body), lang, "\n".join(body) + "\n", marker))
        i += 1
    return blocks


ALL = {p.name: page_blocks(p) for p in PAGES if p.name not in GENERATED}


def blocks_where(predicate) -> list[Block]:
    return [b for bs in ALL.values() for b in bs if predicate(b)]


# ------------------------------------------------------------------ setups

SETUP_MODELS = '''
from decimal import Decimal
from sqlalchemy import ForeignKey, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlaudit import audit_context, register_hooks, track_table


class SetupBase(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "price"], table_label="Product")
class Product(SetupBase):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))


@track_table(tracked_fields=["name", "email"], table_label="Customer")
class Customer(SetupBase):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(100))


class User(SetupBase):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


SetupBase.metadata.create_all(engine)
register_hooks()
with Session(engine) as session, audit_context(user_id="alice", reason="import"):
    session.add_all([Product(id=1, name="Pen", price=Decimal("1.50")),
                     Customer(id=1, name="Ann", email=None), User(id=1, name="admin")])
    session.commit()
'''

SETUPS = {
    # python blocks: the prelude of the script
    "shop": 'from sqlalchemy import create_engine\nengine = create_engine("sqlite:///setup-shop.db")\n'
            + SETUP_MODELS,
}


def run_setup_on(engine: Engine) -> None:
    """The same tables and rows on the test's engine (for sql and shell blocks)."""
    import types

    module = types.ModuleType("docs_setup")
    module.engine = engine  # type: ignore[attr-defined]
    sys.modules["docs_setup"] = module
    try:
        exec(compile(SETUP_MODELS, "<setup>", "exec"), module.__dict__)
    finally:
        del sys.modules["docs_setup"]


# ------------------------------------------------------------------ python


def expected_from_comments(code: str) -> Optional[list[str]]:
    lines = code.splitlines()
    expected: list[str] = []
    found = False
    in_print = False
    for line in lines:
        if line.startswith("print("):
            in_print = True
            continue
        if in_print and line.startswith("# "):
            expected.append(line[2:])
            found = True
            continue
        in_print = False
    return expected if found else None


def python_scripts(page: str) -> list[list[Block]]:
    scripts: list[list[Block]] = []
    for block in ALL[page]:
        if block.lang != "python" or block.marker.keys() & {"alembic-env", "alembic-revision",
                                                             "signature"}:
            continue
        if not scripts or block.marker.keys() & {"new-script", "setup", "postgresql", "mariadb"}:
            scripts.append([])
        scripts[-1].append(block)
    return scripts


def output_blocks(page: str) -> dict[int, str]:
    """line of a python block -> the output block right after it."""
    out: dict[int, str] = {}
    previous: Optional[Block] = None
    for block in ALL[page]:
        if "output" in block.marker:
            assert previous is not None and previous.lang == "python", (
                f"{block.where}: an output block must follow a python block")
            out[previous.line] = block.code
        previous = block
    return out


SCRIPTS = [(page, n) for page in ALL for n, _ in enumerate(python_scripts(page))]
SENTINEL = "<<<docs-block>>>"


@pytest.fixture
def docs_postgres_url(request: pytest.FixtureRequest) -> Any:
    """A URL of the test server whose search_path is a fresh schema (dropped after)."""
    import uuid

    url = request.getfixturevalue("postgres_url")
    schema = f"sqlaudit_docs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield (admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def docs_mariadb_url(request: pytest.FixtureRequest) -> Any:
    """A URL of the MariaDB test server on a fresh database (dropped after)."""
    import uuid

    from sqlalchemy.engine import make_url

    url = request.getfixturevalue("mariadb_url")
    database = f"sqlaudit_docs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    try:
        yield (make_url(url).set(database=database).update_query_dict({"charset": "utf8mb4"})
               .render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin.dispose()


@pytest.mark.parametrize(("page", "number"), SCRIPTS, ids=[f"{p}#{n}" for p, n in SCRIPTS])
def test_python_blocks_run(page: str, number: int, tmp_path: Path,
                           request: pytest.FixtureRequest) -> None:
    """The page's python blocks, in order, as one script; printed output as shown.
    A script marked ``postgresql`` runs against the test server: its
    ``postgresql+psycopg://...`` URLs are replaced by a fresh schema's; one marked
    ``mariadb`` runs against the MariaDB test server, its ``mysql+pymysql://...``
    URLs replaced by a fresh database's."""
    script = python_scripts(page)[number]
    for server, pattern in (("postgresql", r"postgresql\+psycopg://[^\"']+"),
                            ("mariadb", r"mysql\+pymysql://[^\"']+")):
        if server in script[0].marker:
            url = request.getfixturevalue(f"docs_{'postgres' if server == 'postgresql' else server}_url")
            script = [Block(b.page, b.line, b.lang, re.sub(pattern, url, b.code), b.marker)
                      for b in script]
    parts: list[str] = []
    setup = script[0].marker.get("setup")
    if setup:
        parts.append(SETUPS[setup])
    for block in script:
        parts.append(f"print({SENTINEL!r}, flush=True)")
        parts.append(block.code)
    path = tmp_path / "docs_script.py"
    path.write_text("\n".join(parts))
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    first = script[0].where
    assert result.returncode == 0, f"{first}: the script failed:\n{result.stderr}"
    outputs = result.stdout.split(SENTINEL + "\n")[1:]
    assert len(outputs) == len(script)
    shown = output_blocks(page)
    for block, out in zip(script, outputs):
        expected = expected_from_comments(block.code)
        if expected is not None:
            assert out.splitlines() == expected, f"{block.where}: printed output differs"
        if block.line in shown:
            assert out == shown[block.line], f"{block.where}: output block differs"


SIGNATURES = blocks_where(lambda b: "signature" in b.marker)


@pytest.mark.parametrize("block", SIGNATURES, ids=[b.where for b in SIGNATURES])
def test_signature_blocks_match_the_code(block: Block) -> None:
    """A ``<!-- docs: signature=module.function -->`` block is the function's real
    signature: the same parameters, in order, with the same defaults."""
    import ast
    import importlib
    import inspect

    module, _, name = block.marker["signature"].rpartition(".")
    function = getattr(importlib.import_module(module), name)
    call = ast.parse(block.code.strip(), mode="eval").body
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == name, block.where
    shown = [(a.id, inspect.Parameter.empty) for a in call.args]
    shown += [(k.arg, ast.literal_eval(k.value)) for k in call.keywords]
    real = [(p.name, p.default) for p in inspect.signature(function).parameters.values()]
    assert shown == real, f"{block.where}: the page shows {shown}, the code has {real}"


# ------------------------------------------------------------------ sql


def sql_statements(code: str) -> list[str]:
    code = "\n".join(line.split("--", 1)[0] for line in code.splitlines())
    return [s.strip() for s in code.split(";") if s.strip()]


SQL_BLOCKS = blocks_where(lambda b: b.lang == "sql")


def test_every_sql_block_is_marked_to_run() -> None:
    unmarked = [b.where for b in SQL_BLOCKS
                if not ({"postgresql", "sqlite", "mariadb"} & b.marker.keys())]
    assert not unmarked, (f"sql blocks without <!-- docs: postgresql|sqlite|mariadb setup=... -->: "
                          f"{unmarked}")


def run_sql_block(engine: Engine, block: Block) -> None:
    run_setup_on(engine)
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        rollback = "rollback" in block.marker
        if engine.dialect.name == "sqlite":
            dbapi.isolation_level = None
            if rollback:
                dbapi.execute("BEGIN")
        elif engine.dialect.name in ("mysql", "mariadb"):
            dbapi.autocommit(not rollback)  # PyMySQL: a method
        else:
            dbapi.autocommit = not rollback
        cursor = dbapi.cursor()
        for statement in sql_statements(block.code):
            cursor.execute(statement)
        if rollback:
            dbapi.rollback() if engine.dialect.name != "sqlite" else dbapi.execute("ROLLBACK")
    finally:
        raw.close()
    settings = dict(re.findall(r"SET LOCAL sqlaudit\.(\w+) = '([^']*)'", block.code))
    settings.update(re.findall(r"@sqlaudit_(\w+) = '([^']*)'", block.code))
    if re.search(r"^\s*(UPDATE|INSERT|DELETE)", block.code, re.M | re.I) and not rollback:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT changed_by, reason, context FROM sqlaudit_log ORDER BY id DESC LIMIT 1"
            )).one()
        assert row.changed_by == settings.get("user_id")
        if "reason" in settings:
            assert row.reason == settings["reason"]
        if "context" in settings:
            stored = row.context if isinstance(row.context, dict) else json.loads(row.context)
            assert stored == json.loads(settings["context"])


PG_SQL = [b for b in SQL_BLOCKS if "postgresql" in b.marker]
SQLITE_SQL = [b for b in SQL_BLOCKS if "sqlite" in b.marker]


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
@pytest.mark.parametrize("block", PG_SQL, ids=[b.where for b in PG_SQL])
def test_postgresql_sql_blocks_run(block: Block, engine: Engine) -> None:
    run_sql_block(engine, block)


@pytest.mark.parametrize("dialect", ["sqlite"], indirect=True)
@pytest.mark.parametrize("block", SQLITE_SQL, ids=[b.where for b in SQLITE_SQL])
def test_sqlite_sql_blocks_run(block: Block, engine: Engine) -> None:
    run_sql_block(engine, block)


MARIADB_SQL = [b for b in SQL_BLOCKS if "mariadb" in b.marker]


@pytest.mark.parametrize("dialect", ["mariadb"], indirect=True)
@pytest.mark.parametrize("block", MARIADB_SQL, ids=[b.where for b in MARIADB_SQL])
def test_mariadb_sql_blocks_run(block: Block, engine: Engine) -> None:
    run_sql_block(engine, block)


# ------------------------------------------------------------------ install blocks


def extras() -> set[str]:
    """The extras of pyproject.toml (read by hand: tomllib is Python 3.11+)."""
    text_ = (ROOT / "pyproject.toml").read_text()
    section = text_.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z][\w-]*) = \[", section, re.M))


INSTALL_COMMANDS = [
    r"python3? -m venv \S+",
    r"\. \S+/bin/activate",
    r"cd \S+",
    r"git clone \S+( \S+)?",
    r"pytest( \S+)*",
    r"(\S+=\S+ )*pytest( \S+)*",
    r"python3? examples/quickstart\.py",
    r"(python -m )?pip install( -e)? (?P<spec>\S+)",
    r"docker compose up -d",
    r"apt-get install( [a-z0-9.+-]+)+",  # system packages a driver builds against
]


def test_install_blocks_only_install_clone_or_test() -> None:
    known = extras()
    assert {"postgresql", "alembic", "cli", "test", "docs"} <= known
    blocks = blocks_where(lambda b: "install" in b.marker)
    assert blocks
    for block in blocks:
        for line in block.code.splitlines():
            line = re.sub(r"^\$ ", "", line.split("  #", 1)[0]).strip()
            if not line or line.startswith("#"):
                continue
            for command in line.split("&&"):
                command = command.strip()
                match = next((m for p in INSTALL_COMMANDS if (m := re.fullmatch(p, command))), None)
                assert match, f"{block.where}: {command!r} is not an install, clone or test command"
                spec = match.groupdict().get("spec")
                if spec:
                    spec = spec.strip("'\"")
                    assert not re.fullmatch(r"sqlaudit(\[.*\])?", spec), (
                        f"{block.where}: 'sqlaudit' on PyPI is another project: install from "
                        "source (pip install . or a git URL)")
                    for extra in re.findall(r"\[([^\]]*)\]", spec):
                        for name in extra.split(","):
                            assert name in known, f"{block.where}: no extra {name!r} in pyproject.toml"


def test_every_block_has_a_known_language_or_is_marked() -> None:
    unknown = blocks_where(lambda b: b.lang not in KNOWN)
    assert not unknown, [f"{b.where} ({b.lang})" for b in unknown]


def test_every_shell_block_is_run_or_marked() -> None:
    """A shell block not marked install/alembic holds only lines the CLI test runs."""
    for block in blocks_where(lambda b: b.lang in SHELL and not b.marker.keys()
                              & {"install", "alembic-shell"}):
        for command in shell_commands(block):
            assert RUNNABLE.match(command.line) or command.line.startswith("echo $?"), (
                f"{block.where}: {command.line!r} is neither run nor marked")


# ------------------------------------------------------------------ the CLI

RUNNABLE = re.compile(r"^(export \w+=\S+|sqlaudit( .*)?|python -m sqlaudit( .*)?|head .*)$")


@dataclass
class Command:
    line: str
    output: list[str]


def shell_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    console = block.lang == "console"
    for line in block.code.splitlines():
        if console and not line.startswith("$ "):
            if commands:
                commands[-1].output.append(line)
            continue
        line = line[2:] if console else line
        line = re.sub(r"\s+# .*$", "", line).strip()
        if line:
            commands.append(Command(line, []))
    return commands


APP_MODELS = '''
from decimal import Decimal
from sqlalchemy import Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlaudit import SQLAuditConfig, set_config, track_table

set_config(SQLAuditConfig(time_zone="UTC"))


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "price"], table_label="Product")
class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    sku: Mapped[str | None] = mapped_column(String(20))


@track_table(require_user_id=True)
class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50))
'''

PREPARE = '''
import json, sys
from decimal import Decimal
from sqlalchemy import create_engine, delete, update
from sqlalchemy.orm import Session
from sqlaudit import audit_context, get_transactions, register_hooks
from app.models import Base, Product, Tag

engine = create_engine(sys.argv[1])
Base.metadata.create_all(engine)
register_hooks()
ids = {}
with Session(engine) as s:
    with audit_context(user_id="alice", reason="import", context={"request_id": "r-17"}):
        s.add_all([Product(id=1, name="pen", price=Decimal("1.50")),
                   Product(id=2, name="ink", price=Decimal("3.00")), Tag(id=1, label="new")])
        s.commit()
    with audit_context(user_id="bob"):
        s.execute(update(Product).where(Product.id == 1).values(price=Decimal("2.00")))
        s.commit()
    with audit_context(user_id="carol"):
        s.execute(delete(Product).where(Product.id == 2))
        s.commit()
    for tx in get_transactions(s):
        ids[tx.changed_by] = tx.transaction_id
print(json.dumps(ids))
'''

# The transaction ids the CLI page shows, and whose transaction they stand for.
PAGE_TRANSACTIONS = {"951702096896654598": "alice", "2395258243928047092": "bob",
                     "3390565873674460970": "carol", "48213": "bob"}


def prepare_cli_dir(tmp_path: Path, url: str) -> dict[str, Any]:
    for package in ("app", "myapp"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "app" / "models.py").write_text(APP_MODELS)
    # myapp.models: the same tables, but the model tracks one more field than
    # was installed, so `status --models myapp.models` finds products outdated.
    (tmp_path / "myapp" / "models.py").write_text(
        APP_MODELS.replace('["name", "price"]', '["name", "price", "sku"]'))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SQLAUDIT_DATABASE_URL": url,
           "COLUMNS": "200", "NO_COLOR": "1"}
    env.pop("DATABASE_URL", None)
    prepared = subprocess.run([sys.executable, "-c", PREPARE, url], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert prepared.returncode == 0, prepared.stderr
    users = json.loads(prepared.stdout)
    return {"env": env, "ids": {page: str(users[user]) for page, user in PAGE_TRANSACTIONS.items()}}


def run_shell_blocks(blocks: list[Block], tmp_path: Path, url: str) -> int:
    prepared = prepare_cli_dir(tmp_path, url)
    bindir = str(Path(sys.executable).parent)
    env = {**prepared["env"], "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    ran = 0
    for block in blocks:
        commands = shell_commands(block)
        for i, command in enumerate(commands):
            if command.line.startswith("echo $?"):
                continue
            line = command.line
            for shown, real in prepared["ids"].items():
                line = re.sub(rf"\b{shown}\b", real, line)
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                env[name] = value
                continue
            result = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, text=True,
                                    capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
            ran += 1
            where = f"{block.where}: {command.line}"
            expected_code = 0
            if i + 1 < len(commands) and commands[i + 1].line.startswith("echo $?"):
                expected_code = int(commands[i + 1].output[0])
            assert "Traceback" not in result.stderr, f"{where}\n{result.stderr}"
            assert result.returncode == expected_code, (
                f"{where}: exit {result.returncode}, the page says {expected_code}\n"
                f"{result.stdout}\n{result.stderr}")
            errors = [o for o in command.output if o.startswith("Error: ")]
            if errors:
                assert result.stderr.strip() == errors[0], where
            if command.output and command.output[0].startswith("{"):
                keys = set(json.loads(command.output[0]))
                lines = [json.loads(o) for o in result.stdout.splitlines()]
                assert lines and all(set(o) == keys for o in lines), f"{where}: {result.stdout}"
    return ran


CLI_SQLITE = blocks_where(lambda b: b.lang in SHELL and not b.marker.keys()
                          & {"install", "alembic-shell", "postgresql"})
CLI_POSTGRESQL = blocks_where(lambda b: b.lang in SHELL and "postgresql" in b.marker)


def test_shell_blocks_run_against_a_sqlite_database(tmp_path: Path) -> None:
    ran = run_shell_blocks(CLI_SQLITE, tmp_path, f"sqlite:///{tmp_path / 'shop.db'}")
    assert ran >= 15


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_postgresql_shell_blocks_run(engine: Engine, tmp_path: Path) -> None:
    schema = engine.info_schema  # type: ignore[attr-defined]
    with engine.begin() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'auditors'")).first():
            conn.execute(text("CREATE ROLE auditors"))
    url = engine.url.update_query_dict({"options": f"-csearch_path={schema}"})
    ran = run_shell_blocks(CLI_POSTGRESQL, tmp_path, url.render_as_string(hide_password=False))
    assert ran == sum(1 for b in CLI_POSTGRESQL for c in shell_commands(b)
                      if not c.line.startswith("echo $?"))


# ------------------------------------------------------------------ Alembic

ENV_TAIL = '''

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connectable = engine_from_config(config.get_section(config.config_ini_section),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
'''

MYAPP_MODELS = '''
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlaudit import track_table


class Base(DeclarativeBase):
    pass


@track_table(tracked_fields=["name", "email"])
class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(100))
'''

BASE_REVISION = '''
from alembic import op
import sqlalchemy as sa

revision = "9c1b"
down_revision = None


def upgrade():
    op.create_table("customers", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(100), nullable=False),
                    sa.Column("email", sa.String(100)))


def downgrade():
    op.drop_table("customers")
'''


def alembic_project(root: Path, env_block: Block, revisions: list[str]) -> dict[str, str]:
    (root / "myapp").mkdir(parents=True)
    (root / "myapp" / "__init__.py").write_text("")
    (root / "myapp" / "models.py").write_text(MYAPP_MODELS)
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "migrations" / "env.py").write_text(env_block.code + ENV_TAIL)
    (root / "alembic.ini").write_text(
        f"[alembic]\nscript_location = migrations\nsqlalchemy.url = sqlite:///{root / 'app.db'}\n")
    for n, source in enumerate([BASE_REVISION, *revisions]):
        (root / "migrations" / "versions" / f"r{n}.py").write_text(source)
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PYTHONPATH": str(root),
            "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def as_revision(block: Block, n: int) -> str:
    if re.search(r"^revision = ", block.code, re.M):
        return block.code
    return (f'from alembic import op\nimport sqlaudit.alembic\n\nrevision = "doc{n}"\n'
            f'down_revision = "3f2a"\n\n' + block.code + "\n\ndef downgrade():\n    pass\n")


def audited_names(db: Path) -> list[tuple[str, str]]:
    """Change every column but the key of every customer; the newest audit record."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            columns = [r.name for r in conn.execute(text("PRAGMA table_info(customers)"))
                       if r.name != "id"]
            conn.execute(text("UPDATE customers SET "
                              + ", ".join(f"{c} = {c} || '!'" for c in columns)))
            rows = conn.execute(text("SELECT operation, new_data FROM sqlaudit_log "
                                     "ORDER BY id DESC LIMIT 1")).all()
    finally:
        engine.dispose()
    return [(r.operation, r.new_data) for r in rows]


def test_the_alembic_page_migrates_a_database(tmp_path: Path) -> None:
    """env.py as the page shows it; its hand-written migration; `alembic upgrade head &&
    alembic check` as a shell command; then each schema-change migration of the page,
    on its own copy of that database."""
    blocks = ALL["alembic.md"]
    (env_block,) = [b for b in blocks if "alembic-env" in b.marker]
    revisions = [b for b in blocks if "alembic-revision" in b.marker]
    (shell,) = [b for b in blocks if "alembic-shell" in b.marker]
    first, *alternatives = revisions
    assert 'revision = "3f2a"' in first.code and len(alternatives) >= 2

    root = tmp_path / "main"
    env = alembic_project(root, env_block, [first.code])
    for command in shell_commands(shell):
        result = subprocess.run(["bash", "-c", command.line], cwd=root, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{shell.where}: {command.line}\n{result.stderr}"
    with create_engine(f"sqlite:///{root / 'app.db'}").begin() as conn:
        conn.execute(text("INSERT INTO customers (id, name, email) VALUES (1, 'Ann', 'a@x')"))
    assert audited_names(root / "app.db")[0][0] == "update"

    for n, block in enumerate(alternatives):
        copy = tmp_path / f"alt{n}"
        env = alembic_project(copy, env_block, [first.code, as_revision(block, n)])
        shutil.copy(root / "app.db", copy / "app.db")
        # the copy's alembic.ini names its own file; the database is at 3f2a
        result = subprocess.run(["alembic", "upgrade", "head"], cwd=copy, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{block.where}\n{result.stderr}"
        operation, new_data = audited_names(copy / "app.db")[0]
        assert operation == "update" and "!" in str(new_data), block.where


# ------------------------------------------------------------------ the API page


def test_the_api_page_shows_every_public_name() -> None:
    """Each name of ``sqlaudit.__all__`` is on docs/api.md: in the ``members`` list of
    a module section, or in a module shown with all its members."""
    import sqlaudit

    sections: dict[str, Optional[list[str]]] = {}
    current = ""
    for line in (ROOT / "docs" / "api.md").read_text().splitlines():
        if line.startswith("::: "):
            current = line[4:].strip()
            sections[current] = None
        elif current and line.strip() == "members: false":
            sections[current] = []
        elif current and line.strip().startswith("- ") and line.startswith("        "):
            sections[current] = [*(sections[current] or []), line.strip()[2:]]
    import importlib

    def shown(name: str) -> bool:
        for section, members in sections.items():
            if members is not None:
                if name in members:
                    return True
            elif section != "sqlaudit" and hasattr(importlib.import_module(section), name):
                return True
        return False

    missing = [name for name in sqlaudit.__all__ if not shown(name)]
    assert not missing, f"public names missing from docs/api.md: {missing}"


# ------------------------------------------------------------------ benchmark records

BENCH_RECORDS = blocks_where(lambda b: b.lang in OUTPUT and "$ " in b.code)


def test_output_blocks_show_only_benchmark_commands() -> None:
    """An output block that shows a command records a benchmark run (too long for the
    suite); any other command belongs in a shell block, where it runs."""
    for block in BENCH_RECORDS:
        for line in block.code.splitlines():
            if line.startswith("$ "):
                assert re.match(r"\$ python bench/\w+\.py( |$)", line), f"{block.where}: {line}"


@pytest.mark.parametrize("block", BENCH_RECORDS, ids=[b.where for b in BENCH_RECORDS])
def test_benchmark_commands_shown_run_at_a_tiny_size(block: Block, tmp_path: Path) -> None:
    """The command as shown, with a tiny size, on SQLite: its output has the shown form."""
    (command, *shown) = [line for line in block.code.splitlines() if line.strip()]
    script = command.split()[2]
    assert script == "bench/seal.py", f"{block.where}: no tiny-size run for {script}"
    result = subprocess.run([sys.executable, str(ROOT / script), "--rows", "300", "--rounds", "1",
                             "--dialects", "sqlite"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    sqlite_line = next(line for line in shown if line.startswith("SQLite"))
    form = re.sub(r"[\d.,]+", "N", sqlite_line.split("(")[0])
    assert re.sub(r"[\d.,]+", "N", result.stdout.strip().splitlines()[-1].split("(")[0]) == form
