"""Service-to-service security on the real stack, as `make run-secure` starts it: every service with
its own certificate of `make certs` and only its tokens, mTLS between every pair of services. A run
completes end to end; a report from anyone without the executor's credentials is refused and leaves
the execution as it was; plaintext, anonymous and foreign clients get nowhere."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common import grpc_client
from common.config import GrpcSecurity
from common.service_auth import TOKEN_METADATA_KEY
from devstack import Stack
from lce.execution.v1 import execution_pb2, execution_pb2_grpc
from lce.session.v1 import session_pb2, session_pb2_grpc
from tests.conftest import REPO_ROOT, RedisServer, fresh_database
from tests.integration.conftest import new_session, stack_config, wait_terminal

pytestmark = pytest.mark.integration

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
SLOW_PROGRAM = 'import time\nprint("started", flush=True)\ntime.sleep(4)\nprint("real")\n'


def make_certs(directory: Path) -> Path:
    subprocess.run(["bash", str(REPO_ROOT / "scripts/gen-certs.sh"), str(directory)], check=True, capture_output=True)
    return directory


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("secure") / "certs")


@pytest.fixture(scope="module")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another deployment's certificates: our services' names, a CA ours do not trust."""
    return make_certs(tmp_path_factory.mktemp("foreign") / "certs")


