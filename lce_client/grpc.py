"""gRPC stubs of session_service and execution_service for LCE's internal callers, on channels with the
deployment's security (mTLS and the internal token from LCE_GRPC_TLS_* and LCE_INTERNAL_TOKEN, as the
gateway's: common/grpc_client.py). It needs LCE's source tree (common/, the generated lce/).

    with connect() as lce:                                   # LCE_SESSION_SERVICE_ADDR, LCE_EXECUTION_SERVICE_ADDR
        lce.executions.GetExecution(GetExecutionRequest(execution_id=...), timeout=5,
                                    metadata=Caller(tenant="acme").metadata())   # a tenant's, if not ""
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from common.config import GrpcSecurity, GrpcSettings, Tokens, variable
from common.grpc_client import aio_channel, channel
from lce.execution.v1 import execution_pb2_grpc
from lce.session.v1 import session_pb2_grpc


class InternalClientConfig(GrpcSettings):
    """An internal caller's settings: where the two services are, with the deployment's security."""

    session_service_addr: str = variable("LCE_SESSION_SERVICE_ADDR", "127.0.0.1:7051")
    execution_service_addr: str = variable("LCE_EXECUTION_SERVICE_ADDR", "127.0.0.1:7052")
    internal_tokens: Tokens = variable("LCE_INTERNAL_TOKEN", ())


@dataclass
class Services:
    sessions: session_pb2_grpc.SessionServiceStub
    executions: execution_pb2_grpc.ExecutionServiceStub
    channels: tuple[grpc.Channel, grpc.Channel]

    def close(self) -> None:
        for opened in self.channels:
            opened.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class AsyncServices:
    """`Services` on grpc.aio channels: open it on the event loop that uses it."""

    sessions: session_pb2_grpc.SessionServiceStub
    executions: execution_pb2_grpc.ExecutionServiceStub
    channels: tuple[grpc.aio.Channel, grpc.aio.Channel]

    async def close(self) -> None:
        for opened in self.channels:
            await opened.close()

    async def __aenter__(self) -> AsyncServices:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def connect(config: InternalClientConfig | None = None) -> Services:
    """Stubs of both services, on the addresses and security of `config` (default: the environment's)."""
    return Services(*_stubs(config or InternalClientConfig.from_env(), channel))


def connect_aio(config: InternalClientConfig | None = None) -> AsyncServices:
    return AsyncServices(*_stubs(config or InternalClientConfig.from_env(), aio_channel))


def _stubs(config: InternalClientConfig, open_channel: Callable[[str, GrpcSecurity], Any]) -> tuple[Any, Any, Any]:
    to_sessions = open_channel(config.session_service_addr, config.grpc_security)
    to_executions = open_channel(config.execution_service_addr, config.grpc_security)
    return (
        session_pb2_grpc.SessionServiceStub(to_sessions),
        execution_pb2_grpc.ExecutionServiceStub(to_executions),
        (to_sessions, to_executions),
    )
