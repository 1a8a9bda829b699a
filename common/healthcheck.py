"""`python -m common.healthcheck HOST:PORT [SERVICE]`: exits 0 when that gRPC server reports SERVING,
or refuses the check because it holds its most calls at once (busy, not dead: a probe must not
restart it for that).

For container health checks and platform probes, which otherwise need a separate probe binary. With
LCE_GRPC_TLS_* set (as in the probed service's own environment) it speaks mTLS with those files.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import grpc_client
from common.config import GrpcSecurity, GrpcSettings


def check(addr: str, service: str = "", timeout_s: float = 2.0, security: GrpcSecurity | None = None) -> bool:
    """`security`: TLS files (health checks need no token); by default the LCE_GRPC_TLS_* variables'."""
    with grpc_client.channel(addr, security or GrpcSettings.from_env().grpc_security, token="") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as err:
            return err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined, no-any-return]
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print("usage: python -m common.healthcheck HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    return 0 if check(*argv[1:]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
