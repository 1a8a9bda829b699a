"""Configuration from `LCE_*` environment variables.

Every variable any service reads is declared here, once, with its default (but LCE_LOG_LEVEL,
which common/logs.py reads before any config exists); the README's configuration table is this
module in prose. Each service builds only the settings it needs,
so a service never sees (or requires) another's secrets: the executor, for one, has no
database URL at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# The longest an executor may keep retrying a report; RQ's job timeout leaves room for it (common.job).
REPORT_RETRY_MAX_S = 600
# The compile stage's limits: the deployment's defaults, which a run may only lower. Sized for the
# heaviest ordinary programs (a C++ program of the whole standard library, a Go one of net/http; README).
DEFAULT_COMPILE_TIME_LIMIT_MS = 10_000
DEFAULT_COMPILE_MEMORY_LIMIT_MB = 512
DEFAULT_COMPILE_CACHE_DIR = Path("/var/cache/lce/compile")
# The libraries runs may use (executor/packages.py), installed at setup; read-only for everyone else.
DEFAULT_PACKAGES_DIR = Path("/var/lib/lce/packages")


class ConfigError(ValueError):
    """An environment variable is set to something the service cannot use."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    _check_bounds(name, value, minimum, maximum)
    return value


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    _check_bounds(name, value, minimum, maximum)
    return value


def env_floats(name: str, default: tuple[float, ...], *, minimum: float = 0) -> tuple[float, ...]:
    """A comma-separated list of numbers, e.g. "2,4,8"; an empty list is allowed as "none"."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError as exc:
        raise ConfigError(f"{name} must be comma-separated numbers (or none), got {raw!r}") from exc
    for value in values:
        _check_bounds(name, value, minimum, None)
    return values


def _check_bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")


_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def env_name(name: str, default: str) -> str:
    """A short lower-case name (letters, digits, '_', '-'), as a label and a Kubernetes name allow."""
    value = env_str(name, default)
    if not _NAME.fullmatch(value):
        raise ConfigError(f"{name} must be 1 to 63 lower-case letters, digits, '_' or '-', got {value!r}")
    return value


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


# An origin as a browser sends it: scheme, lower-case host (or [IPv6]) and port, nothing after.
_ORIGIN = re.compile(r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def env_origins(name: str) -> tuple[str, ...]:
    """Comma-separated web origins such as https://ide.example.com, or * alone (any origin); empty: none."""
    origins = tuple(part.strip() for part in os.environ.get(name, "").split(",") if part.strip())
    if "*" in origins and len(origins) > 1:
        raise ConfigError(f"{name}: * means any origin and stands alone, got {','.join(origins)!r}")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{name}: {origin!r} is not an origin as browsers send it "
                "(scheme://host[:port] in lower case, no path, no trailing slash)"
            )
    return origins


def data_dir() -> Path:
    return Path(env_str("LCE_DATA_DIR", "data"))


def database_url(service: str) -> str:
    """PostgreSQL (`postgresql+psycopg://...`) when LCE_DATABASE_URL is set, else a SQLite file of the service's own."""
    url = os.environ.get("LCE_DATABASE_URL")
    if url:
        return url
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / (service + '.db')}"


# `make certs` makes tokens of 64 hex characters; a shorter one is refused.
MIN_TOKEN_CHARS = 32
GRPC_TLS_VARIABLES = ("LCE_GRPC_TLS_CERT", "LCE_GRPC_TLS_KEY", "LCE_GRPC_TLS_CA")


def env_tokens(name: str) -> tuple[str, ...]:
    """Tokens from NAME, or from the file NAME_FILE names, separated by commas or whitespace."""
    raw, path = os.environ.get(name, ""), os.environ.get(f"{name}_FILE", "")
    if raw and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            raw = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path} ({exc.strerror})") from exc
    tokens = tuple(raw.replace(",", " ").split())
    # Never the token itself in the message: it ends up in logs.
    if any(len(token) < MIN_TOKEN_CHARS for token in tokens):
        raise ConfigError(f"{name}: a token must have at least {MIN_TOKEN_CHARS} characters (openssl rand -hex 32)")
    return tokens


