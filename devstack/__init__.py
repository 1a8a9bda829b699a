"""Runs the whole of LCE on one machine: the services as separate processes, as `make run` and the
integration tests need them.

Each service is started exactly as a platform team would start it alone (`python -m <service>`
with its own `LCE_*` environment); this package only chooses ports, hands each service the
variables it needs (and no others: executors never see a database URL), waits for health, and
stops everything in order. Given the files of `make certs` (`certs_dir`), it hands each service its
own certificate and only the tokens it needs: mTLS and identified callers between every service.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import httpx
import redis

from common import healthcheck
from common.config import GRPC_TLS_VARIABLES, GrpcSecurity

log = logging.getLogger("devstack")
REPO_ROOT = Path(__file__).resolve().parent.parent
# Below the kernel's ephemeral range (32768-60999 on Linux), where another program's outgoing
# connection can hold a port; the last two digits are gRPC's customary 50051, 50052, ...
SESSION_PORT, EXECUTION_PORT, FIRST_EXECUTOR_HEALTH_PORT = 7051, 7052, 7053
# The services that own tables: `python -m <module> migrate` runs before each starts (common/migrations.py).
SCHEMA_OWNERS = ("session_service", "execution_service")


@dataclass
class StackConfig:
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    session_port: int = SESSION_PORT
    execution_port: int = EXECUTION_PORT
    # One health port per executor; empty: FIRST_EXECUTOR_HEALTH_PORT and on, in order.
    executor_health_ports: tuple[int, ...] = ()
    executors: int = 2
    # Variables of each executor's own, by its index (LCE_EXECUTOR_LANGUAGES, LCE_EXECUTOR_POOL: a pool of its own).
    executor_env: tuple[dict[str, str], ...] = ()
    # uvicorn worker processes: the gateway is CPU-bound Python, one process per core.
    gateway_workers: int = 2
    database_url: str | None = None  # None: each service keeps a SQLite file under data_dir
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = REPO_ROOT / "data"
    # Passed to every service: never a store's URL or credentials (those go only to their owners).
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # None: services log to our stderr
    certs_dir: Path | None = None  # made by `make certs`; None: plaintext, no tokens

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"


@dataclass
class Service:
    name: str
    module: str
    env: dict[str, str]
    health: tuple[str, int] | str  # (grpc host, port) or an HTTP URL
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic() of the process's start


class Stack:
    """The services of one LCE deployment, started and stopped together."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.services = self._plan()

    def _base_env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("LCE_")}
        inherited["PYTHONUNBUFFERED"] = "1"
        # LCE_METRICS_LISTEN is handed on per process (_metrics_env): one address cannot serve them all.
        extra = {k: v for k, v in self.config.extra_env.items() if k != "LCE_METRICS_LISTEN"}
        return {**inherited, "LCE_DATA_DIR": str(self.config.data_dir), **extra}

    def _metrics_env(self, offset: int) -> dict[str, str]:
        """The processes share one host, so LCE_METRICS_LISTEN=host:port is the first of consecutive
        ports: session_service, execution_service, each executor, then the gateway (port 0: each picks one)."""
        listen = self.config.extra_env.get("LCE_METRICS_LISTEN", "")
        if not listen:
            return {}
        host, _, port = listen.rpartition(":")
        first = int(port)
        return {"LCE_METRICS_LISTEN": f"{host}:{first + offset if first else 0}"}

    def _secured(self, certificate: str, *tokens: str) -> dict[str, str]:
        """mTLS with `certificate` of the certs dir (its Common Name says who the service is), and the
        files of the tokens named ("executor", "internal")."""
        certs = self.config.certs_dir
        if certs is None:
            return {}
        if not (certs / "ca.pem").is_file():
            raise FileNotFoundError(f"no CA in {certs}: run `make certs` first")
        files = (certs / f"{certificate}.pem", certs / f"{certificate}.key", certs / "ca.pem")
        env = {name: str(path.resolve()) for name, path in zip(GRPC_TLS_VARIABLES, files, strict=True)}
        return env | {f"LCE_{token.upper()}_TOKEN_FILE": str((certs / f"{token}.token").resolve()) for token in tokens}

    def _plan(self) -> list[Service]:
        c = self.config
        session_addr = f"{c.host}:{c.session_port}"
        execution_addr = f"{c.host}:{c.execution_port}"
        base = self._base_env()
        store = {"LCE_DATABASE_URL": c.database_url} if c.database_url else {}
        services = [
            Service(
                "session_service",
                "session_service",
                {
                    **base,
                    **store,
                    "LCE_SESSION_LISTEN": session_addr,
                    "LCE_REDIS_URL": c.redis_url,
                    **self._metrics_env(0),
                    **self._secured("session_service", "internal"),
                },
                (c.host, c.session_port),
            ),
            Service(
                "execution_service",
                "execution_service",
                {
                    **base,
                    **store,
                    "LCE_EXECUTION_LISTEN": execution_addr,
                    "LCE_SESSION_SERVICE_ADDR": session_addr,
                    "LCE_REDIS_URL": c.redis_url,
                    **self._metrics_env(1),
                    **self._secured("execution_service", "executor", "internal"),
                },
                (c.host, c.execution_port),
            ),
        ]
        for index in range(c.executors):
            port = c.executor_health_ports[index] if c.executor_health_ports else FIRST_EXECUTOR_HEALTH_PORT + index
            own = c.executor_env[index] if index < len(c.executor_env) else {}
            services.append(self.executor(index + 1, port, metrics_offset=2 + index, **own))
        services.append(
            Service(
                "gateway",
                "gateway",
                {
                    **base,
                    "LCE_GATEWAY_LISTEN": f"{c.host}:{c.gateway_port}",
                    "LCE_GATEWAY_WORKERS": str(c.gateway_workers),
                    "LCE_REDIS_URL": c.redis_url,
                    "LCE_SESSION_SERVICE_ADDR": session_addr,
                    "LCE_EXECUTION_SERVICE_ADDR": execution_addr,
                    **self._metrics_env(2 + c.executors),
                    **self._secured("gateway", "internal"),
                },
                f"{c.gateway_url}/health",
            )
        )
        return services

    def executor(self, number: int, health_port: int, *, metrics_offset: int | None = None, **env: str) -> Service:
        """Executor number `number` (its id executor-<number>), with `env` of its own; not started."""
        c = self.config
        return Service(
            f"executor-{number}",
            "executor",
            {
                **self._base_env(),
                "LCE_EXECUTION_SERVICE_ADDR": f"{c.host}:{c.execution_port}",
                "LCE_REDIS_URL": c.redis_url,
                "LCE_EXECUTOR_HEALTH_LISTEN": f"{c.host}:{health_port}",
                "LCE_EXECUTOR_ID": f"executor-{number}",
                **(self._metrics_env(metrics_offset) if metrics_offset is not None else {}),
                **self._secured("executor", "executor"),
                **env,
            },
            (c.host, health_port),
        )

    def start(self, timeout_s: float = 60.0) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for service in self.services:
                if service.module in SCHEMA_OWNERS:
                    self.migrate(service, timeout_s)
                self.start_service(service, timeout_s)
        except BaseException:
            self.stop()
            raise

    def start_service(self, service: Service, timeout_s: float = 60.0) -> None:
        """Starts one service (again, after a stop or a crash) and waits until it is healthy."""
        self.spawn(service)
        self._wait_healthy(service, timeout_s)

    def migrate(self, service: Service, timeout_s: float = 60.0) -> None:
        """Upgrades the service's schema, as a deployment does before it starts the service."""
        output = self._log_file(service)
        try:
            done = subprocess.run(
                [sys.executable, "-m", service.module, "migrate"],
                cwd=REPO_ROOT,
                env=service.env,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"`python -m {service.module} migrate` did not end within {timeout_s:.0f} s") from None
        finally:
            if output is not None:
                output.close()
        if done.returncode != 0:
            raise RuntimeError(f"`python -m {service.module} migrate` exited with {done.returncode}")

    def _log_file(self, service: Service) -> BinaryIO | None:
        if self.config.log_dir is None:
            return None
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.config.log_dir / f"{service.name}.log", "ab")  # the caller closes it

    def spawn(self, service: Service) -> None:
        """Starts one service's process without waiting for it to be healthy."""
        output = self._log_file(service)
        service.process = subprocess.Popen(
            [sys.executable, "-m", service.module],
            cwd=REPO_ROOT,
            env=service.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            # Own process group: Ctrl-C in the terminal reaches us, and we stop children in order.
            start_new_session=True,
        )
        service.started_at = time.monotonic()
        if output is not None:
            output.close()

    def _wait_healthy(self, service: Service, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert service.process is not None
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited with {service.process.returncode} while starting")
            if is_healthy(service.health, probe_security(service.env)):
                log.info("%s is healthy", service.name)
                return
            time.sleep(0.05)
        raise TimeoutError(f"{service.name} did not become healthy within {timeout_s:.0f} s")

    def find(self, name: str) -> Service:
        return next(service for service in self.services if service.name == name)

    def stop_service(self, service: Service, grace_s: float = 20.0) -> None:
        process = service.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", service.name, grace_s)
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stops the entry points first (gateway), the stores' owners last."""
        for service in reversed(self.services):
            self.stop_service(service)

    def exited(self) -> list[Service]:
        return [s for s in self.services if s.process is not None and s.process.poll() is not None]


def is_healthy(target: tuple[str, int] | str, security: GrpcSecurity | None = None) -> bool:
    """`security`: the TLS files to probe a gRPC server with (by default the LCE_GRPC_TLS_* variables')."""
    if isinstance(target, str):
        try:
            return httpx.get(target, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    host, port = target
    return healthcheck.check(f"{host}:{port}", timeout_s=1.0, security=security)


def probe_security(env: dict[str, str]) -> GrpcSecurity:
    """A service is probed with its own certificate: health checks need no token."""
    cert, key, ca = (env.get(name) for name in GRPC_TLS_VARIABLES)
    if not (cert and key and ca):
        return GrpcSecurity()
    return GrpcSecurity(tls_cert=Path(cert), tls_key=Path(key), tls_ca=Path(ca))


def redis_reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_local_redis(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """A redis-server for `make run` when none answers at the configured URL."""
    parsed = urlparse(url)
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            parsed.hostname or "127.0.0.1",
            "--port",
            str(parsed.port or 6379),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not redis_reachable(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"could not start redis-server for {url}")
        time.sleep(0.05)
    return process
