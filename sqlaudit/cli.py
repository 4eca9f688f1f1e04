"""The ``sqlaudit`` command line (the ``cli`` extra: click and rich).

Commands: ``status``, ``sql``, ``log``, ``show``, ``prune``, ``export``, ``grant-read``,
``seal``, ``verify`` and ``maintain-partitions``; see docs/cli.md. Everything but ``sql`` works from the
database alone; ``--models package.module`` imports the application's
``@track_table`` models for typed values, labels and the comparison of the
installed triggers with the models.

Layout: each command is a function ``run_<command>(runtime, ...)`` holding its
logic, and :func:`build_app` wires them into click (built when :func:`main`
runs, so that a missing extra gives a one-line message, not a traceback).
A new command (``state``, ``revert``) adds one ``run_`` function and one
wrapper in :func:`build_app`, reusing :class:`Runtime` (connection, models),
:func:`parse_when` (dates), :func:`resolve_tables` (``--table``),
:func:`confirm_or_refuse` (destructive work) and the exit codes below.
Errors are :class:`CLIError` (one line on stderr, a distinct exit code).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable, Iterator, NoReturn, Optional, Sequence, Union

from sqlalchemy import MetaData, Table, create_engine, func, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from .exceptions import SQLAuditError

try:  # the ``cli`` extra
    import click
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    _MISSING_EXTRA: Optional[ImportError] = _exc
else:
    _MISSING_EXTRA = None

__all__ = ["CLIError", "Runtime", "build_app", "main", "parse_when"]

# ---------------------------------------------------------------- exit codes

EXIT_OK = 0
#: ``status``: a table is not current; ``verify``: the log fails verification
EXIT_CHECK_FAILED = 1
#: click's code for a bad option or argument
EXIT_USAGE = 2
#: no database URL (neither --url nor SQLAUDIT_DATABASE_URL / DATABASE_URL), or
#: one that cannot be used (unparsable, driver missing, not PostgreSQL, SQLite or
#: MariaDB / MySQL)
EXIT_NO_URL = 3
#: the database cannot be reached (refused, unknown host or database, bad
#: credentials, a SQLite file that does not exist or is not a database)
EXIT_UNREACHABLE = 4
#: the database has no ``sqlaudit_log``
EXIT_NO_AUDIT_TABLE = 5
#: ``--table`` names a table that has no triggers, no history and no imported model
EXIT_UNKNOWN_TABLE = 6
#: a date or duration that cannot be read (``--since``, ``--until``, ``--older-than``)
EXIT_BAD_DATE = 7
#: ``--models``: a module cannot be imported, or defines no ``@track_table`` model
EXIT_MODELS = 8
#: ``show``: no such transaction in the log
EXIT_NOT_FOUND = 9
#: sqlaudit or the database refused or failed (an SQL error, a prune refused
#: because the log fails verification, grant-read on SQLite, ...)
EXIT_FAILED = 10
#: revert refused: later changes conflict (nothing was changed)
EXIT_CONFLICT = 11

ENV_URLS = ("SQLAUDIT_DATABASE_URL", "DATABASE_URL")


class CLIError(SQLAuditError):
    """A failure reported as one line on stderr with exit code ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _first_line(value: Any) -> str:
    text = str(value).strip()
    return text.splitlines()[0].strip() if text else type(value).__name__


# ---------------------------------------------------------------- dates

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATE_HELP = ("2026-12-01 (a whole day), 2026-12-01T10:00 (local time unless it "
             "has +02:00 or Z), or a time ago: 30m, 12h, 7d, 2w")


def parse_when(value: str, option: str, now: Optional[datetime] = None) -> Union[date, datetime]:
    """A human date: an ISO day (returned as a ``date``), an ISO date and time
    (naive: local time, or the configured ``time_zone``), or ``N`` followed by
    ``s``, ``m``, ``h``, ``d`` or ``w``: that long before ``now`` (aware, UTC)."""
    match = _RELATIVE.match(value)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[unit]: amount})
    text = value.strip()
    try:
        if _DAY.match(text):
            return date.fromisoformat(text)
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        return datetime.fromisoformat(text)
    except (ValueError, IndexError):
        raise CLIError(EXIT_BAD_DATE, f"{option} {value!r} is not a date: use {DATE_HELP}") from None


def _date_range(since: Optional[str], until: Optional[str]) -> Optional[tuple[Any, Any]]:
    """``(start, end)`` for ``date_range=``, checked the way the library reads it."""
    if since is None and until is None:
        return None
    start = parse_when(since, "--since") if since is not None else None
    end = parse_when(until, "--until") if until is not None else None
    from ._history import date_bounds

    try:
        date_bounds((start, end))
    except ValueError:
        raise CLIError(EXIT_BAD_DATE, f"--since {since!r} is after --until {until!r}") from None
    return start, end


def _cutoff(value: str, option: str, day_end: bool = False) -> datetime:
    """An aware instant from a date or duration (a day means its start, or with
    ``day_end`` its last instant; local time)."""
    from .config import _display_zone

    when = parse_when(value, option)
    if not isinstance(when, datetime):
        when = datetime.combine(when, time.max if day_end else time.min)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_display_zone())
    return when


# ---------------------------------------------------------------- runtime