@dataclass(frozen=True)
class GrpcSecurity:
    """Service-to-service security (README "Security model"). With the three TLS files, a gRPC server
    requires a client certificate signed by the CA (mTLS) and a channel presents the process's own.
    Tokens identify callers, beside certificates or instead of them: the executors' and the internal
    one (the gateway's and the services'). Of each list the first token is presented and every one
    accepted, so a rotation lists the new one first. Nothing set: plaintext, no caller identified."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    executor_tokens: tuple[str, ...] = ()
    internal_tokens: tuple[str, ...] = ()
    # Plaintext beyond loopback, where the network does its own TLS (a service mesh).
    allow_plaintext: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_ca is not None

    @property
    def executor_token(self) -> str:
        return self.executor_tokens[0] if self.executor_tokens else ""

    @property
    def internal_token(self) -> str:
        return self.internal_tokens[0] if self.internal_tokens else ""

    @classmethod
    def from_env(cls, *, executor_token: bool = False, internal_token: bool = False) -> GrpcSecurity:
        """The TLS files, and only the tokens this process needs: a service never reads another's secret."""
        files = {name: os.environ.get(name, "") for name in GRPC_TLS_VARIABLES}
        given = [name for name, value in files.items() if value]
        if given and len(given) < len(files):
            raise ConfigError(f"{', '.join(GRPC_TLS_VARIABLES)} go together; only {', '.join(given)} set")
        for name in given:
            if not Path(files[name]).is_file():
                raise ConfigError(f"{name}: no file at {files[name]}")
        executor_tokens = env_tokens("LCE_EXECUTOR_TOKEN") if executor_token else ()
        internal_tokens = env_tokens("LCE_INTERNAL_TOKEN") if internal_token else ()
        if set(executor_tokens) & set(internal_tokens):
            raise ConfigError("LCE_EXECUTOR_TOKEN and LCE_INTERNAL_TOKEN must differ")
        # Without certificates, a server holding one token alone could identify no other caller.
        if executor_token and internal_token and not given and bool(executor_tokens) != bool(internal_tokens):
            raise ConfigError("without LCE_GRPC_TLS_*, set both LCE_EXECUTOR_TOKEN and LCE_INTERNAL_TOKEN or neither")
        cert, key, ca = (Path(files[name]) if files[name] else None for name in GRPC_TLS_VARIABLES)
        return cls(
            tls_cert=cert,
            tls_key=key,
            tls_ca=ca,
            executor_tokens=executor_tokens,
            internal_tokens=internal_tokens,
            allow_plaintext=env_bool("LCE_GRPC_ALLOW_PLAINTEXT"),
        )


