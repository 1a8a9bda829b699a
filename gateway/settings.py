"""The gateway's settings: every LCE_* variable it reads (README "Configuration"). A client of both services,
it holds the internal token and no other secret (no database URL, no executor token)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from common.config import DEFAULT_REDIS_URL, GrpcSettings, Origins, Tokens, variable

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _host_and_port(addr: str) -> str:
    if not addr.rpartition(":")[2].isdigit():
        raise ValueError(f"must be host:port, got {addr!r}")
    return addr


def _host(addr: str) -> str:
    return addr.rpartition(":")[0] or "127.0.0.1"


def _on_or_off(raw: object) -> object:
    if raw in ("on", "off"):
        return raw == "on"
    if isinstance(raw, str):
        raise ValueError(f"must be on or off, got {raw!r}")
    return raw


def _auth_by_default(settings: dict[str, Any]) -> bool:
    """On, unless the gateway listens on a loopback address only."""
    host = _host(settings["listen_addr"])
    return host not in _LOOPBACK_HOSTS and not host.startswith("127.")


class GatewayConfig(GrpcSettings):
    listen_addr: Annotated[str, AfterValidator(_host_and_port)] = variable("LCE_GATEWAY_LISTEN", "127.0.0.1:8080")
    workers: int = variable("LCE_GATEWAY_WORKERS", 1, ge=1)
    session_service_addr: str = variable("LCE_SESSION_SERVICE_ADDR", "127.0.0.1:7051")
    execution_service_addr: str = variable("LCE_EXECUTION_SERVICE_ADDR", "127.0.0.1:7052")
    # Runs' event streams, read by /executions/{id}/stream.
    redis_url: str = variable("LCE_REDIS_URL", DEFAULT_REDIS_URL)
    # API keys required (gateway/auth.py).
    auth: Annotated[bool, BeforeValidator(_on_or_off)] = variable("LCE_AUTH", default_factory=_auth_by_default)
    # Presented on its calls to both services.
    internal_tokens: Tokens = variable("LCE_INTERNAL_TOKEN", ())
    # The web origins whose pages may call the API from a browser (gateway/cors.py); none: no CORS at all.
    cors_origins: Origins = variable("LCE_CORS_ORIGINS", ())
    # host:port of /metrics of every gateway process (gateway/metrics.py).
    metrics_listen_addr: str = variable("LCE_METRICS_LISTEN", "")

    @property
    def listen_host(self) -> str:
        return _host(self.listen_addr)

    @property
    def listen_port(self) -> int:
        return int(self.listen_addr.rpartition(":")[2])