@dataclasses.dataclass
class Runtime:
    """What every command shares: the URL, the models to import, the consoles."""

    url: Optional[str] = None
    url_source: str = "--url"
    model_modules: list[str] = dataclasses.field(default_factory=list)
    debug: bool = False
    _models: Optional[list[type]] = None
    _engine: Optional[Engine] = None

    # ---- output

    @property
    def out(self) -> "Console":
        return _console(stderr=False)

    @property
    def err(self) -> "Console":
        return _console(stderr=True)

    # ---- models

    def models(self, required: bool = False) -> list[type]:
        """The ``@track_table`` models the ``--models`` modules define (imported once)."""
        if self._models is None:
            self._models = load_models(self.model_modules) if self.model_modules else []
        if required and not self._models:
            raise click.UsageError("this command needs --models package.module "
                                   "(the modules that define your @track_table models)")
        return self._models

    # ---- database

    def database_url(self, check_file: bool = True) -> URL:
        raw, source = self.url, self.url_source
        if not raw:
            for name in ENV_URLS:
                if os.environ.get(name):
                    raw, source = os.environ[name], name
                    break
        if not raw:
            raise CLIError(EXIT_NO_URL, "no database URL: pass --url, or set "
                                        "SQLAUDIT_DATABASE_URL (or DATABASE_URL)")
        try:
            url = make_url(raw)
        except ArgumentError:
            raise CLIError(EXIT_NO_URL, f"the database URL from {source} cannot be parsed; "
                                        "expected e.g. postgresql+psycopg://user@host/db "
                                        "or sqlite:///path/to/file.db") from None
        if url.drivername in ("postgres", "postgresql"):
            # postgres:// (Heroku style) and the bare scheme: use psycopg 3 when it is
            # installed (SQLAlchemy's default driver for the bare scheme is psycopg2)
            driver = "postgresql"
            if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
                driver = "postgresql+psycopg"
            url = url.set(drivername=driver)
        elif url.drivername in ("mysql", "mariadb"):
            # the bare scheme's default driver is mysqlclient: use PyMySQL (sqlaudit's
            # mysql extra) when mysqlclient is not installed
            if importlib.util.find_spec("MySQLdb") is None and importlib.util.find_spec("pymysql"):
                url = url.set(drivername=f"{url.drivername}+pymysql")
        backend = url.get_backend_name()
        if backend not in ("postgresql", "sqlite", "mysql", "mariadb"):
            raise CLIError(EXIT_NO_URL, f"{_safe(url)} is a {backend} database; sqlaudit "
                                        "supports PostgreSQL, SQLite and MariaDB / MySQL")
        if backend == "sqlite" and check_file:
            path = url.database
            in_memory = not path or path == ":memory:" or path.startswith("file:")
            if path and not in_memory and not url.query.get("uri") and not os.path.exists(path):
                # SQLite would create an empty file: a typo must not look like an empty log
                raise CLIError(EXIT_UNREACHABLE, f"cannot connect to {_safe(url)}: "
                                                 f"the file {path!r} does not exist")
        return url

    def engine(self) -> Engine:
        if self._engine is None:
            url = self.database_url()
            try:
                self._engine = create_engine(url)
            except (NoSuchModuleError, ImportError) as exc:
                hint = {"postgresql": " (pip install 'psycopg[binary]', sqlaudit's postgresql extra)",
                        "mysql": " (pip install pymysql, sqlaudit's mysql extra)",
                        "mariadb": " (pip install pymysql, sqlaudit's mysql extra)",
                        }.get(url.get_backend_name(), "")
                raise CLIError(EXIT_NO_URL, f"cannot use {_safe(url)}: the driver is not "
                                            f"installed: {_first_line(exc)}{hint}") from None
        return self._engine

    @contextlib.contextmanager
    def connect(self, audit_table: bool = True) -> Iterator[Connection]:
        """A connection (its transaction rolled back at the end), checked to reach the
        database and, unless ``audit_table=False``, to have ``sqlaudit_log``."""
        engine = self.engine()
        try:
            conn = engine.connect()
            if conn.dialect.name == "sqlite":  # "file is not a database" shows on first use
                conn.exec_driver_sql("SELECT 1 FROM sqlite_master LIMIT 1").all()
        except DBAPIError as exc:
            raise CLIError(EXIT_UNREACHABLE, f"cannot connect to {_safe(engine.url)}: "
                                             f"{_first_line(exc.orig)}") from None
        with conn:
            if audit_table:
                require_audit_table(conn, engine.url)
            yield conn

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def require_audit_table(conn: Connection, url: URL) -> None:
    from .schema import log_schema

    schema = log_schema(conn)
    if schema is None or not sa_inspect(conn).has_table("sqlaudit_log", schema=schema):
        where = ""
        if conn.dialect.name == "postgresql":
            where = (f"schema {schema!r} of " if schema is not None
                     else "the search_path (it names no existing schema) of ")
        raise CLIError(EXIT_NO_AUDIT_TABLE, f"no audit table: sqlaudit_log does not exist in "
                                            f"{where}{_safe(url)}; install the triggers first "
                                            "(metadata.create_all(), install_audit_triggers() "
                                            "or the Alembic operation)")


_CONSOLES: dict[bool, "Console"] = {}


def _console(stderr: bool) -> "Console":
    """Rich consoles without markup highlighting; wide when not a terminal (pipes,
    files), so that columns are not squeezed into 80 characters."""
    if stderr not in _CONSOLES:
        stream = sys.stderr if stderr else sys.stdout
        width = None
        if not stream.isatty() and "COLUMNS" not in os.environ:
            width = 200
        # notes on stderr are single lines: no hard wrapping
        _CONSOLES[stderr] = Console(file=stream, stderr=stderr, highlight=False, width=width,
                                    soft_wrap=stderr)
    return _CONSOLES[stderr]


def load_models(modules: Sequence[str]) -> list[type]:
    """Import ``modules``; return every ``@track_table`` model that is now imported."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the application's package
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the application's import error, whatever it is
            raise CLIError(EXIT_MODELS, f"cannot import --models {name}: "
                                        f"{type(exc).__name__}: {_first_line(exc)}") from None
    from .spec import _MODELS, model_for, table_of

    models = []
    for (schema, name) in sorted(_MODELS.keys(), key=lambda k: (k[0] or "", k[1])):
        model = model_for(schema, name)
        if model is not None and model not in models:
            models.append(model)
    if not models:
        raise CLIError(EXIT_MODELS, f"--models {', '.join(modules)}: no @track_table model "
                                    "was imported")
    return sorted(models, key=lambda m: (table_of(m).schema or "", table_of(m).name))


# ---------------------------------------------------------------- tables

def _display_name(schema: Optional[str], name: str, default: Optional[str]) -> str:
    return name if schema is None or schema == default else f"{schema}.{name}"


def _standin(name: str, schema: Optional[str]) -> Table:
    """A tracked Table that only names ``schema.name``: lets ``get_changes(models=...)``
    select that table's rows in SQL when its model is not imported (values then come
    from the log's JSON, as for any table whose model is not imported)."""
    from .spec import INFO_KEY

    return Table(name, MetaData(), schema=schema,
                 info={INFO_KEY: {"tracked_columns": [], "key_columns": []}})


