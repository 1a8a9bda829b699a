"""Metrics in the Prometheus text format, served over HTTP at LCE_METRICS_LISTEN (off when unset).

Each process keeps its own counters (a replica is scraped on its own); what is counted is
defined next to the code that counts it. Every gRPC server counts its calls here.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

# Milliseconds to seconds: a cached read answers in well under a millisecond, a CreateExecution
# under load in tens of them.
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

GRPC_HANDLED = Counter("lce_grpc_server_handled", "gRPC calls answered, by method and status code", ["method", "code"])
GRPC_HANDLING_SECONDS = Histogram(
    "lce_grpc_server_handling_seconds", "Time to answer a gRPC call, by method", ["method"], buckets=_RPC_BUCKETS
)


def serve(listen_addr: str, registry: CollectorRegistry = REGISTRY) -> int | None:
    """Serves /metrics at host:port on a thread of its own; the bound port (0 picks one), or None when off.
    `registry`: what it serves (the gateway's adds up its worker processes)."""
    if not listen_addr:
        return None
    host, _, port = listen_addr.rpartition(":")
    # "[::]:9464", as gRPC's listen addresses are written, binds the IPv6 host "::".
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    bound: int = server.server_port
    log.info("serving metrics", extra={"metrics_port": bound})
    return bound