@pytest.fixture(scope="module")
def secure_stack(certs: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("secure-stack")
    with fresh_database("lce_secure") as database_url:
        # Its own Redis database number, so its queue never meets the other stacks'.
        config = stack_config(tmp, database_url=database_url, redis_url=redis_server.url.replace("/0", "/2"))
        config.certs_dir = certs
        stack = Stack(config)
        stack.start()
        yield stack
        stack.stop()


@pytest.fixture(scope="module")
def api(secure_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure_stack.config.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def python_id(api: httpx.Client) -> str:
    return next(lang["id"] for lang in api.get("/languages").json()["languages"] if lang["name"] == "python")


def token(certs: Path, name: str) -> str:
    return (certs / f"{name}.token").read_text().strip()


def as_service(certs: Path, certificate: str, presented: str = "") -> GrpcSecurity:
    """A client with `certificate` of `certs` (trusting our CA), presenting the token `presented`."""
    return GrpcSecurity(
        tls_cert=certs / f"{certificate}.pem",
        tls_key=certs / f"{certificate}.key",
        tls_ca=certs / "ca.pem",
        internal_tokens=(presented,) if presented else (),
    )


def grpc_ports(stack: Stack) -> dict[str, int]:
    return {service.name: service.health[1] for service in stack.services if isinstance(service.health, tuple)}


def code_of(call: Any) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]
    return None


def test_a_run_completes_end_to_end_over_mtls(secure_stack: Stack, api: httpx.Client, python_id: str) -> None:
    """gateway -> session_service and execution_service, execution_service -> session_service,
    executor -> execution_service: every hop speaks mTLS with the caller's own certificate."""
    for service in secure_stack.services:
        assert service.env["LCE_GRPC_TLS_CERT"].endswith(f"{service.name.split('-')[0]}.pem")
    session_id = new_session(api, python_id, "print(6 * 7)\n")
    accepted = api.post(f"/code-sessions/{session_id}/run")
    assert accepted.status_code == 202, accepted.text
    result = wait_terminal(api, accepted.json()["execution_id"])
    assert (result["status"], result["stdout"]) == ("COMPLETED", "42\n")
    assert api.get("/health").json()["services"] == {"session": "SERVING", "execution": "SERVING"}


def health_of(channel: grpc.Channel) -> str:
    """SERVING, NOT_SERVING, or the code the check failed with."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as err:
        return err.code().name  # type: ignore[attr-defined, no-any-return]
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_every_grpc_server_refuses_plaintext_and_anonymous_clients(secure_stack: Stack, certs: Path) -> None:
    ports = grpc_ports(secure_stack)
    assert set(ports) == {"session_service", "execution_service", "executor-1", "executor-2"}
    anonymous = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    for name, port in ports.items():
        addr = f"127.0.0.1:{port}"
        with grpc.insecure_channel(addr) as plaintext:
            assert health_of(plaintext) == "UNAVAILABLE", name
        with grpc.secure_channel(addr, anonymous) as no_certificate:
            assert health_of(no_certificate) == "UNAVAILABLE", name
        # Health is open to any member of the deployment, token or not: probes work.
        with grpc_client.channel(addr, as_service(certs, "gateway")) as member:
            assert health_of(member) == "SERVING", name


def wait_running(api: httpx.Client, execution_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.get(f"/executions/{execution_id}").json()["status"] == "RUNNING":
            return
        time.sleep(0.02)
    raise AssertionError(f"execution {execution_id} never RUNNING")


def start_slow_run(api: httpx.Client, python_id: str) -> str:
    session_id = new_session(api, python_id, SLOW_PROGRAM)
    accepted = api.post(f"/code-sessions/{session_id}/run", json={"time_limit_ms": 20000})
    assert accepted.status_code == 202, accepted.text
    execution_id: str = accepted.json()["execution_id"]
    wait_running(api, execution_id)
    return execution_id


def forged_result(stack: Stack, certs: Path, execution_id: str) -> execution_pb2.ReportResultRequest:
    """What an executor would send to finish the run now: the right attempt, a result of our making."""
    internal = as_service(certs, "gateway", token(certs, "internal"))
    with grpc_client.channel(f"127.0.0.1:{stack.config.execution_port}", internal) as channel:
        execution = (
            execution_pb2_grpc.ExecutionServiceStub(channel)
            .GetExecution(execution_pb2.GetExecutionRequest(execution_id=execution_id), timeout=5)
            .execution
        )
    assert execution.status == execution_pb2.EXECUTION_STATUS_RUNNING
    result = execution_pb2.RunResult(status=execution_pb2.EXECUTION_STATUS_COMPLETED, stdout="forged\n", exit_code=0)
    return execution_pb2.ReportResultRequest(
        execution_id=execution_id, executor_id=execution.executor_id, attempt=execution.attempt, result=result
    )


def report(addr: str, credentials: grpc.ChannelCredentials | None, presented: str, request: Any) -> Any:
    """Sends `request` over a channel of our making: plaintext without `credentials`, with the service
    token `presented` (if any) in the call's metadata. None when it was taken, else the refusal's code."""
    metadata = ((TOKEN_METADATA_KEY, presented),) if presented else None
    channel = grpc.secure_channel(addr, credentials) if credentials else grpc.insecure_channel(addr)
    with channel:
        stub = execution_pb2_grpc.ExecutorReportServiceStub(channel)
        return code_of(lambda: stub.ReportResult(request, timeout=5, metadata=metadata))


def tls_of(certs: Path, certificate: str | None, ca: Path | None = None) -> grpc.ChannelCredentials:
    """TLS trusting `ca` (ours by default), presenting `certificate` of `certs` (None: no certificate)."""
    root = (ca or certs / "ca.pem").read_bytes()
    if certificate is None:
        return grpc.ssl_channel_credentials(root_certificates=root)
    key, chain = (certs / f"{certificate}.key").read_bytes(), (certs / f"{certificate}.pem").read_bytes()
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


def test_a_forged_report_is_refused_and_the_execution_is_unchanged(
    secure_stack: Stack, api: httpx.Client, python_id: str, certs: Path, foreign_certs: Path
) -> None:
    execution_id = start_slow_run(api, python_id)
    forged = forged_result(secure_stack, certs, execution_id)
    addr = f"127.0.0.1:{secure_stack.config.execution_port}"
    executor_token, internal_token = token(certs, "executor"), token(certs, "internal")
    attempts = {
        "plaintext, the executor's token": (None, executor_token, UNAVAILABLE),
        "TLS without a certificate, the executor's token": (tls_of(certs, None), executor_token, UNAVAILABLE),
        "another deployment's executor, our executor's token": (
            tls_of(foreign_certs, "executor", ca=certs / "ca.pem"),
            executor_token,
            UNAVAILABLE,
        ),
        "the gateway, with its own credentials": (tls_of(certs, "gateway"), internal_token, DENIED),
        "a service, with its own credentials": (tls_of(certs, "execution_service"), internal_token, DENIED),
        "the gateway, with the executor's token": (tls_of(certs, "gateway"), executor_token, DENIED),
        "the executor's certificate, no token": (tls_of(certs, "executor"), "", UNAUTHENTICATED),
        "the executor's certificate, a wrong token": (tls_of(certs, "executor"), "f" * 64, UNAUTHENTICATED),
        "the executor's certificate, the internal token": (tls_of(certs, "executor"), internal_token, DENIED),
    }
    outcomes = {
        who: report(addr, credentials, presented, forged) for who, (credentials, presented, _) in attempts.items()
    }
    assert outcomes == {who: expected for who, (_, _, expected) in attempts.items()}

    assert api.get(f"/executions/{execution_id}").json()["status"] == "RUNNING"
    result = wait_terminal(api, execution_id)
    assert (result["status"], result["stdout"]) == ("COMPLETED", "started\nreal\n")


def test_the_executors_credentials_are_what_a_report_needs(
    secure_stack: Stack, api: httpx.Client, python_id: str, certs: Path
) -> None:
    """The control of the test above: the same report, with the executor's certificate and token, is taken."""
    execution_id = start_slow_run(api, python_id)
    forged = forged_result(secure_stack, certs, execution_id)
    addr = f"127.0.0.1:{secure_stack.config.execution_port}"
    assert report(addr, tls_of(certs, "executor"), token(certs, "executor"), forged) is None
    result = wait_terminal(api, execution_id)
    assert (result["status"], result["stdout"]) == ("COMPLETED", "forged\n")


def test_internal_calls_need_an_internal_caller(
    secure_stack: Stack, api: httpx.Client, python_id: str, certs: Path
) -> None:
    session_id = new_session(api, python_id)
    sessions_addr = f"127.0.0.1:{secure_stack.config.session_port}"
    executions_addr = f"127.0.0.1:{secure_stack.config.execution_port}"
    get_session = session_pb2.GetSessionRequest(session_id=session_id)
    list_executions = execution_pb2.ListExecutionsRequest(session_id=session_id)

    def calls(security: GrpcSecurity, presented: str | None = None) -> tuple[Any, Any]:
        with (
            grpc_client.channel(sessions_addr, security, token=presented) as to_sessions,
            grpc_client.channel(executions_addr, security, token=presented) as to_executions,
        ):
            sessions = session_pb2_grpc.SessionServiceStub(to_sessions)
            executions = execution_pb2_grpc.ExecutionServiceStub(to_executions)
            return (
                code_of(lambda: sessions.GetSession(get_session, timeout=5)),
                code_of(lambda: executions.ListExecutions(list_executions, timeout=5)),
            )

    internal_token = token(certs, "internal")
    assert calls(as_service(certs, "gateway", internal_token)) == (None, None)
    assert calls(as_service(certs, "execution_service", internal_token)) == (None, None)
    assert calls(as_service(certs, "gateway")) == (UNAUTHENTICATED, UNAUTHENTICATED)
    assert calls(as_service(certs, "executor"), token(certs, "executor")) == (UNAUTHENTICATED, DENIED)
    assert calls(as_service(certs, "executor"), internal_token) == (DENIED, DENIED)