def installed_here(conn: Connection, found: Optional[dict[Any, Any]] = None
                   ) -> dict[tuple[Optional[str], str], Any]:
    """The sqlaudit triggers of this audit log's tables: on PostgreSQL those of the
    tables in the schemas of search_path, and of any table whose triggers write to
    this connection's ``sqlaudit_log`` (other schemas' logs are other audit trails)."""
    from ._installed import installed_triggers

    found = installed_triggers(conn) if found is None else found
    if conn.dialect.name != "postgresql":
        return found
    from sqlalchemy import text

    from .ddl import _tables_writing_to
    from .schema import log_schema

    schemas = set(conn.execute(text("SELECT unnest(pg_catalog.current_schemas(false))")).scalars())
    schema = log_schema(conn)
    writing = set(_tables_writing_to(conn, schema)) if schema is not None else set()
    return {key: entry for key, entry in found.items()
            if key[0] in schemas or f"{key[0]}.{key[1]}" in writing}


def resolve_tables(conn: Connection, names: Sequence[str]) -> list[Any]:
    """``--table`` values as ``models=`` for the library: the imported model of the
    table, else a stand-in naming it. A name may be ``schema.table``. A table with
    no triggers, no history and no imported model is an error."""
    from ._installed import default_schema
    from .schema import audit_table, log_schema, rows_of_table
    from .spec import model_for

    default = default_schema(conn)
    pg = conn.dialect.name == "postgresql"
    installed = installed_here(conn)
    log = audit_table(MetaData(schema=log_schema(conn)))
    result: list[Any] = []
    for given in names:
        schema, _, name = given.rpartition(".")
        if not pg:
            schema = ""  # SQLite: main.table and table are the same table
        # rows of a model without a schema are logged with table_schema NULL, rows of a
        # model naming one with that schema: both mean the same table in the default schema
        keys = [(schema or None, name)]
        if pg and (not schema or schema == default):
            keys = [(None, name), (default, name)]
        models = [m for m in (model_for(*k) for k in keys) if m is not None]
        if models:
            result.extend(m for m in models if m not in result)
            continue
        known = any((k[0] or default, k[1]) in installed for k in keys) or conn.execute(
            select(log.c.id).where(or_(*[rows_of_table(log, k[1], k[0]) for k in keys]))
            .limit(1)).first() is not None
        if not known:
            tracked = sorted(_display_name(s, t, default) for (s, t) in installed)
            raise CLIError(EXIT_UNKNOWN_TABLE,
                           f"unknown table {given!r}: it has no sqlaudit triggers and no history "
                           f"in sqlaudit_log (tables with triggers: {', '.join(tracked) or 'none'})")
        result.extend(_standin(k[1], k[0]) for k in keys)
    return result


# ---------------------------------------------------------------- value output

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C1 = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def _clean(text: str) -> str:
    """Audit data shown on a terminal: control characters (escape sequences
    included) as visible ``\\xNN`` escapes, never interpreted."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _cell(value: Any) -> "Text":
    if value is None:
        return Text("null", style="dim")
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return Text(_clean(shown))


def _plain(value: Any) -> "Text":
    return Text("" if value is None else _clean(str(value)))


def json_line(value: dict[str, Any]) -> str:
    """One JSON Lines record: UTF-8 kept, DEL and C1 control characters escaped
    (JSON already escapes the others), so no line can drive a terminal."""
    return json.dumps(value, ensure_ascii=False).translate(_C1)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _when(value: Any) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else str(value)


# ---------------------------------------------------------------- status

@dataclasses.dataclass
class TableStatus:
    table: str
    schema: Optional[str]
    state: str
    fields: list[str]
    fail_closed: Optional[bool]
    detail: str
    #: "models" (compared with an imported model) or "database" (installed triggers only)
    source: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _installed_state(conn: Connection, entry: Any, default: Optional[str]) -> tuple[str, str]:
    """State of one table's installed triggers judged from the database alone."""
    from ._installed import EXPECTED, pg_descendants, reflected_name
    from ._naming import pg_function_name_of
    from ._templates import TEMPLATE_VERSION
    from .ddl import AuditState
    from .dialects import rendering_dialect

    fps = [fp for fp in entry.fingerprints if fp is not None]
    if not fps:
        return AuditState.OUTDATED.value, "its triggers carry no sqlaudit fingerprint"
    used = {name for fp in fps for name in [*fp.get("fields", []), *fp.get("key", [])]}
    live = {reflected_name(c["name"], conn)
            for c in sa_inspect(conn).get_columns(entry.table, schema=entry.schema)}
    gone = sorted(used - live)
    if gone:
        return (AuditState.BROKEN.value,
                f"the triggers record column(s) {', '.join(gone)} that the table no longer has")
    expected = EXPECTED[conn.dialect.name]
    if entry.count != expected:
        return AuditState.OUTDATED.value, f"{entry.count} of its {expected} triggers are installed"
    fp = entry.fingerprint
    if fp is None:
        return AuditState.OUTDATED.value, "its triggers were installed by different versions"
    if fp.get("v") != TEMPLATE_VERSION:
        return (AuditState.OUTDATED.value, f"installed by trigger template version {fp.get('v')}; "
                                           f"this sqlaudit installs version {TEMPLATE_VERSION}")
    if conn.dialect.name == "sqlite" and fp.get("require_user"):
        name = f"sqlaudit_{entry.table}_require"
        found = conn.exec_driver_sql(
            "SELECT 1 FROM main.sqlite_master WHERE type = 'trigger' AND name = ?", (name,)).first()
        if found is None:
            return AuditState.OUTDATED.value, "its fail-closed check on sqlaudit_log is missing"
    if conn.dialect.name == "postgresql":
        from .dialects.postgresql import _qualified

        dialect = rendering_dialect("postgresql")
        lacking = [d for d in pg_descendants(
            conn, _qualified(entry.schema, entry.table, dialect),
            _qualified(entry.schema, pg_function_name_of(entry.table), dialect))
            if d.triggers != expected]
        if lacking:
            names = ", ".join(_display_name(d.schema, d.table, default) for d in lacking)
            return AuditState.OUTDATED.value, f"partition or child table(s) {names} lack the triggers"
    return AuditState.CURRENT.value, ""


