"""sqlaudit behind a real PgBouncer: the acting user never leaks between clients.

Each test starts its own PgBouncer (the ``pgbouncer`` binary, as a subprocess
on a free port, with a generated ini and userlist) in front of the suite's
PostgreSQL, with a pool of one or two server connections, so every server
connection serves many clients in turn. The tests prove that:

* in ``pool_mode = transaction`` the user, reason and context sqlaudit stamps
  into a transaction reach exactly that transaction's audit rows, however the
  transactions of many concurrent clients interleave on the shared server
  connections, and a client that stamps nothing (another program) records
  NULL (``test_transaction_pooling_never_leaks_the_user``);
* a session-level ``SET`` does leak through a transaction pool: the control
  showing the server connection really is shared, and that sqlaudit's own
  stamp overrides such a value in every transaction it stamps
  (``test_session_level_set_leaks_through_transaction_pooling_but_not_into_stamped_transactions``);
* psycopg 3's automatic prepared statements are incompatible with a
  transaction pool that does not track them (PgBouncer before 1.21, or
  ``max_prepared_statements = 0``), while ``prepare_threshold=None`` makes
  sqlaudit and the application's repeated statements work, and sqlaudit's
  stamp is never prepared on its own path (``test_prepare_threshold_none_*``,
  ``test_default_prepare_threshold_breaks_*``, ``test_the_stamp_at_begin_*``);
* in ``pool_mode = session`` a plain ``SET`` leaks into the session's later
  transactions (and into later clients when ``server_reset_query`` is empty),
  while sqlaudit's stamp, being transaction-local, leaves nothing behind
  (``test_session_pooling_*``).

Schema per test: the suite's other tests put each test in a fresh schema
through ``options=-csearch_path=...`` (see conftest.py). PgBouncer refuses
that startup parameter ("unsupported startup parameter: options"), and
listing it in ``ignore_startup_parameters`` would silently drop it (the
tables would land in ``public``). A ``connect_query`` setting the
search_path would be undone by session pooling's ``DISCARD ALL``. So the
models here name their schema (``MetaData(schema=...)``): every table, the
triggers and ``sqlaudit_log`` itself are schema-qualified, nothing depends
on the search_path, and the schema is created and dropped directly on
PostgreSQL, around the PgBouncer.

The binary is ``SQLAUDIT_PGBOUNCER`` when set, else ``pgbouncer`` on PATH or in
/usr/sbin (Debian: ``apt-get install pgbouncer``). As root it runs as the
``postgres`` (else ``nobody``) user, since PgBouncer refuses to run as root.
Without it the module is skipped with that reason;
``SQLAUDIT_REQUIRE_PGBOUNCER=1`` (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytest
from sqlalchemy import Integer, MetaData, String, create_engine, func, select, text, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from sqlaudit import audit_context, register_hooks, track_table, unregister_hooks
from sqlaudit.config import SQLAuditConfig, set_config
from sqlaudit.retrieval import get_changes, get_resource_changes

psycopg = pytest.importorskip("psycopg")

#: psycopg 3 prepares a statement the 5th time a connection runs it (its
#: default prepare_threshold); the prepared statement lives in the server
#: connection, which a transaction pool hands to other clients. None turns
#: preparing off; PgBouncer >= 1.21 can instead track protocol-level prepared
#: statements itself (max_prepared_statements).
NO_PREPARE = {"prepare_threshold": None}


# ---------------------------------------------------------------- PgBouncer


def _pgbouncer_binary() -> Optional[str]:
    """``SQLAUDIT_PGBOUNCER`` (a path) when set, else pgbouncer on PATH or in sbin."""
    configured = os.environ.get("SQLAUDIT_PGBOUNCER")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    found = shutil.which("pgbouncer")
    if found:
        return found
    for candidate in ("/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"):  # Debian: not on a user's PATH
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise RuntimeError(f"cannot read the PgBouncer version from {out!r}")
    return tuple(int(part or 0) for part in match.groups())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _os_user() -> Optional[str]:
    """PgBouncer refuses to run as root ("PgBouncer should not run as root"):
    as root, its ini names an unprivileged user to switch to."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("SQLAUDIT_PGBOUNCER_OS_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PgBouncer as")