@dataclass(frozen=True)
class SessionServiceConfig:
    listen_addr: str
    database_url: str
    metrics_listen_addr: str = ""  # host:port of /metrics (common/metrics.py); empty: not served
    # Read only: the executors' announcements (common/executor_registry.py), for the languages' versions.
    redis_url: str = "redis://127.0.0.1:6379/0"
    grpc_security: GrpcSecurity = GrpcSecurity()

    @classmethod
    def from_env(cls) -> SessionServiceConfig:
        return cls(
            listen_addr=env_str("LCE_SESSION_LISTEN", "127.0.0.1:7051"),
            database_url=database_url("session"),
            metrics_listen_addr=env_str("LCE_METRICS_LISTEN", ""),
            redis_url=env_str("LCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            grpc_security=GrpcSecurity.from_env(internal_token=True),
        )


@dataclass(frozen=True)
class WebhookConfig:
    """Webhooks (README "Webhooks"). Without a secret, a run's callback_url is refused. `allow` holds
    LCE_CALLBACK_ALLOW's host:port and CIDR entries (checked by execution_service/callback_targets.py);
    `retry_s` the waits before each retry of a failed delivery."""

    secret: str = ""
    allow: tuple[str, ...] = ()
    retry_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    timeout_s: float = 5.0

    @classmethod
    def from_env(cls) -> WebhookConfig:
        secrets = env_tokens("LCE_WEBHOOK_SECRET")
        if len(secrets) > 1:
            raise ConfigError("LCE_WEBHOOK_SECRET is one secret")
        return cls(
            secret=secrets[0] if secrets else "",
            allow=tuple(entry.strip() for entry in env_str("LCE_CALLBACK_ALLOW", "").split(",") if entry.strip()),
            retry_s=env_floats("LCE_WEBHOOK_RETRY_S", cls.retry_s, minimum=0.1),
            timeout_s=env_float("LCE_WEBHOOK_TIMEOUT_S", cls.timeout_s, minimum=0.5, maximum=60),
        )


@dataclass(frozen=True)
class ExecutionServiceConfig:
    listen_addr: str
    database_url: str
    redis_url: str
    queue_name: str
    session_service_addr: str
    runs_per_minute: int
    failure_streak_limit: int
    failure_cooldown_s: int
    # Reliability (README "Reliability"): how long an executor's claim on a run lasts unrenewed,
    # the waits before each infrastructure retry (their count is the number of retries), how
    # often the reconciler sweeps, and how long an Idempotency-Key keeps answering its execution.
    lease_s: int
    retry_backoff_s: tuple[float, ...]
    reconcile_interval_s: float
    idempotency_window_s: int
    metrics_listen_addr: str = ""
    compile_time_limit_ms: int = DEFAULT_COMPILE_TIME_LIMIT_MS
    compile_memory_limit_mb: int = DEFAULT_COMPILE_MEMORY_LIMIT_MB
    grpc_security: GrpcSecurity = GrpcSecurity()
    webhooks: WebhookConfig = WebhookConfig()

    @classmethod
    def from_env(cls) -> ExecutionServiceConfig:
        return cls(
            listen_addr=env_str("LCE_EXECUTION_LISTEN", "127.0.0.1:7052"),
            database_url=database_url("execution"),
            redis_url=env_str("LCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            queue_name=env_str("LCE_QUEUE_NAME", "lce-executions"),
            session_service_addr=env_str("LCE_SESSION_SERVICE_ADDR", "127.0.0.1:7051"),
            runs_per_minute=env_int("LCE_RUNS_PER_MINUTE", 10, minimum=1),
            failure_streak_limit=env_int("LCE_FAILURE_STREAK_LIMIT", 5, minimum=1),
            failure_cooldown_s=env_int("LCE_FAILURE_COOLDOWN_S", 60, minimum=1),
            lease_s=env_int("LCE_LEASE_S", 10, minimum=2, maximum=3600),
            retry_backoff_s=env_floats("LCE_RETRY_BACKOFF_S", (2.0, 4.0, 8.0)),
            reconcile_interval_s=env_float("LCE_RECONCILE_INTERVAL_S", 1.0, minimum=0.05, maximum=60),
            idempotency_window_s=env_int("LCE_IDEMPOTENCY_WINDOW_S", 24 * 3600, minimum=1),
            metrics_listen_addr=env_str("LCE_METRICS_LISTEN", ""),
            compile_time_limit_ms=env_int(
                "LCE_COMPILE_TIME_LIMIT_MS", DEFAULT_COMPILE_TIME_LIMIT_MS, minimum=1000, maximum=120_000
            ),
            compile_memory_limit_mb=env_int(
                "LCE_COMPILE_MEMORY_LIMIT_MB", DEFAULT_COMPILE_MEMORY_LIMIT_MB, minimum=128, maximum=8192
            ),
            grpc_security=GrpcSecurity.from_env(executor_token=True, internal_token=True),
            webhooks=WebhookConfig.from_env(),
        )


def packages_dir() -> Path:
    return Path(env_str("LCE_PACKAGES_DIR", str(DEFAULT_PACKAGES_DIR)))


def compile_cache_dir(work_root: Path) -> Path:
    """LCE_COMPILE_CACHE_DIR, refused inside the work root: every sandbox sees its own work dir."""
    directory = Path(env_str("LCE_COMPILE_CACHE_DIR", str(DEFAULT_COMPILE_CACHE_DIR)))
    cache, runs = directory.resolve(), work_root.resolve()
    if cache == runs or runs in cache.parents or cache in runs.parents:
        raise ConfigError(f"LCE_COMPILE_CACHE_DIR ({directory}) must be outside LCE_WORK_ROOT ({work_root})")
    return directory


@dataclass(frozen=True)
class ExecutorConfig:
    redis_url: str
    queue_name: str
    execution_service_addr: str
    health_listen_addr: str
    executor_id: str
    output_limit_bytes: int
    work_root: Path
    sandbox_mode: str
    allow_unconfined: bool
    # How long a report (start or result) is retried while execution_service is unreachable
    # before the executor gives the job up; it takes no other job meanwhile.
    report_retry_s: float
    # The compile cache (executor/compile_cache.py): a directory only the executor's user can
    # reach, outside every work dir (sandboxes must never see it), and its size budget in MiB;
    # a budget of 0 turns the cache off.
    compile_cache_dir: Path = DEFAULT_COMPILE_CACHE_DIR
    compile_cache_mb: int = 512
    metrics_listen_addr: str = ""
    grpc_security: GrpcSecurity = GrpcSecurity()
    packages_dir: Path = DEFAULT_PACKAGES_DIR
    # Its pool (a label in /system and the metrics), the languages it serves (empty: every one whose
    # toolchain it finds), and how often it announces itself (executor/heartbeat.py).
    pool: str = "default"
    languages: tuple[str, ...] = ()
    heartbeat_s: float = 2.0

    @classmethod
    def from_env(cls) -> ExecutorConfig:
        work_root = Path(env_str("LCE_WORK_ROOT", "/tmp/lce-runs"))
        return cls(
            redis_url=env_str("LCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            queue_name=env_str("LCE_QUEUE_NAME", "lce-executions"),
            execution_service_addr=env_str("LCE_EXECUTION_SERVICE_ADDR", "127.0.0.1:7052"),
            health_listen_addr=env_str("LCE_EXECUTOR_HEALTH_LISTEN", "127.0.0.1:7053"),
            executor_id=env_str("LCE_EXECUTOR_ID", f"{os.uname().nodename}-{os.getpid()}"),
            # At most 1 MiB: a result (two streams, invalid bytes tripled as U+FFFD) must fit one gRPC message.
            output_limit_bytes=env_int("LCE_OUTPUT_LIMIT_BYTES", 1024 * 1024, minimum=1024, maximum=1024 * 1024),
            work_root=work_root,
            sandbox_mode=env_str("LCE_SANDBOX", "auto"),
            allow_unconfined=env_bool("LCE_SANDBOX_ALLOW_UNCONFINED"),
            report_retry_s=env_float("LCE_REPORT_RETRY_S", 120.0, minimum=0, maximum=REPORT_RETRY_MAX_S),
            compile_cache_dir=compile_cache_dir(work_root),
            compile_cache_mb=env_int("LCE_COMPILE_CACHE_MB", 512, minimum=0),
            metrics_listen_addr=env_str("LCE_METRICS_LISTEN", ""),
            grpc_security=GrpcSecurity.from_env(executor_token=True),
            packages_dir=packages_dir(),
            pool=env_name("LCE_EXECUTOR_POOL", "default"),
            languages=tuple(sorted({part.strip() for part in env_str("LCE_EXECUTOR_LANGUAGES", "").split(",")} - {""})),
            heartbeat_s=env_float("LCE_EXECUTOR_HEARTBEAT_S", 2.0, minimum=0.1, maximum=60),
        )


@dataclass(frozen=True)
class GatewayConfig:
    listen_host: str
    listen_port: int
    workers: int
    session_service_addr: str
    execution_service_addr: str
    redis_url: str = "redis://127.0.0.1:6379/0"  # runs' event streams, read by /executions/{id}/stream
    # API keys required (gateway/auth.py): from_env reads LCE_AUTH=on|off, by default on unless the
    # gateway listens on loopback only.
    auth: bool = False
    grpc_security: GrpcSecurity = GrpcSecurity()
    # The web origins whose pages may call the API from a browser (gateway/cors.py); none: no CORS at all.
    cors_origins: tuple[str, ...] = ()
    metrics_listen_addr: str = ""  # host:port of /metrics of every gateway process (gateway/metrics.py)

    @classmethod
    def from_env(cls) -> GatewayConfig:
        host, _, port = env_str("LCE_GATEWAY_LISTEN", "127.0.0.1:8080").rpartition(":")
        try:
            listen_port = int(port)
        except ValueError as exc:
            raise ConfigError(f"LCE_GATEWAY_LISTEN must be host:port, got {host}:{port}") from exc
        return cls(
            listen_host=host or "127.0.0.1",
            listen_port=listen_port,
            workers=env_int("LCE_GATEWAY_WORKERS", 1, minimum=1),
            session_service_addr=env_str("LCE_SESSION_SERVICE_ADDR", "127.0.0.1:7051"),
            execution_service_addr=env_str("LCE_EXECUTION_SERVICE_ADDR", "127.0.0.1:7052"),
            redis_url=env_str("LCE_REDIS_URL", "redis://127.0.0.1:6379/0"),
            auth=_auth_setting(host or "127.0.0.1"),
            grpc_security=GrpcSecurity.from_env(internal_token=True),
            cors_origins=env_origins("LCE_CORS_ORIGINS"),
            metrics_listen_addr=env_str("LCE_METRICS_LISTEN", ""),
        )


_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _auth_setting(listen_host: str) -> bool:
    """LCE_AUTH: on or off; by default on, unless the gateway listens on a loopback address only."""
    value = env_str("LCE_AUTH", "")
    if value not in ("", "on", "off"):
        raise ConfigError(f"LCE_AUTH must be on or off, got {value!r}")
    if value:
        return value == "on"
    return listen_host not in _LOOPBACK_HOSTS and not listen_host.startswith("127.")


@dataclass(frozen=True)
class InternalClientConfig:
    """An internal caller's (lce_client/grpc.py): where the two services are, with the deployment's security."""

    session_service_addr: str
    execution_service_addr: str
    grpc_security: GrpcSecurity = GrpcSecurity()

    @classmethod
    def from_env(cls) -> InternalClientConfig:
        return cls(
            session_service_addr=env_str("LCE_SESSION_SERVICE_ADDR", "127.0.0.1:7051"),
            execution_service_addr=env_str("LCE_EXECUTION_SERVICE_ADDR", "127.0.0.1:7052"),
            grpc_security=GrpcSecurity.from_env(internal_token=True),
        )