def collect_status(conn: Connection, models: Sequence[type]) -> list[TableStatus]:
    """Every tracked table: each imported model compared with its installed triggers
    (``audit_status``), then every other table that has sqlaudit triggers, judged
    from the database alone (complete, of this template version, columns present)."""
    from ._installed import default_schema, installed_triggers
    from .ddl import AuditState, audit_status
    from .spec import spec_for, table_of

    default = default_schema(conn)
    everywhere = installed_triggers(conn)  # a model may name any schema
    installed = installed_here(conn, everywhere)
    rows: list[TableStatus] = []
    seen: set[tuple[Optional[str], str]] = set()
    states = audit_status(conn, *models) if models else {}
    for model in models:
        table, spec = table_of(model), spec_for(model)
        key = (table.schema or default, table.name)
        seen.add(key)
        state = states[table.fullname]
        entry = everywhere.get(key)
        detail = ""
        if state == AuditState.MISSING:
            exists = sa_inspect(conn).has_table(table.name, schema=table.schema)
            detail = "no sqlaudit triggers on the table" if exists else "the table does not exist"
        elif entry is not None and state != AuditState.CURRENT:
            _, detail = _installed_state(conn, entry, default)
            if not detail:
                detail = "installed triggers differ from the model (fields, key, types or fail-closed)"
                fp = entry.fingerprint or {}
                wanted = [c.name for c in spec.columns]
                if fp.get("fields") is not None and fp.get("fields") != wanted:
                    detail += f"; installed fields: {', '.join(fp['fields'])}"
                if fp.get("require_user") is not None and fp["require_user"] != spec.require_user:
                    detail += f"; installed fail-closed: {'yes' if fp['require_user'] else 'no'}"
        rows.append(TableStatus(table.name, key[0], state.value, [c.name for c in spec.columns],
                                spec.require_user, detail, "models"))
    for key in sorted(installed, key=lambda k: (k[0] or "", k[1])):
        if key in seen:
            continue
        entry = installed[key]
        found: dict[str, Any] = entry.fingerprint or next((f for f in entry.fingerprints if f), {})
        found_state, detail = _installed_state(conn, entry, default)
        rows.append(TableStatus(entry.table, entry.schema, found_state, list(found.get("fields", [])),
                                found.get("require_user"), detail, "database"))
    return rows


_STATE_STYLE = {"current": "green", "outdated": "yellow", "broken": "bold red", "missing": "red"}


def run_status(rt: Runtime, fmt: str) -> int:
    from ._installed import default_schema

    models = rt.models()
    with rt.connect() as conn:
        rows = collect_status(conn, models)
        default = default_schema(conn)
    failing = not rows or any(r.state != "current" for r in rows)
    if fmt == "json":
        for row in rows:
            sys.stdout.write(json_line(row.to_dict()) + "\n")
    elif rows:
        table = RichTable(title=None, show_lines=False)
        for heading in ("Table", "State", "Fields", "Fail-closed", "Detail"):
            table.add_column(heading, overflow="fold")
        for row in rows:
            closed = "?" if row.fail_closed is None else "yes" if row.fail_closed else "no"
            table.add_row(_plain(_display_name(row.schema, row.table, default)),
                          Text(row.state, style=_STATE_STYLE.get(row.state, "")),
                          _plain(", ".join(row.fields)), closed, _plain(row.detail))
        rt.out.print(table)
    if not rows:
        rt.err.print("no sqlaudit triggers are installed in this database"
                     + ("" if models else " (pass --models to list the tables that should have them)"))
    elif failing:
        bad = sum(r.state != "current" for r in rows)
        rt.err.print(f"{bad} of {len(rows)} tracked tables are not current")
    if not models and rows:
        rt.err.print("without --models: 'current' means complete and of this sqlaudit's trigger "
                     "template; model changes and missing tables show with --models", style="dim")
    return EXIT_CHECK_FAILED if failing else EXIT_OK


# ---------------------------------------------------------------- sql

def run_sql(rt: Runtime, dialect: Optional[str], audit_schema: Optional[str],
            triggers_only: bool) -> None:
    from . import __version__
    from .ddl import render_audit_ddl
    from .dialects import module_for, rendering_dialect
    from . import _templates
    from .schema import USER_PREFIX, audit_table
    from .spec import table_of
    from sqlalchemy.schema import CreateIndex, CreateTable, SetTableComment

    models = rt.models(required=True)
    if dialect is None:
        if rt.url or any(os.environ.get(n) for n in ENV_URLS):
            dialect = rt.database_url(check_file=False).get_backend_name()
        else:
            raise click.UsageError("pass --dialect postgresql, sqlite, mariadb or mysql "
                                   "(or a database URL to take it from)")
    render = rendering_dialect(dialect)
    pg = dialect == "postgresql"
    mysql = dialect in ("mysql", "mariadb")
    statements: list[str] = []
    if not triggers_only:
        for metadata in dict.fromkeys(table_of(m).metadata for m in models):
            schema = audit_table(metadata).schema or (audit_schema or "public" if pg else None)
            log = audit_table(MetaData(schema=schema))
            statements.append(str(CreateTable(log, if_not_exists=True).compile(dialect=render)))
            if pg and log.comment:
                statements.append(str(SetTableComment(log).compile(dialect=render)))
            for index in sorted(log.indexes, key=lambda i: str(i.name)):
                if mysql and index.name == "ix_sqlaudit_log_user":  # no index on an expression
                    statements += _templates.render(
                        "mysql", "user_index", prefix=str(USER_PREFIX),
                        audit_table=render.identifier_preparer.format_table(log))
                    continue
                statements.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=render)))
            statements += module_for(dialect).protect_statements(metadata, render, schema)
    for model in models:
        statements += render_audit_ddl(model, dialect, audit_schema=audit_schema)
    names = ", ".join(table_of(m).fullname for m in models)
    sys.stdout.write(f"-- sqlaudit {__version__}: audit triggers of {names} ({dialect})\n")
    if mysql:
        sys.stdout.write(f"-- run it with: {'mysql' if dialect == 'mysql' else 'mariadb'} "
                         "DATABASE < this-file\n\n")
        _write_delimited([st.strip().rstrip(";") for st in statements])
        return
    sys.stdout.write("\n")
    for statement in statements:
        sys.stdout.write(statement.strip().rstrip(";") + ";\n\n")


