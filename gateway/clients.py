"""The gateway's gRPC channels and stubs: opened once per process in the app's lifespan, reused by every request.

They are created in the lifespan (inside the worker, after uvicorn forks or spawns it) because
gRPC objects must never cross a fork, and on the running event loop because grpc.aio binds
to it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.grpc_client import DEFAULT_DEADLINE_S, aio_channel
from common.tenancy import ANY_TENANT
from gateway.auth import with_caller
from gateway.settings import GatewayConfig
from lce.execution.v1 import execution_pb2, execution_pb2_grpc
from lce.session.v1 import session_pb2, session_pb2_grpc

SESSION_SERVICE = session_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
EXECUTION_SERVICE = execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name
HEALTH_DEADLINE_S = 1.0
CLOSE_GRACE_S = 5.0


@dataclass
class Backends:
    session_channel: grpc.aio.Channel
    execution_channel: grpc.aio.Channel
    # Every call of these carries the request's tenant and API key (gateway/auth.py).
    sessions: session_pb2_grpc.SessionServiceStub
    executions: execution_pb2_grpc.ExecutionServiceStub
    access: execution_pb2_grpc.AccessServiceStub
    # Reads of any tenant's execution, for the gateway's shared reads (gateway/execution_reads.py),
    # which tell each request only of its own tenant's.
    any_tenants_executions: execution_pb2_grpc.ExecutionServiceStub
    session_health: health_pb2_grpc.HealthStub
    execution_health: health_pb2_grpc.HealthStub
    # Every backend call passes this as its timeout: a slow backend becomes a 503, never a hang.
    deadline_s: float = DEFAULT_DEADLINE_S

    @classmethod
    def open(cls, config: GatewayConfig) -> Backends:
        session_channel = aio_channel(config.session_service_addr, config.grpc_security)
        execution_channel = aio_channel(config.execution_service_addr, config.grpc_security)
        return cls(
            session_channel=session_channel,
            execution_channel=execution_channel,
            sessions=with_caller(session_pb2_grpc.SessionServiceStub(session_channel)),
            executions=with_caller(execution_pb2_grpc.ExecutionServiceStub(execution_channel)),
            access=execution_pb2_grpc.AccessServiceStub(execution_channel),
            any_tenants_executions=with_caller(execution_pb2_grpc.ExecutionServiceStub(execution_channel), ANY_TENANT),
            session_health=health_pb2_grpc.HealthStub(session_channel),
            execution_health=health_pb2_grpc.HealthStub(execution_channel),
        )

    async def close(self) -> None:
        await asyncio.gather(self.session_channel.close(CLOSE_GRACE_S), self.execution_channel.close(CLOSE_GRACE_S))

    async def health(self) -> dict[str, str]:
        """Each backend's gRPC health status (SERVING, NOT_SERVING), or the failed call's code when unreachable."""
        session, execution = await asyncio.gather(
            _check(self.session_health, SESSION_SERVICE), _check(self.execution_health, EXECUTION_SERVICE)
        )
        return {"session": session, "execution": execution}


async def _check(stub: health_pb2_grpc.HealthStub, service: str) -> str:
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=HEALTH_DEADLINE_S)
    except grpc.aio.AioRpcError as err:
        return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