def _quote_ini(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Bouncer:
    """One running PgBouncer in front of the suite's PostgreSQL."""

    url: URL  # SQLAlchemy URL of the PgBouncer database (psycopg 3)
    pool_mode: str
    pool_size: int
    version: tuple[int, ...]
    proc: subprocess.Popen
    workdir: str
    engines: list[Engine] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)

    def engine(self, application_name: str = "sqlaudit-test", prepare: bool = False,
               **kw: Any) -> Engine:
        connect_args = {"application_name": application_name,
                        **({} if prepare else NO_PREPARE), **kw.pop("connect_args", {})}
        engine = create_engine(self.url, connect_args=connect_args, **kw)
        self.engines.append(engine)
        return engine

    def connect(self, application_name: str = "sqlaudit-test-raw", **kw: Any) -> Any:
        """A plain psycopg connection through the PgBouncer: a client that is not
        SQLAlchemy, so sqlaudit's hooks never stamp it ("another program").
        In autocommit mode: ``with conn.transaction()`` is one BEGIN ... COMMIT."""
        conn = psycopg.connect(
            host=self.url.host, port=self.url.port, dbname=self.url.database,
            user=self.url.username, password=self.url.password or None,
            application_name=application_name, **{"autocommit": True, **NO_PREPARE, **kw})
        self.raw.append(conn)
        return conn

    def log(self) -> str:
        with open(os.path.join(self.workdir, "pgbouncer.log"), encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self) -> None:
        for engine in self.engines:
            engine.dispose()
        for conn in self.raw:
            conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: immediate shutdown, closes the server connections
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _start(target: URL, binary: str, pool_mode: str, pool_size: int,
           settings: dict[str, str]) -> Bouncer:
    version = _version(binary)
    workdir = tempfile.mkdtemp(prefix="sqlaudit-pgbouncer-")
    os.chmod(workdir, 0o755)  # readable by the unprivileged user PgBouncer switches to as root
    user = target.username or "postgres"
    database = target.database or "postgres"
    # auth_type = trust: PgBouncer asks clients for no password, but the user
    # must still be listed in auth_file. The server side logs in as ``user``
    # (with the password of the suite's URL, if it has one).
    server = (f"host={target.host or '127.0.0.1'} port={target.port or 5432} "
              f"dbname={database} user={user}")
    if target.password:
        server += f" password={_quote_ini(str(target.password))}"
    port = _free_port()
    ini = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": os.path.join(workdir, "userlist.txt"),
        "pool_mode": pool_mode,
        "default_pool_size": str(pool_size),
        "min_pool_size": "0",
        "reserve_pool_size": "0",
        "max_client_conn": "200",
        **settings,
    }
    os_user = _os_user()
    if os_user:
        ini["user"] = os_user
    lines = ["[databases]", f"{database} = {server}", "", "[pgbouncer]"]
    lines += [f"{key} = {value}" for key, value in ini.items()]
    with open(os.path.join(workdir, "pgbouncer.ini"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    with open(ini["auth_file"], "w", encoding="utf-8") as fh:
        fh.write(f'"{user}" ""\n')
    for name in ("pgbouncer.ini", "userlist.txt"):
        os.chmod(os.path.join(workdir, name), 0o644)
    log = open(os.path.join(workdir, "pgbouncer.log"), "wb")  # stderr: PgBouncer logs there
    try:
        proc = subprocess.Popen([binary, os.path.join(workdir, "pgbouncer.ini")],
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    url = target.set(drivername="postgresql+psycopg", host="127.0.0.1", port=port,
                     query={})
    bouncer = Bouncer(url, pool_mode, pool_size, version, proc, workdir)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            output = bouncer.log()
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"PgBouncer exited with {proc.returncode}:\n{output}")
        try:
            probe = psycopg.connect(host="127.0.0.1", port=port, dbname=database, user=user,
                                    connect_timeout=2)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                output = bouncer.log()
                bouncer.stop()
                raise RuntimeError(f"PgBouncer did not accept connections:\n{output}")
            time.sleep(0.1)
            continue
        probe.execute("SELECT 1")
        probe.close()
        return bouncer


class Starter:
    """``pgbouncer(pool_mode, pool_size, **ini_settings)`` starts a PgBouncer for the test."""

    def __init__(self, target: URL, binary: str) -> None:
        self.target = target
        self.binary = binary
        self.version = _version(binary)
        self.started: list[Bouncer] = []

    def __call__(self, pool_mode: str = "transaction", pool_size: int = 1,
                 **settings: str) -> Bouncer:
        bouncer = _start(self.target, self.binary, pool_mode, pool_size, settings)
        self.started.append(bouncer)
        return bouncer


@pytest.fixture
def pgbouncer(postgres_url: str) -> Iterator[Starter]:
    binary = _pgbouncer_binary()
    if binary is None:
        message = ("PgBouncer is not installed (Debian: apt-get install pgbouncer; "
                   "or point SQLAUDIT_PGBOUNCER at the binary)")
        if os.environ.get("SQLAUDIT_REQUIRE_PGBOUNCER") == "1":
            pytest.fail(message + " (SQLAUDIT_REQUIRE_PGBOUNCER=1)", pytrace=False)
        pytest.skip(message)
    starter = Starter(make_url(postgres_url), binary)
    yield starter
    for bouncer in starter.started:
        bouncer.stop()


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema, created and dropped directly on PostgreSQL (not through PgBouncer)."""
    name = f"sqlaudit_bouncer_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def item_model(schema: str) -> type:
    """``label`` is the one audited field and names who wrote it: ``"<user or ->|<writer>|<step>"``.

    ``backend_pid`` and ``client`` (not audited) record which server
    connection ran the write and for which client, so a test can show that the
    server connections really were shared."""

    class BouncerBase(DeclarativeBase):
        # Schema-qualified tables and audit log: see the module docstring.
        metadata = MetaData(schema=schema)

    @track_table(tracked_fields=["label"])
    class Item(BouncerBase):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        label: Mapped[str] = mapped_column(String(200))
        client: Mapped[str] = mapped_column(String(50))
        backend_pid: Mapped[int] = mapped_column(Integer, server_default=text("pg_backend_pid()"))

    return Item


@pytest.fixture
def Item(schema: str) -> type:
    return item_model(schema)


def create(bouncer: Bouncer, model: type) -> None:
    """create_all through the PgBouncer: installing the audit log and triggers is
    plain transactional DDL, which a transaction pool handles."""
    engine = bouncer.engine(poolclass=NullPool)  # holds no client connection afterwards
    model.metadata.create_all(engine)
    log_schema = model.__table__.schema
    with engine.connect() as conn:
        found = conn.execute(text(
            "SELECT count(*) FROM pg_tables WHERE schemaname = :s AND tablename = 'sqlaudit_log'"),
            {"s": log_schema}).scalar()
    assert found == 1, "the audit log must be in the test's schema"


def expected_user(label: str) -> Optional[str]:
    user = label.split("|", 1)[0]
    return None if user == "-" else user


def insert_sql(model: type) -> str:
    table = model.__table__
    return f'INSERT INTO "{table.schema}"."{table.name}" (id, label, client) VALUES (%s, %s, %s)'


def update_sql(model: type) -> str:
    table = model.__table__
    return (f'UPDATE "{table.schema}"."{table.name}" SET label = %s, client = %s, '
            f"backend_pid = pg_backend_pid() WHERE id = %s")


# ---------------------------------------------------------------- transaction pooling


WRITERS_NULLPOOL = 4  # ORM sessions, a new PgBouncer client connection per transaction
WRITERS_PERSISTENT = 4  # Core, one long-lived PgBouncer client connection each
WRITERS_RAW = 2  # plain psycopg, no sqlaudit hooks: another program
STEPS = 40
POOL = 2  # server connections shared by all 10 clients
ID_SPAN = 100_000


@dataclass
class Written:
    """What a writer committed: label -> (reason, context) it was written under."""

    expected: dict[str, tuple[Optional[str], Optional[dict[str, Any]]]] = field(default_factory=dict)
    transactions: list[list[str]] = field(default_factory=list)  # labels written together
    error: Optional[BaseException] = None


def _hooked_writer(engine: Engine, model: type, writer: int, orm: bool,
                   callback_user: threading.local, out: Written) -> None:
    rng = random.Random(f"pgbouncer-{writer}")
    mine: list[int] = []
    next_id = writer * ID_SPAN
    client = f"w{writer}"
    try:
        for step in range(STEPS):
            mode = rng.choice(["context", "context", "callback", "none"])
            user: Optional[str] = None
            reason: Optional[str] = None
            context: Optional[dict[str, Any]] = None
            if mode == "context":
                user = f"u{writer}-{rng.randrange(3)}"
                reason, context = f"r{writer}-{step}", {"writer": writer, "step": step}
            elif mode == "callback":
                user = f"cb{writer}"
            callback_user.user = user if mode == "callback" else None
            # one or two writes per transaction, the second after a pause that
            # keeps the server connection busy while other clients queue for it
            ops = []
            for part in range(rng.choice([1, 1, 2])):
                label = f"{user or '-'}|{writer}|{step}.{part}"
                if mine and rng.random() < 0.4:
                    ops.append(("update", rng.choice(mine), label))
                else:
                    next_id += 1
                    ops.append(("insert", next_id, label))
            ctx = audit_context(user_id=user, reason=reason, context=context) \
                if mode == "context" else contextlib.nullcontext()
            with ctx:
                if orm:
                    with Session(engine) as session:
                        for n, (op, pk, label) in enumerate(ops):
                            if n:
                                session.execute(text("SELECT pg_sleep(0.002)"))
                            if op == "insert":
                                session.add(model(id=pk, label=label, client=client))
                                session.flush()
                            else:
                                session.execute(update(model).where(model.id == pk).values(
                                    label=label, client=client, backend_pid=func.pg_backend_pid()))
                        session.commit()
                else:
                    with engine.begin() as conn:
                        for n, (op, pk, label) in enumerate(ops):
                            if n:
                                conn.execute(text("SELECT pg_sleep(0.002)"))
                            if op == "insert":
                                conn.exec_driver_sql(insert_sql(model), (pk, label, client))
                            else:
                                conn.exec_driver_sql(update_sql(model), (label, client, pk))
            for op, pk, label in ops:
                if op == "insert":
                    mine.append(pk)
                out.expected[label] = (reason, context)
            out.transactions.append([label for _, _, label in ops])
            if rng.random() < 0.2:
                time.sleep(0.001)
    except BaseException as exc:  # reported by the test
        out.error = exc


def _raw_writer(bouncer: Bouncer, model: type, writer: int, out: Written) -> None:
    rng = random.Random(f"pgbouncer-raw-{writer}")
    client = f"w{writer}"
    mine: list[int] = []
    next_id = writer * ID_SPAN
    try:
        conn = bouncer.connect(application_name=client)
        for step in range(STEPS):
            label = f"-|{writer}|{step}.0"
            with conn.transaction():
                if mine and rng.random() < 0.4:
                    conn.execute(update_sql(model), (label, client, rng.choice(mine)))
                else:
                    next_id += 1
                    conn.execute(insert_sql(model), (next_id, label, client))
                    mine.append(next_id)
            out.expected[label] = (None, None)
            out.transactions.append([label])
    except BaseException as exc:
        out.error = exc


def test_transaction_pooling_never_leaks_the_user(pgbouncer, Item) -> None:
    """10 concurrent clients share 2 server connections (pool_mode = transaction):
    8 SQLAlchemy clients with sqlaudit's hooks mix transactions under an
    audit_context (user, reason, context), under the configured callback's user,
    and with no user at all; 2 plain psycopg clients write without any stamp.
    Every audit row carries exactly the user, reason and context of the
    transaction that wrote it, and NULL where it had none."""
    bouncer = pgbouncer("transaction", POOL)
    create(bouncer, Item)
    callback_user = threading.local()
    set_config(SQLAuditConfig(get_user_id_callback=lambda: getattr(callback_user, "user", None)))
    register_hooks()

    outs: list[Written] = []
    threads = []
    for writer in range(WRITERS_NULLPOOL + WRITERS_PERSISTENT):
        nullpool = writer < WRITERS_NULLPOOL
        engine = bouncer.engine(
            application_name=f"w{writer}",
            **({"poolclass": NullPool} if nullpool else {"pool_size": 1, "max_overflow": 0}))
        out = Written()
        outs.append(out)
        threads.append(threading.Thread(
            target=_hooked_writer, args=(engine, Item, writer, nullpool, callback_user, out)))
    for writer in range(WRITERS_NULLPOOL + WRITERS_PERSISTENT,
                        WRITERS_NULLPOOL + WRITERS_PERSISTENT + WRITERS_RAW):
        out = Written()
        outs.append(out)
        threads.append(threading.Thread(target=_raw_writer, args=(bouncer, Item, writer, out)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a writer hung"
    errors = [out.error for out in outs if out.error is not None]
    assert not errors, f"writers failed: {errors!r}"

    expected = {label: meta for out in outs for label, meta in out.expected.items()}
    with Session(bouncer.engine()) as session:
        records = get_changes(session, models=[Item], sort_direction="asc")
        rows = session.execute(select(Item.client, Item.backend_pid)).all()

    # the workload really shared server connections between clients and users
    clients_by_pid: dict[int, set[str]] = {}
    for client, pid in rows:
        clients_by_pid.setdefault(pid, set()).add(client)
    assert len(clients_by_pid) <= POOL < len(outs)
    assert max(len(c) for c in clients_by_pid.values()) > 1
    users = {expected_user(label) for label in expected}
    assert None in users and len(users) > 10

    # one record per committed write, each with its own transaction's user
    assert sorted(r.new_value for r in records) == sorted(expected)
    for r in records:
        reason, context = expected[r.new_value]
        writer = int(r.new_value.split("|")[1])
        assert (r.changed_by, r.reason, r.context, r.application_name) == (
            expected_user(r.new_value), reason, context, f"w{writer}"), r
    # writes committed together share a transaction id, and no two transactions do
    txid_of = {r.new_value: r.transaction_id for r in records}
    seen: set[int] = set()
    for out in outs:
        for labels in out.transactions:
            txids = {txid_of[label] for label in labels}
            assert len(txids) == 1 and not (txids & seen), labels
            seen |= txids


def test_session_level_set_leaks_through_transaction_pooling_but_not_into_stamped_transactions(
        pgbouncer, Item) -> None:
    """The control: a session-level SET (what sqlaudit never sends) made by one
    client stays on the server connection, and a transaction pool hands it to the
    next client. A write nobody stamps records it; a transaction sqlaudit stamps
    (every transaction, even one without a user) records its own user or NULL.
    AUTOCOMMIT writes are not stamped (a transaction-local value cannot outlive
    one statement), so they are exposed to such a value like any other client."""
    bouncer = pgbouncer("transaction", 1)  # one server connection: every client gets it
    create(bouncer, Item)

    intruder = bouncer.connect(autocommit=True)
    intruder.execute("SET sqlaudit.user_id = 'intruder'")  # session-level, stays on the server

    raw = bouncer.connect()
    with raw.transaction():
        raw.execute(insert_sql(Item), (1, "unstamped", "raw"))

    register_hooks()
    engine = bouncer.engine(poolclass=NullPool)
    with Session(engine) as session:
        session.add(Item(id=2, label="stamped, no user", client="hooked"))
        session.commit()
        with audit_context(user_id="alice"):
            session.add(Item(id=3, label="stamped, alice", client="hooked"))
            session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(Item.__table__.insert().values(id=4, label="autocommit", client="hooked"))

    with Session(engine) as session:
        by_label = {r.new_value: r.changed_by for r in get_resource_changes(Item, session=session)}
        pids = set(session.scalars(select(Item.backend_pid)))
    assert len(pids) == 1  # all on the one server connection
    assert by_label == {
        "unstamped": "intruder",  # the leak a transaction pool makes possible
        "stamped, no user": None,  # sqlaudit's stamp ('' -> NULL) overrides it
        "stamped, alice": "alice",
        "autocommit": "intruder",  # not stamped: see docs/scaling.md
    }


# ---------------------------------------------------------------- prepared statements


def test_prepare_threshold_none_works_through_transaction_pooling(pgbouncer, Item) -> None:
    """psycopg 3 with ``prepare_threshold=None``: 3 long-lived clients on one server
    connection run 30 transactions each, every one repeating the same statements
    (far more often than psycopg's default threshold, 5): an ORM insert without a
    user (stamped with the BEGIN), an audit_context entered inside the open
    transaction (stamped with ``SELECT set_config(...)``, a statement with bound
    values like any other) and a second insert, a history read. Nothing is ever
    prepared on the server, nothing fails, every row has its own user.

    Each transaction commits: psycopg forgets its prepared statements at a
    ROLLBACK, which would hide the problem this guards against."""
    bouncer = pgbouncer("transaction", 1)
    create(bouncer, Item)
    register_hooks()
    failures: list[BaseException] = []
    prepared: list[int] = []

    def work(writer: int) -> None:
        engine = bouncer.engine(application_name=f"w{writer}", pool_size=1, max_overflow=0)
        try:
            for step in range(30):
                user = f"u{writer}-{step % 3}"
                first, second = writer * ID_SPAN + 2 * step, writer * ID_SPAN + 2 * step + 1
                with Session(engine) as session:
                    session.add(Item(id=first, label=f"-|{writer}|{step}", client=f"w{writer}"))
                    session.flush()
                    with audit_context(user_id=user):
                        session.add(Item(id=second, label=f"{user}|{writer}|{step}", client=f"w{writer}"))
                        session.flush()
                    get_resource_changes(Item, session=session, filter_resource_ids=[first, second])
                    prepared.append(session.scalar(text("SELECT count(*) FROM pg_prepared_statements")))
                    session.commit()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert set(prepared) == {0}
    with Session(bouncer.engine()) as session:
        records = get_resource_changes(Item, session=session)
    assert len(records) == 180
    assert all(r.changed_by == expected_user(r.new_value) for r in records)


def test_default_prepare_threshold_breaks_transaction_pooling(pgbouncer, Item) -> None:
    """The reason for ``prepare_threshold=None``, and nothing specific to sqlaudit:
    with psycopg's default threshold, a client's repeated statement is prepared
    on the server connection under a name such as ``_pg3_0``; the next client
    that prepares one on the same server connection collides with it. (PgBouncer
    >= 1.21 can track prepared statements, ``max_prepared_statements``; it is
    turned off here so the control holds on every version.)"""
    settings = {"max_prepared_statements": "0"} if pgbouncer.version >= (1, 21) else {}
    bouncer = pgbouncer("transaction", 1, **settings)
    create(bouncer, Item)
    first = bouncer.connect(prepare_threshold=5)  # psycopg's default
    second = bouncer.connect(prepare_threshold=5)
    with pytest.raises(psycopg.errors.DatabaseError, match="prepared statement"):
        for n in range(10):
            for conn in (first, second):
                with conn.transaction():
                    conn.execute(f'SELECT count(*) FROM "{Item.__table__.schema}".items WHERE id > %s', (n,))


def test_the_stamp_at_begin_is_never_prepared(pgbouncer, Item) -> None:
    """sqlaudit's own stamp on psycopg 3 (``BEGIN; SET LOCAL ...`` in one
    simple-protocol message) is never prepared, whatever prepare_threshold says:
    two clients with psycopg's default threshold, on one server connection, each
    stamp 20 transactions with the same user while every application statement
    is new SQL text (so psycopg never prepares one of them); nothing collides
    and no prepared statement ever exists on the server."""
    bouncer = pgbouncer("transaction", 1)
    create(bouncer, Item)
    register_hooks()
    engines = [bouncer.engine(prepare=True, pool_size=1, max_overflow=0) for _ in range(2)]
    table = f'"{Item.__table__.schema}".items'
    prepared = []
    for step in range(20):
        for n, engine in enumerate(engines):
            pk = step * 2 + n
            with audit_context(user_id=f"user{n}"):
                with engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"INSERT INTO {table} (id, label, client) VALUES ({pk}, 'user{n}|{n}|{step}', 'e{n}')")
                    prepared.append(conn.exec_driver_sql(
                        f"SELECT count(*) + {pk} FROM pg_prepared_statements").scalar() - pk)
    assert set(prepared) == {0}
    with Session(bouncer.engine()) as session:
        records = get_resource_changes(Item, session=session)
    assert len(records) == 40
    assert all(r.changed_by == expected_user(r.new_value) for r in records)


# ---------------------------------------------------------------- session pooling


def _current_user_setting(conn: Any) -> Optional[str]:
    return conn.execute("SELECT NULLIF(current_setting('sqlaudit.user_id', true), '')").fetchone()[0]


def test_session_pooling_plain_set_leaks_but_sqlaudit_stamp_does_not(pgbouncer, Item) -> None:
    """pool_mode = session pins a server connection to a client for its whole
    session, so a plain SET lives on into that client's later transactions; with
    ``server_reset_query`` empty (no DISCARD ALL between clients) also into the
    next client's. sqlaudit's stamp is transaction-local: after its transaction
    the session holds no user, neither for the same client nor for the next
    one, even for writes sqlaudit does not stamp."""
    bouncer = pgbouncer("session", 1, server_reset_query="")
    create(bouncer, Item)
    table = Item.__table__

    # control: a plain SET, same client then next client
    leaky = bouncer.connect()
    with leaky.transaction():
        leaky.execute("SET sqlaudit.user_id = 'leaky'")
    with leaky.transaction():
        leaky.execute(insert_sql(Item), (1, "plain SET, same client", "raw"))
    leaky.close()
    follower = bouncer.connect()
    with follower.transaction():
        follower.execute(insert_sql(Item), (2, "plain SET, next client", "raw"))
    with follower.transaction():
        follower.execute("RESET sqlaudit.user_id")
    follower.close()

    # sqlaudit: audit_context in one transaction, then unstamped writes
    register_hooks()
    engine = bouncer.engine(pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        with audit_context(user_id="alice"):
            with conn.begin():
                conn.execute(table.insert().values(id=3, label="sqlaudit, alice", client="hooked"))
        unregister_hooks()  # the next transaction is not stamped at all
        with conn.begin():
            conn.execute(table.insert().values(id=4, label="sqlaudit, same client", client="hooked"))
            assert conn.exec_driver_sql(
                "SELECT NULLIF(current_setting('sqlaudit.user_id', true), '')").scalar() is None
    engine.dispose()  # the client disconnects; the server connection goes to the next client
    nxt = bouncer.connect()
    assert _current_user_setting(nxt) is None
    with nxt.transaction():
        nxt.execute(insert_sql(Item), (5, "sqlaudit, next client", "raw"))
    nxt.close()  # session pool of one: the reader below needs the server connection

    with Session(bouncer.engine(poolclass=NullPool)) as session:
        by_label = {r.new_value: r.changed_by for r in get_resource_changes(Item, session=session)}
        pids = set(session.scalars(select(Item.backend_pid)))
    assert len(pids) == 1  # one server connection served every client in turn
    assert by_label == {
        "plain SET, same client": "leaky",
        "plain SET, next client": "leaky",
        "sqlaudit, alice": "alice",
        "sqlaudit, same client": None,
        "sqlaudit, next client": None,
    }


def test_session_pooling_default_reset_discards_a_plain_set_between_clients(pgbouncer, Item) -> None:
    """With the default ``server_reset_query = DISCARD ALL`` a session pool clears
    a plain SET when its client disconnects, so it reaches only that client's own
    later transactions; sqlaudit, needing no reset, records each transaction's
    own user under either setting."""
    bouncer = pgbouncer("session", 1)
    create(bouncer, Item)
    leaky = bouncer.connect()
    leaky.execute("SET sqlaudit.user_id = 'leaky'")
    with leaky.transaction():
        leaky.execute(insert_sql(Item), (1, "same client", "raw"))
    leaky.close()
    nxt = bouncer.connect()
    with nxt.transaction():
        nxt.execute(insert_sql(Item), (2, "next client", "raw"))
    nxt.close()
    register_hooks()
    with Session(bouncer.engine(poolclass=NullPool)) as session:
        with audit_context(user_id="bob"):
            session.add(Item(id=3, label="sqlaudit, bob", client="hooked"))
            session.commit()
        by_label = {r.new_value: r.changed_by for r in get_resource_changes(Item, session=session)}
    assert by_label == {"same client": "leaky", "next client": None, "sqlaudit, bob": "bob"}