def _write_delimited(statements: Sequence[str]) -> None:
    """A script for the ``mariadb`` / ``mysql`` client: trigger bodies hold semicolons,
    so each statement ends with a ``DELIMITER`` that none of them contains."""
    delimiter = "$$"
    while any(delimiter in statement for statement in statements):
        delimiter += "$"
    sys.stdout.write(f"DELIMITER {delimiter}\n\n")
    for statement in statements:
        sys.stdout.write(f"{statement}\n{delimiter}\n\n")
    sys.stdout.write("DELIMITER ;\n")


# ---------------------------------------------------------------- log and show

RECORD_FIELDS = ("table_name", "table_label", "resource_id", "field_name", "old_value",
                 "new_value", "timestamp", "changed_by", "operation", "transaction_id",
                 "reason", "db_role", "context", "application_name", "client_addr")


def _changes_table(records: Sequence[Any], with_transaction: bool = True,
                   with_time: bool = True) -> "RichTable":
    table = RichTable(show_lines=False)
    headings = [*(["Time"] if with_time else []), "Table", "ID", "Op", "Field", "Old", "New",
                *(["User", "Transaction"] if with_transaction else [])]
    for heading in headings:
        table.add_column(heading, overflow="fold")
    for record in records:
        d = record.to_dict()
        op = d["operation"]
        name = d["table_name"] if not d["table_label"] else f"{d['table_name']} ({d['table_label']})"
        if d["field_name"] is None:  # a TRUNCATE: the table, no row or field
            field, old, new = Text("(table truncated)", style="dim"), Text(""), Text("")
        else:
            field = _plain(d["field_name"])
            old = Text("") if op == "insert" else _cell(d["old_value"])
            new = Text("") if op == "delete" else _cell(d["new_value"])
        row = [*([_plain(_when(record.timestamp))] if with_time else []), _plain(name),
               _plain(d["resource_id"]), op, field, old, new]
        if with_transaction:
            row += [_plain(d["changed_by"]), _plain(d["transaction_id"])]
        table.add_row(*row)
    return table


def write_records(rt: Runtime, records: Sequence[Any], fmt: str) -> None:
    if fmt == "json":
        for record in records:
            sys.stdout.write(json_line(record.to_dict()) + "\n")
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(RECORD_FIELDS)
        for record in records:
            d = record.to_dict()
            writer.writerow([_csv_value(d[k]) for k in RECORD_FIELDS])
    elif records:
        rt.out.print(_changes_table(records))


def run_log(rt: Runtime, tables: Sequence[str], ids: Sequence[str], users: Sequence[str],
            transactions: Sequence[int], since: Optional[str], until: Optional[str],
            limit: Optional[int], fmt: str) -> None:
    from .retrieval import get_changes

    date_range = _date_range(since, until)
    rt.models()  # imported models give typed values and labels
    with rt.connect() as conn:
        models = resolve_tables(conn, tables) if tables else None
        records = get_changes(conn, models=models, resource_ids=list(ids) or None,
                              user_ids=list(users) or None,
                              transaction_ids=list(transactions) or None,
                              date_range=date_range, limit=limit)
    write_records(rt, records, fmt)
    if not records:
        rt.err.print("no changes match")
    elif limit is not None and len(records) == limit:
        rt.err.print(f"showing the newest {limit} changes; --limit N or --all for more", style="dim")


def run_show(rt: Runtime, transaction_id: int, fmt: str) -> None:
    from .retrieval import get_transactions

    rt.models()
    with rt.connect() as conn:
        found = get_transactions(conn, transaction_ids=transaction_id)
    if not found:
        raise CLIError(EXIT_NOT_FOUND, f"no transaction {transaction_id} in the audit log")
    tx = found[0]
    if fmt == "json":
        sys.stdout.write(json_line(tx.to_dict()) + "\n")
        return
    head = RichTable.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in (("Transaction", tx.transaction_id), ("Time", _when(tx.timestamp)),
                         ("User", tx.changed_by), ("Reason", tx.reason),
                         ("Context", None if tx.context is None else json.dumps(tx.context, ensure_ascii=False)),
                         ("Application", tx.application_name), ("Client", tx.client_addr)):
        if value is not None:
            head.add_row(label, _plain(value))
    rt.out.print(head)
    rt.out.print(_changes_table(tx.changes, with_transaction=False, with_time=False))


# ---------------------------------------------------------------- past states and undo

def _model_named(rt: Runtime, name: str) -> type:
    """The ``--models`` model whose class name, table name or schema.table is ``name``."""
    from .spec import table_of

    models = rt.models(required=True)
    for model in models:
        table = table_of(model)
        if name in (model.__name__, table.name, table.fullname):
            return model
    known = ", ".join(sorted(table_of(m).fullname for m in models))
    raise CLIError(EXIT_UNKNOWN_TABLE, f"no tracked model or table {name!r} in --models "
                                       f"(known: {known})")


def _at(value: Optional[str]) -> datetime:
    """``--at``: now by default; a day means as it was at the day's end."""
    return datetime.now(timezone.utc) if value is None else _cutoff(value, "--at", day_end=True)


def run_state(rt: Runtime, table: str, resource_id: Optional[str], at: Optional[str],
              fmt: str) -> None:
    from .retrieval import get_resource_state, get_table_state
    from .retrieval import _json_safe

    model = _model_named(rt, table)
    when = _at(at)
    with rt.connect() as conn:
        if resource_id is not None:
            key: Any = resource_id
            if resource_id.startswith("["):  # a composite key as JSON: ["1", "a"]
                key = tuple(json.loads(resource_id))
            state = get_resource_state(model, key, at=when, session=conn)
            if state is None:
                raise CLIError(EXIT_NOT_FOUND, f"{table} {resource_id} did not exist at {_when(when)}")
            if fmt == "json":
                sys.stdout.write(json_line(_json_safe(state)) + "\n")
                return
            grid = RichTable(title=f"{table} {resource_id} at {_when(when)}")
            grid.add_column("field")
            grid.add_column("value")
            for field, value in state.items():
                grid.add_row(_plain(field), _cell(value))
            rt.out.print(grid)
            return
        for rid, state in get_table_state(model, at=when, session=conn):
            sys.stdout.write(json_line({"resource_id": rid, "state": _json_safe(state)}) + "\n")


