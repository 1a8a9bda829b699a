"""Infrastructure the chaos tests may break: a PostgreSQL server, a Redis server and an LCE stack of
each test's own.

The shared PostgreSQL of tests/conftest.py is off limits here: these tests stop, restart and kill
the server, so every test initialises a private cluster in a temp dir (fsync off: durability is not
under test, speed is), on a free loopback port, run as the `postgres` system user when we are root
(PostgreSQL refuses to run as root). Each test also gets its own redis-server and a fresh stack of
real processes on top of the two, torn down afterwards whatever happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from devstack import Service, Stack
from tests.conftest import RedisServer, free_port
from tests.integration.conftest import stack_config

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
DATABASE = "lce"


def postgres_bin_dir() -> Path:
    """The directory holding initdb and postgres: LCE_TEST_PG_BINDIR, the newest Debian
    /usr/lib/postgresql/*/bin, `pg_config --bindir` (when it names the server's), or PATH."""
    candidates: list[str] = []
    if override := os.environ.get("LCE_TEST_PG_BINDIR"):
        candidates.append(override)
    # Sorted by major version, newest first: Debian may keep an old cluster's binaries around.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major_version, reverse=True)
    if pg_config := shutil.which("pg_config"):
        # libpq-dev's pg_config answers /usr/bin, which has no initdb; only trust it if it has one.
        candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    raise RuntimeError(
        "no PostgreSQL server binaries found; run scripts/ensure-test-postgres.sh or set LCE_TEST_PG_BINDIR"
    )


def _major_version(bin_dir: str) -> int:
    version = Path(bin_dir).parent.name
    return int(version) if version.isdigit() else 0


class PostgresServer:
    """A private PostgreSQL cluster that tests can stop, start, restart and SIGKILL on one port."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lce-chaos-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root; as root we hand the cluster to the postgres user.
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            account = pwd.getpwnam(self._user)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the test database (what the services get as LCE_DATABASE_URL)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _libpq_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def initialise(self) -> None:
        subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                "postgres",
                "--auth",
                "trust",  # loopback only, a throwaway cluster: no passwords to manage
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
        )

    def start(self) -> None:
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),  # the unix socket stays in our temp dir, not /var/run/postgresql
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user=self._user,
                group=self._user,
                extra_groups=[] if self._user else None,
                # The postmaster leads its own process group, so kill() can take its backends with it.
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.answers():
                return
            time.sleep(0.05)
        raise TimeoutError(f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def answers(self) -> bool:
        try:
            psycopg.connect(self._libpq_url("postgres"), connect_timeout=1).close()
        except psycopg.OperationalError:
            return False
        return True

    def create_database(self) -> None:
        with psycopg.connect(self._libpq_url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the server exits cleanly."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.process = None

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend at once: a crash, recovered from on the next start."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):  # already gone: a crash is what we wanted anyway
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        self.process = None
        _wait_group_gone(pgid)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_group_gone(pgid: int, timeout_s: float = 10.0) -> None:
    """Waits until no process of the group is left (killed backends are reaped by init, not by us)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise TimeoutError(f"processes of group {pgid} still alive {timeout_s:.0f} s after SIGKILL")


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.initialise()
        server.start()
        server.create_database()
        yield server
    finally:
        server.cleanup()


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Deployment:
    """One test's LCE: the stack of processes, the stores under it, and an HTTP client to its gateway."""

    stack: Stack
    postgres: PostgresServer
    redis: RedisServer
    api: httpx.Client
    log_dir: Path

    def service(self, name: str) -> Service:
        return self.stack.find(name)

    def start_service(self, service: Service, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts a stopped (or killed) service again exactly as devstack first started it."""
        self.stack.start_service(service, timeout_s)

    def replace(self, dead: Service, **env: str) -> Service:
        """A new process in a dead service's place (same port, same env plus `env`), as an orchestrator
        would start one; stopped with the rest of the stack."""
        replacement = dataclasses.replace(dead, name=f"{dead.name}-replacement", env={**dead.env, **env}, process=None)
        self.stack.services.append(replacement)
        self.start_service(replacement)
        return replacement

    def crashed(self) -> list[str]:
        """Services that exited without the test stopping them (a service must survive its stores' faults)."""
        return [service.name for service in self.stack.exited()]


Deploy = Callable[..., Deployment]


@pytest.fixture
def deploy(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    private_postgres: PostgresServer,
    private_redis: RedisServer,
) -> Iterator[Deploy]:
    """`deploy(executors=N, **LCE_env)` starts a fresh stack on this test's own PostgreSQL and Redis."""
    started: list[Deployment] = []

    def _deploy(executors: int = 2, **env: str) -> Deployment:
        config = stack_config(tmp_path, database_url=private_postgres.url, redis_url=private_redis.url, **env)
        config.executors = executors
        stack = Stack(config)
        assert config.log_dir is not None
        try:
            stack.start()
        except BaseException:
            _print_log_dir(config.log_dir)
            raise
        # No client-side retries: a hang or an error during a fault is what the tests measure.
        api = httpx.Client(base_url=config.gateway_url, timeout=10.0)
        deployment = Deployment(stack, private_postgres, private_redis, api, config.log_dir)
        started.append(deployment)
        return deployment

    yield _deploy
    for deployment in started:
        deployment.api.close()
        deployment.stack.stop()
        if _failed(request):
            print(f"\n===== logs kept in {tmp_path}")
            _print_log_dir(deployment.log_dir)
            print(f"===== postgres.log (tail)\n{deployment.postgres.log_tail(2000)}")
    _unmount_below(tmp_path)


def _unmount_below(root: Path) -> None:
    """Lazily unmounts what the sandbox left mounted under the test's work root.

    A SIGKILLed executor cannot unmount its run's tmpfs work dir; the next executor started on the
    same work root sweeps it, but a test that does not start one would leave pytest a tmp dir it
    cannot delete.
    """
    prefix = str(root.resolve()) + os.sep
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):  # deepest first
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "chaos_call_report", None)
    return report is not None and report.failed


def _print_log_dir(log_dir: Path) -> None:
    for log_file in sorted(log_dir.glob("*.log")):
        print(f"===== {log_file.name} (tail)\n{log_file.read_text(errors='replace')[-3000:]}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Kept on the item so fixture teardown can tell a failed test and print the services' logs.
    report = yield
    if call.when == "call":
        item.chaos_call_report = report  # type: ignore[attr-defined]
    return report


# --- the chaos table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaosRow:
    """One line of the closing note's chaos table."""

    fault: str
    runs_total: int
    runs_in_flight: int  # accepted and not yet terminal when the fault struck
    lost: int
    stuck: int
    wrong: int
    outage_s: float
    recover_s: float | None  # from the end of the fault to the last run seen terminal; None: never recovered
    outage_answers: str = ""  # what clients got while it lasted

    def line(self) -> str:
        answers = f" outage_answers={self.outage_answers!r}" if self.outage_answers else ""
        recover = "never" if self.recover_s is None else f"{self.recover_s:.1f}"
        return (
            f"CHAOS fault={self.fault!r} runs={self.runs_total} in_flight={self.runs_in_flight} "
            f"lost={self.lost} stuck={self.stuck} wrong={self.wrong} "
            f"outage_s={self.outage_s:.1f} recover_s={recover}{answers}"
        )


_ROWS = pytest.StashKey[list[ChaosRow]]()
_TABLE_FILE = pytest.StashKey[Path]()


@pytest.fixture
def chaos_table(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Callable[[ChaosRow], None]:
    """Records a row: printed at once (visible with -s) and again in the terminal summary, and
    written to chaos-table.json under the pytest base temp dir."""
    rows = request.config.stash.setdefault(_ROWS, [])
    path = request.config.stash.setdefault(_TABLE_FILE, tmp_path_factory.getbasetemp() / "chaos-table.json")

    def _record(row: ChaosRow) -> None:
        rows.append(row)
        print(row.line())
        path.write_text(json.dumps([asdict(r) for r in rows], indent=2))

    return _record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.section("chaos table")
    for row in rows:
        terminalreporter.write_line(row.line())
    terminalreporter.write_line(f"JSON: {config.stash[_TABLE_FILE]}")
