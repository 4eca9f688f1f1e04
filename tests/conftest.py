"""Fixtures shared by the whole suite.

Every behaviour test runs twice: on a SQLite file and on PostgreSQL; a module
that sets ``MARIADB_PORTED = True`` runs on MariaDB as well. PostgreSQL
comes from ``SQLAUDIT_TEST_POSTGRES_URL`` when it is set, else from a
testcontainers container where a Docker daemon answers, else the PostgreSQL
half is skipped with the reason shown. ``SQLAUDIT_REQUIRE_POSTGRES=1`` (set by
CI) turns that skip into a failure. Each PostgreSQL test gets its own fresh
schema; each SQLite test its own database file.

MariaDB comes from ``SQLAUDIT_TEST_MARIADB_URL`` (e.g.
``mysql+pymysql://root@127.0.0.1:3306/test``), else that half is skipped with
the reason shown; ``SQLAUDIT_REQUIRE_MARIADB=1`` turns the skip into a failure.
Each MariaDB test gets its own fresh database ``sqlaudit_t_<hex>``.

MySQL 8 (tests/test_mysql8.py, dialect ``"mysql"``) comes from
``SQLAUDIT_TEST_MYSQL_URL``, else a testcontainers ``mysql:8.0`` container
where a Docker daemon answers, else it is skipped with the reason shown;
``SQLAUDIT_REQUIRE_MYSQL=1`` turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterator, Optional

import pytest
from sqlalchemy import String, create_engine, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from sqlaudit import clear_config, unregister_hooks
from sqlaudit.retrieval import get_resource_changes

DIALECTS = ["sqlite", "postgresql"]
#: The dialects of a module that sets ``MARIADB_PORTED = True``.
ALL_DIALECTS = [*DIALECTS, "mariadb"]
#: Containers started by testcontainers for this run, stopped at its end.
_containers: list[Any] = []


def _postgres_container() -> Any:
    try:
        from testcontainers.postgres import PostgresContainer
    except ImportError:
        from testcontainers.community.postgres import PostgresContainer  # type: ignore
    return PostgresContainer("postgres:16-alpine", driver="psycopg")


def _mysql_container() -> Any:
    from testcontainers.mysql import MySqlContainer

    return MySqlContainer("mysql:8.0", dialect="pymysql")


def _docker(container: Callable[[], Any]) -> tuple[Optional[str], str]:
    """The URL of a container started with testcontainers, or None and why not."""
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError:
        return None, "testcontainers is not installed"
    try:
        docker.from_env().ping()
    except Exception as exc:  # no daemon
        return None, f"no Docker daemon answers ({exc.__class__.__name__})"
    made = container()
    made.start()
    _containers.append(made)
    return made.get_connection_url(), "testcontainers"


def _server_url(env: str, server: str, example: str,
                container: Optional[Callable[[], Any]] = None) -> str:
    """``SQLAUDIT_TEST_<env>_URL``, else a testcontainers container (when ``container``
    is given and Docker answers), else a skip naming how to run these tests, which
    ``SQLAUDIT_REQUIRE_<env>=1`` turns into a failure."""
    url = os.environ.get(f"SQLAUDIT_TEST_{env}_URL")
    reason = ""
    if not url and container is not None:
        url, reason = _docker(container)
    if not url:
        message = (f"{server} tests skipped, no server: run them against a local server with "
                   f"SQLAUDIT_TEST_{env}_URL={example}")
        if container is not None:
            message += f", or pip install '.[test,testcontainers]' with Docker running ({reason})"
        if os.environ.get(f"SQLAUDIT_REQUIRE_{env}") == "1":
            pytest.fail(message + f" (SQLAUDIT_REQUIRE_{env}=1)", pytrace=False)
        pytest.skip(message)
    _reachable(url, server, env)
    return url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A skip raised by a fixture (a server or tool that is not there) is reported
    once for the whole run, not once per test: the summary shows one line per
    reason, e.g. ``SKIPPED [612] tests: PostgreSQL tests skipped, no server: ...``."""
    report = yield
    if report.skipped and call.when == "setup" and isinstance(report.longrepr, tuple):
        report.longrepr = (str(item.config.rootpath / "tests"), None, report.longrepr[2])
    return report


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield _server_url("POSTGRES", "PostgreSQL", "postgresql+psycopg://postgres@127.0.0.1:5432/test",
                      _postgres_container)
    for container in _containers:
        container.stop()
    _containers.clear()