def run_revert(rt: Runtime, transaction_id: int, skip: bool, user: Optional[str],
               yes: bool) -> None:
    from .context import audit_context
    from .exceptions import SQLAuditRevertConflict
    from .hooks import register_hooks
    from .revert import revert_transaction

    rt.models(required=True)
    confirm_or_refuse(f"Undo every change of transaction {transaction_id}?", yes)
    register_hooks()  # the undo is audited with its reason (and --user)
    kwargs: dict[str, Any] = {} if user is None else {"user_id": user}
    with rt.connect() as conn:
        conn.commit()  # the check above ran in a transaction: start a fresh one
        try:
            with audit_context(**kwargs):
                result = revert_transaction(conn, transaction_id,
                                            on_conflict="skip" if skip else "raise")
                conn.commit()
        except SQLAuditRevertConflict as exc:
            raise CLIError(EXIT_CONFLICT, f"{exc} (conflicting records: {len(exc.conflicts)})") from None
    rt.out.print(f"reverted {len(result.reverted)} changes of transaction {transaction_id}"
                 + (f"; skipped {len(result.skipped)} in conflict" if result.skipped else ""))


# ---------------------------------------------------------------- maintenance

def confirm_or_refuse(question: str, yes: bool) -> None:
    """Destructive work goes ahead with ``--yes``, or after a "y" at a terminal;
    without a terminal and without ``--yes`` it is refused (no silent default)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError("this removes audit history: confirm with --yes "
                               "(no terminal to ask on)")
    click.confirm(question, abort=True, err=True)


@contextlib.contextmanager
def _working(rt: Runtime, message: str) -> Iterator[None]:
    """A spinner on stderr while the database works (only on a terminal)."""
    if rt.err.is_terminal:
        with rt.err.status(message, spinner="dots"):
            yield
    else:
        yield


def count_older(conn: Connection, cutoff: datetime) -> int:
    """Records of ``sqlaudit_log`` with ``changed_at`` before ``cutoff`` (what a prune
    removes, compared as ``prune_audit_log`` compares)."""
    from .schema import audit_table, log_schema

    log = audit_table(MetaData(schema=log_schema(conn)))
    bound = cutoff.astimezone(timezone.utc)
    if conn.dialect.name != "postgresql":
        bound = bound.replace(tzinfo=None)  # SQLite stores UTC text
    return int(conn.execute(select(func.count()).select_from(log)
                            .where(log.c.changed_at < bound)).scalar() or 0)


def _has_seal_table(conn: Connection) -> bool:
    """Whether this audit log was ever sealed (it has ``sqlaudit_seal``)."""
    from .integrity import _Log

    return _Log(conn).has_seal_table()


def run_prune(rt: Runtime, older_than: str, dry_run: bool, yes: bool,
              export_to: Optional[str] = None, export_format: str = "jsonl") -> None:
    from .ddl import prune_audit_log
    from .integrity import seal_audit_log

    cutoff = _cutoff(older_than, "--older-than")
    shown = _when(cutoff)
    with rt.connect() as conn:
        with _working(rt, "counting audit records"):
            count = count_older(conn, cutoff)
        sealed = _has_seal_table(conn)
    if dry_run:
        rt.out.print(f"{count} audit records older than {shown} would be pruned "
                     "(dry run: nothing was removed)")
        return
    if not count:
        rt.out.print(f"no audit records older than {shown}: nothing to prune")
        return
    confirm_or_refuse(f"Prune {count} audit records older than {shown}?", yes)
    with _working(rt, f"pruning {count} audit records older than {shown}"):
        removed = prune_audit_log(rt.engine(), cutoff, export_to=export_to,
                                  export_format=export_format)
    rt.out.print(f"pruned {removed} audit records older than {shown}"
                 + (f", archived to {export_to}" if export_to else ""))
    if sealed:  # the prune is in the chain; only a head kept after it vouches for it
        rt.out.print(f"head: {seal_audit_log(rt.engine())}")
        rt.err.print("keep this head outside the database and pass it to `sqlaudit verify --head`: "
                     "a head kept before the prune reports it as pruned_after_head", style="dim")
    if removed < count:
        rt.err.print(f"{count - removed} records were kept: written by transactions that were "
                     "still open when the log was sealed; the next prune removes them")


def run_maintain_partitions(rt: Runtime, ahead: int) -> None:
    from .ddl import maintain_audit_partitions

    with rt.connect():
        pass  # reachable, with an audit table
    with _working(rt, "maintaining the audit log's partitions"):
        done = maintain_audit_partitions(rt.engine(), ahead=ahead)
    if done.created:
        rt.out.print(f"created {len(done.created)} partitions: {', '.join(done.created)}")
    else:
        rt.out.print(f"every partition up to {ahead} periods ahead exists: nothing to create")
    if done.moved_rows:
        rt.out.print(f"moved {done.moved_rows} records out of the DEFAULT partition")
    if done.guarded:
        rt.out.print(f"added the TRUNCATE guard to {', '.join(done.guarded)}")
    if done.waiting:
        rt.out.print(f"{done.waiting} past periods still wait in the DEFAULT partition: "
                     "run maintain-partitions again")


def run_export(rt: Runtime, before: str, to: str, fmt: str) -> None:
    from .ddl import export_audit_log

    cutoff = _cutoff(before, "--before")
    with rt.connect():
        pass  # reachable, with an audit table
    with _working(rt, f"exporting audit records older than {_when(cutoff)}"):
        count = export_audit_log(rt.engine(), before=cutoff, path=to, format=fmt)
    rt.out.print(f"exported {count} audit records older than {_when(cutoff)} to {to}")


def run_grant_read(rt: Runtime, role: str) -> None:
    from .ddl import grant_audit_read

    with rt.connect():
        pass  # reachable, with an audit table
    grant_audit_read(rt.engine(), role)
    if rt.engine().dialect.name == "postgresql":
        rt.out.print(f"role {role!r} may now read sqlaudit_log (USAGE on its schema, SELECT on the table)")
    else:
        rt.out.print(f"account {role!r} may now read sqlaudit_log (SELECT on the table"
                     " and on sqlaudit_seal when the log is sealed)")


def run_seal(rt: Runtime) -> None:
    from .integrity import seal_audit_log

    with rt.connect():
        pass
    with _working(rt, "sealing the audit log"):
        head = seal_audit_log(rt.engine())
    sys.stdout.write(head + "\n")
    rt.err.print("sealed; keep this head digest outside the database and pass it to "
                 "`sqlaudit verify --head`", style="dim")


def run_verify(rt: Runtime, head: Optional[str], fmt: str) -> int:
    from .integrity import verify_audit_log

    with rt.connect():
        pass
    with _working(rt, "verifying the audit log"):
        result = verify_audit_log(rt.engine(), head=head)
    if fmt == "json":
        sys.stdout.write(json_line({
            "ok": result.ok, "head": result.head, "seals": result.seals,
            "sealed_rows": result.sealed_rows, "unsealed_rows": result.unsealed_rows,
            "problems": [dataclasses.asdict(p) for p in result.problems]}) + "\n")
    else:
        out = rt.out
        verdict = Text("OK", style="green") if result.ok else Text("TAMPERED", style="bold red")
        out.print(Text("audit log: ") + verdict)
        out.print(f"seal entries: {result.seals}; sealed rows: {result.sealed_rows}; "
                  f"rows not sealed yet: {result.unsealed_rows}")
        out.print(f"head: {result.head or '(never sealed: run sqlaudit seal)'}")
        for problem in result.problems:
            out.print(Text(f"{problem.kind}: ", style="red") + _plain(problem.message))
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


# ---------------------------------------------------------------- click wiring

def build_app() -> "click.Group":
    """The click group (built at run time: click is an optional extra)."""
    from . import __version__

    def set_url(ctx: "click.Context", param: Any, value: Optional[str]) -> None:
        if value:
            ctx.ensure_object(Runtime).url = value

    def add_models(ctx: "click.Context", param: Any, value: tuple[str, ...]) -> None:
        runtime = ctx.ensure_object(Runtime)
        runtime.model_modules.extend(v for v in value if v not in runtime.model_modules)

    def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
        """--url and --models, accepted before the command name and after it."""
        command = click.option(
            "--models", "-m", multiple=True, expose_value=False, callback=add_models,
            metavar="MODULE", help="Import MODULE (package.module) for its @track_table "
                                   "models: typed values, labels, status against the models. "
                                   "Repeatable.")(command)
        return click.option(
            "--url", expose_value=False, callback=set_url, metavar="URL",
            help="Database URL (SQLAlchemy form). Default: $SQLAUDIT_DATABASE_URL, "
                 "then $DATABASE_URL.")(command)

    class Group(click.Group):
        def list_commands(self, ctx: "click.Context") -> list[str]:
            return list(self.commands)  # in the order below, not alphabetical

    @click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
    @connection_options
    @click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error.")
    @click.version_option(__version__, prog_name="sqlaudit")
    @click.pass_context
    def app(ctx: "click.Context", debug: bool) -> None:
        """Audit trail of a sqlaudit database: state of the triggers, history,
        retention and tamper evidence. Exit codes: see docs/cli.md."""
        ctx.ensure_object(Runtime).debug = debug

    fmt_records = click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]),
                               default="table", show_default=True,
                               help="json: one object per line (JSON Lines).")

    @app.command()
    @connection_options
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                  show_default=True, help="json: one object per table per line.")
    @click.pass_obj
    def status(rt: Runtime, fmt: str) -> None:
        """Every tracked table: current, outdated, missing or broken.

        Exits 1 when any table is not current (or none has triggers). With
        --models each model is compared with its installed triggers; without,
        the installed triggers are read from the database alone."""
        raise SystemExit(run_status(rt, fmt))

    @app.command()
    @connection_options
    @click.option("--dialect", type=click.Choice(["postgresql", "sqlite", "mariadb", "mysql"]),
                  help="Database to render for (default: the URL's, when one is given).")
    @click.option("--audit-schema", metavar="SCHEMA",
                  help="PostgreSQL: schema of sqlaudit_log (default: the models' "
                       "MetaData schema, else public).")
    @click.option("--triggers-only", is_flag=True,
                  help="Only the triggers (no CREATE TABLE sqlaudit_log, indexes or guards).")
    @click.pass_obj
    def sql(rt: Runtime, dialect: Optional[str], audit_schema: Optional[str],
            triggers_only: bool) -> None:
        """Print the SQL that installs the audit triggers of the --models.

        Needs no database: review it, or run it (psql -1 -f, sqlite3 db < file,
        mariadb db < file)."""
        run_sql(rt, dialect, audit_schema, triggers_only)

    @app.command()
    @connection_options
    @click.option("--table", "tables", multiple=True, metavar="TABLE",
                  help="Only this table (schema.table on PostgreSQL). Repeatable.")
    @click.option("--id", "ids", multiple=True, metavar="ID",
                  help="Only this row key, as shown in the ID column. Repeatable.")
    @click.option("--user", "users", multiple=True, metavar="USER",
                  help="Only changes by this user id. Repeatable.")
    @click.option("--transaction", "transactions", multiple=True, type=int, metavar="TX",
                  help="Only this transaction id. Repeatable.")
    @click.option("--since", metavar="WHEN", help=f"From WHEN: {DATE_HELP}.")
    @click.option("--until", metavar="WHEN", help="Up to WHEN (a day: to its end).")
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, metavar="N",
                  help="At most N changed fields, newest first.")
    @click.option("--all", "all_", is_flag=True, help="No limit.")
    @fmt_records
    @click.pass_obj
    def log(rt: Runtime, tables: tuple[str, ...], ids: tuple[str, ...], users: tuple[str, ...],
            transactions: tuple[int, ...], since: Optional[str], until: Optional[str],
            limit: int, all_: bool, fmt: str) -> None:
        """Changes across the tracked tables, newest first: one line per changed field."""
        run_log(rt, tables, ids, users, transactions, since, until, None if all_ else limit, fmt)

    @app.command()
    @connection_options
    @click.argument("transaction_id", type=int)
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                  show_default=True, help="json: the transaction as one object.")
    @click.pass_obj
    def show(rt: Runtime, transaction_id: int, fmt: str) -> None:
        """One transaction: who, when, why, and every change it made."""
        run_show(rt, transaction_id, fmt)

    @app.command()
    @connection_options
    @click.option("--older-than", required=True, metavar="WHEN",
                  help="Remove records older than this: a time ago (90d, 12w, 24h) or a date.")
    @click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--export-to", metavar="FILE",
                  help="Write exactly the removed records to this new file first "
                       "(nothing is pruned if it cannot be written).")
    @click.option("--export-format", type=click.Choice(["jsonl", "csv"]), default="jsonl",
                  show_default=True, help="Format of --export-to.")
    @click.pass_obj
    def prune(rt: Runtime, older_than: str, dry_run: bool, yes: bool,
              export_to: Optional[str], export_format: str) -> None:
        """Delete audit records older than a cutoff (the log stays verifiable)."""
        run_prune(rt, older_than, dry_run, yes, export_to, export_format)

    @app.command()
    @connection_options
    @click.option("--before", required=True, metavar="WHEN",
                  help=f"Export records older than this: {DATE_HELP}.")
    @click.option("--to", "to", required=True, metavar="FILE",
                  help="The archive to write (a new file; an existing one is refused).")
    @click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
                  show_default=True, help="jsonl: one JSON object per record.")
    @click.pass_obj
    def export(rt: Runtime, before: str, to: str, fmt: str) -> None:
        """Write audit records older than a cutoff to a file (the log is unchanged)."""
        run_export(rt, before, to, fmt)

    @app.command()
    @connection_options
    @click.argument("table")
    @click.argument("resource_id", required=False)
    @click.option("--at", metavar="WHEN", help=f"The time to look at (default now): {DATE_HELP}.")
    @click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                  show_default=True, help="One row (table or json); a whole table is JSON Lines.")
    @click.pass_obj
    def state(rt: Runtime, table: str, resource_id: Optional[str], at: Optional[str],
              fmt: str) -> None:
        """A row (or, without RESOURCE_ID, every row) of TABLE as it was at a time (needs --models)."""
        run_state(rt, table, resource_id, at, fmt)

    @app.command()
    @connection_options
    @click.argument("transaction_id", type=int)
    @click.option("--skip-conflicts", is_flag=True,
                  help="Undo what does not conflict with later changes, report the rest.")
    @click.option("--user", metavar="USER", help="The user to record for the undo.")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.pass_obj
    def revert(rt: Runtime, transaction_id: int, skip_conflicts: bool, user: Optional[str],
               yes: bool) -> None:
        """Undo a transaction's changes, audited as "revert of transaction N" (needs --models)."""
        run_revert(rt, transaction_id, skip_conflicts, user, yes)

    @app.command("maintain-partitions")
    @connection_options
    @click.option("--ahead", type=click.IntRange(min=0, max=400), default=3, show_default=True,
                  metavar="N", help="Periods after the current one to create partitions for.")
    @click.pass_obj
    def maintain_partitions(rt: Runtime, ahead: int) -> None:
        """Create the partitions of a partitioned audit log ahead of time (PostgreSQL).

        Run it from cron (daily is plenty); safe to run twice at once and while
        the application writes."""
        run_maintain_partitions(rt, ahead)

    @app.command("grant-read")
    @connection_options
    @click.argument("role")
    @click.pass_obj
    def grant_read(rt: Runtime, role: str) -> None:
        """Let database ROLE read the audit log, nothing more (PostgreSQL: a role;
        MariaDB / MySQL: an account 'user'@'host' or a role)."""
        run_grant_read(rt, role)

    @app.command()
    @connection_options
    @click.pass_obj
    def seal(rt: Runtime) -> None:
        """Seal the new audit records into the hash chain; print the head digest."""
        run_seal(rt)

    @app.command()
    @connection_options
    @click.option("--head", metavar="DIGEST",
                  help="A head printed by `sqlaudit seal` and kept outside the database.")
    @click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                  show_default=True)
    @click.pass_obj
    def verify(rt: Runtime, head: Optional[str], fmt: str) -> None:
        """Check the audit log against its seals; exits 1 when it was tampered with."""
        raise SystemExit(run_verify(rt, head, fmt))

    return app


def _fail(code: int, message: str) -> NoReturn:
    sys.stderr.write(f"Error: {message}\n")
    raise SystemExit(code)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``sqlaudit`` console script and ``python -m sqlaudit``."""
    if _MISSING_EXTRA is not None:
        _fail(EXIT_FAILED, "the sqlaudit command line needs its cli extra: pip install "
                           f"click rich ({_MISSING_EXTRA})")
    from .exceptions import SQLAuditTableNotInDatabaseError

    runtime = Runtime()
    app = build_app()
    try:
        app.main(args=list(argv) if argv is not None else None, prog_name="sqlaudit",
                 obj=runtime, standalone_mode=True)
    except CLIError as exc:
        _fail(exc.code, exc.message)
    except SQLAuditTableNotInDatabaseError as exc:
        _fail(EXIT_NO_AUDIT_TABLE, _first_line(exc))
    except SQLAuditError as exc:
        if runtime.debug:
            raise
        _fail(EXIT_FAILED, _first_line(exc))
    except DBAPIError as exc:
        if runtime.debug:
            raise
        _fail(EXIT_FAILED, f"the database refused: {_first_line(exc.orig)}")
    except Exception as exc:
        if runtime.debug:
            raise
        _fail(EXIT_FAILED, f"{type(exc).__name__}: {_first_line(exc)} (--debug shows the traceback)")
    finally:
        runtime.dispose()