@pytest.fixture(scope="session")
def mariadb_url() -> str:
    return _server_url("MARIADB", "MariaDB", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    yield _server_url("MYSQL", "MySQL 8", "mysql+pymysql://root@127.0.0.1:3306/test",
                      _mysql_container)
    for container in _containers:
        container.stop()
    _containers.clear()


def _reachable(url: str, server: str, env: str) -> None:
    """Fail (SQLAUDIT_REQUIRE_<env>=1) or skip, naming the server, when ``url`` does not answer."""
    probe = create_engine(url)
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        message = f"{server} at SQLAUDIT_TEST_{env}_URL is unreachable: {exc}"
        if os.environ.get(f"SQLAUDIT_REQUIRE_{env}") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        probe.dispose()


def _mariadb_engine(url: str, **kw: Any) -> Iterator[Engine]:
    """An engine on a fresh database ``sqlaudit_t_<hex>`` (utf8mb4), dropped afterwards."""
    database = f"sqlaudit_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    target = make_url(url).set(database=database)
    if "charset" not in target.query:
        target = target.update_query_dict({"charset": "utf8mb4"})
    engine = create_engine(target, **kw)
    engine.info_schema = database  # type: ignore[attr-defined]
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin.dispose()


@compiles(String, "mysql")
@compiles(String, "mariadb")
def _string_without_length_on_mariadb(type_: Any, compiler: Any, **kw: Any) -> str:
    """The suite's models say ``String`` without a length, which PostgreSQL and SQLite
    accept and MySQL refuses (a SQLAlchemy rule, not sqlaudit's): on MariaDB, in tests
    only, a plain ``String()`` is a ``VARCHAR(255)``."""
    if type(type_) is String and type_.length is None:
        return "VARCHAR(255)" + (f" COLLATE {type_.collation}" if type_.collation else "")
    return str(compiler.visit_string(type_, **kw))


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules with ``MARIADB_PORTED = True`` run their dialect-parametrised tests on
    MariaDB too (tests that name their dialects with an explicit parametrize keep them)."""
    if "dialect" not in metafunc.fixturenames:
        return
    if not getattr(metafunc.module, "MARIADB_PORTED", False):
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "dialect" in names:
            return
    # as a marker, so that it takes the place of the fixture's own params
    metafunc.definition.add_marker(pytest.mark.parametrize("dialect", ALL_DIALECTS, indirect=True))


def _postgres_engine(url: str, **kw: Any) -> Iterator[Engine]:
    schema = f"sqlaudit_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    connect_args = {"options": f"-csearch_path={schema}", **kw.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kw)
    engine.info_schema = schema  # type: ignore[attr-defined]
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _sqlite_engine(url: str, **kw: Any) -> Iterator[Engine]:
    engine = create_engine(url, **kw)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_engine(dialect: str, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[..., Engine]]:
    """Factory for engines on this test's fresh database (kwargs go to create_engine)."""
    made: list[Iterator[Engine]] = []

    def make(**kw: Any) -> Engine:
        if dialect == "sqlite":
            gen = _sqlite_engine(f"sqlite:///{tmp_path / 'test.db'}", **kw)
        elif dialect == "mariadb":
            gen = _mariadb_engine(request.getfixturevalue("mariadb_url"), **kw)
        elif dialect == "mysql":  # MySQL 8: the same fresh database per test
            gen = _mariadb_engine(request.getfixturevalue("mysql_url"), **kw)
        else:
            url = request.getfixturevalue("postgres_url")
            gen = _postgres_engine(url, **kw)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        for _ in gen:  # run the generators' cleanup
            pass


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


@pytest.fixture
def Base() -> type[DeclarativeBase]:
    """A fresh declarative base (and MetaData) for each test."""

    class TestBase(DeclarativeBase):
        pass

    return TestBase


@pytest.fixture
def Session_(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine)


@pytest.fixture
def readme_db(engine: Engine, Base: Any) -> tuple[type, type]:
    """The original README's User and Customer models, created, with user 1 stored."""
    from sample_models import readme_models

    User, Customer = readme_models(Base)
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(User(user_id=1))
        s.commit()
    return User, Customer


@pytest.fixture(autouse=True)
def _reset_global_state() -> Iterator[None]:
    clear_config()
    unregister_hooks()
    yield
    clear_config()
    unregister_hooks()


def changes(model: type, session: Any, **kw: Any) -> list[Any]:
    """All recorded changes of ``model``, oldest first."""
    kw.setdefault("sort_direction", "asc")
    return get_resource_changes(model, session=session, **kw)


def summary(records: list[Any]) -> list[tuple[Any, ...]]:
    """(operation, resource_id, field, old, new, changed_by) of each record."""
    return [
        (r.operation, r.resource_id, r.field_name, r.old_value, r.new_value, r.changed_by)
        for r in records
    ]


def application_role(engine: Engine) -> Iterator[tuple[str, Engine]]:
    """A PostgreSQL login role with the rights of an application on this test's schema
    (its own tables users and customers, TEMP, nothing else) and an engine logged in
    as it; both removed afterwards. For fixtures: ``yield from application_role(engine)``."""
    name = f"sqlaudit_app_{uuid.uuid4().hex[:8]}"
    schema = engine.info_schema  # type: ignore[attr-defined]
    with engine.begin() as conn:
        database = conn.execute(text("SELECT current_database()")).scalar()
        conn.execute(text(f'CREATE ROLE "{name}" LOGIN'))
        conn.execute(text(f'GRANT TEMP ON DATABASE "{database}" TO "{name}"'))
        conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{name}"'))
        conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON users, customers TO "{name}"'))
        conn.execute(text(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{name}"'))
    app = create_engine(engine.url.set(username=name),
                        connect_args={"options": f"-csearch_path={schema}"})
    yield name, app
    app.dispose()
    with engine.begin() as conn:
        conn.execute(text(f'DROP OWNED BY "{name}"'))
        conn.execute(text(f'DROP ROLE "{name}"'))
