"""Service-to-service security: the LCE_GRPC_TLS_* and token variables, the rule of who may call
what, and real servers on port 0 (mTLS with the certificates of scripts/gen-certs.sh, tokens over
plaintext, sync and asyncio channels)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from common import grpc_client, healthcheck, service_auth
from common.config import ConfigError, GrpcSecurity, GrpcSettings
from common.grpc_server import RunningServer, reflected_services, start_server
from common.service_auth import EXECUTOR, GATEWAY, REFLECTION_SERVICE, SERVICE, CallerPolicy, Refused
from execution_service.settings import ExecutionServiceConfig
from executor.settings import ExecutorConfig
from gateway.settings import GatewayConfig
from lce.execution.v1 import execution_pb2  # noqa: F401 - its services' schema, for reflection to describe

REPO = Path(__file__).resolve().parents[2]
EXECUTOR_TOKEN = "e" * 64
INTERNAL_TOKEN = "i" * 64
REPORT = "/lce.execution.v1.ExecutorReportService/ReportResult"
GET = "/lce.execution.v1.ExecutionService/GetExecution"
WATCH = "/lce.execution.v1.ExecutionService/WatchExecution"
INTERACT = "/lce.execution.v1.ExecutionService/InteractExecution"
REPORTS = "lce.execution.v1.ExecutorReportService"
EXECUTIONS = "lce.execution.v1.ExecutionService"
HEALTH = "grpc.health.v1.Health"


# --- configuration ------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "LCE_GRPC_TLS_CERT",
        "LCE_GRPC_TLS_KEY",
        "LCE_GRPC_TLS_CA",
        "LCE_EXECUTOR_TOKEN",
        "LCE_EXECUTOR_TOKEN_FILE",
        "LCE_INTERNAL_TOKEN",
        "LCE_INTERNAL_TOKEN_FILE",
        "LCE_GRPC_ALLOW_PLAINTEXT",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def execution_service_security(env: pytest.MonkeyPatch) -> GrpcSecurity:
    """The security of execution_service, the one process that holds both tokens."""
    env.setenv("LCE_DATABASE_URL", "sqlite://")
    return ExecutionServiceConfig.from_env().grpc_security


def test_nothing_set_is_plaintext_with_no_tokens(clean_env: pytest.MonkeyPatch) -> None:
    security = execution_service_security(clean_env)
    assert security == GrpcSecurity()
    assert not security.tls
    assert (security.executor_token, security.internal_token) == ("", "")
    assert not CallerPolicy.of(security).identifies


def test_tls_files_are_read_together(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("cert.pem", "key.pem", "ca.pem")}
    for path in files.values():
        path.write_text("x")
    clean_env.setenv("LCE_GRPC_TLS_CERT", str(files["cert.pem"]))
    with pytest.raises(ConfigError, match="only LCE_GRPC_TLS_CERT set"):
        GrpcSettings.from_env()
    clean_env.setenv("LCE_GRPC_TLS_KEY", str(files["key.pem"]))
    clean_env.setenv("LCE_GRPC_TLS_CA", str(files["ca.pem"]))
    security = GrpcSettings.from_env().grpc_security
    assert security.tls
    assert (security.tls_cert, security.tls_key, security.tls_ca) == tuple(files.values())


def test_a_missing_tls_file_is_named(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("LCE_GRPC_TLS_CERT", "LCE_GRPC_TLS_KEY"):
        (tmp_path / name).write_text("x")
        clean_env.setenv(name, str(tmp_path / name))
    clean_env.setenv("LCE_GRPC_TLS_CA", str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigError, match=r"LCE_GRPC_TLS_CA: no file at .*absent\.pem"):
        GrpcSettings.from_env()


def test_tokens_from_variables_and_files(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token_file = tmp_path / "internal.token"
    token_file.write_text(INTERNAL_TOKEN + "\n")
    clean_env.setenv("LCE_EXECUTOR_TOKEN", EXECUTOR_TOKEN)
    clean_env.setenv("LCE_INTERNAL_TOKEN_FILE", str(token_file))
    security = execution_service_security(clean_env)
    assert (security.executor_tokens, security.internal_tokens) == ((EXECUTOR_TOKEN,), (INTERNAL_TOKEN,))


def test_only_the_tokens_a_process_needs_are_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LCE_EXECUTOR_TOKEN", EXECUTOR_TOKEN)
    clean_env.setenv("LCE_INTERNAL_TOKEN", INTERNAL_TOKEN)
    gateway = GatewayConfig.from_env().grpc_security
    executor = ExecutorConfig.from_env().grpc_security
    assert (gateway.executor_tokens, gateway.internal_tokens) == ((), (INTERNAL_TOKEN,))
    assert (executor.executor_tokens, executor.internal_tokens) == ((EXECUTOR_TOKEN,), ())


def test_a_rotation_presents_the_first_token_and_accepts_every_one(clean_env: pytest.MonkeyPatch) -> None:
    new, old = "n" * 40, "o" * 40
    clean_env.setenv("LCE_INTERNAL_TOKEN", f"{new}, {old}")
    security = GatewayConfig.from_env().grpc_security
    assert security.internal_token == new
    assert security.internal_tokens == (new, old)
    assert CallerPolicy.of(security).identify(old, None) == SERVICE


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LCE_EXECUTOR_TOKEN": EXECUTOR_TOKEN, "LCE_EXECUTOR_TOKEN_FILE": "/x"}, "not both"),
        ({"LCE_EXECUTOR_TOKEN_FILE": "/nonexistent/token"}, "LCE_EXECUTOR_TOKEN_FILE: cannot read"),
        ({"LCE_EXECUTOR_TOKEN": "short-secret"}, "at least 32 characters"),
        ({"LCE_EXECUTOR_TOKEN": EXECUTOR_TOKEN, "LCE_INTERNAL_TOKEN": EXECUTOR_TOKEN}, "must differ"),
        ({"LCE_GRPC_ALLOW_PLAINTEXT": "maybe"}, "LCE_GRPC_ALLOW_PLAINTEXT"),
    ],
)
def test_bad_settings_are_refused(clean_env: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as refused:
        execution_service_security(clean_env)
    assert "short-secret" not in str(refused.value)  # a token never appears in a message


# --- tokens and names ---------------------------------------------------------------------------


def test_tokens_match_exactly() -> None:
    assert service_auth.tokens_match(EXECUTOR_TOKEN, [INTERNAL_TOKEN, EXECUTOR_TOKEN])
    assert not service_auth.tokens_match(EXECUTOR_TOKEN[:-1], [EXECUTOR_TOKEN])
    assert not service_auth.tokens_match(EXECUTOR_TOKEN + "e", [EXECUTOR_TOKEN])
    assert not service_auth.tokens_match("", [EXECUTOR_TOKEN])
    assert not service_auth.tokens_match("é" * 64, [EXECUTOR_TOKEN])  # not ASCII: no TypeError
    assert not service_auth.tokens_match(EXECUTOR_TOKEN, [])


def test_token_of_metadata() -> None:
    assert service_auth.token_of((("lce-tenant", "t"), ("lce-service-token", "abc"))) == "abc"
    # "authorization" carries a client's API key (the tenancy's), never a service's token.
    assert service_auth.token_of((("authorization", "Bearer abc"),)) is None
    assert service_auth.token_of(None) is None


@pytest.mark.parametrize(
    ("listen_addr", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.0.1:0", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("unix:/run/lce.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        ("session_service:50051", False),
        (":50051", False),
    ],
)
def test_loopback_addresses(listen_addr: str, loopback: bool) -> None:
    assert service_auth.is_loopback(listen_addr) is loopback


# --- who may call what ----------------------------------------------------------------------------

TOKENS = CallerPolicy(executor_tokens=(EXECUTOR_TOKEN,), internal_tokens=(INTERNAL_TOKEN,))
CERTIFICATES = CallerPolicy(certificates=True)
BOTH = CallerPolicy(executor_tokens=(EXECUTOR_TOKEN,), internal_tokens=(INTERNAL_TOKEN,), certificates=True)
DENIED, UNAUTHENTICATED = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("policy", "service", "token", "common_name", "expected"),
    [
        # Nothing configured: everyone, nobody identified.
        (CallerPolicy(), REPORTS, None, None, None),
        (CallerPolicy(), EXECUTIONS, "anything", None, None),
        # Tokens alone.
        (TOKENS, REPORTS, EXECUTOR_TOKEN, None, EXECUTOR),
        (TOKENS, EXECUTIONS, INTERNAL_TOKEN, None, SERVICE),
        (TOKENS, REPORTS, INTERNAL_TOKEN, None, DENIED),
        (TOKENS, EXECUTIONS, EXECUTOR_TOKEN, None, DENIED),
        (TOKENS, REPORTS, None, None, UNAUTHENTICATED),
        (TOKENS, REPORTS, "w" * 64, None, UNAUTHENTICATED),
        (TOKENS, HEALTH, None, None, None),
        # Certificates alone.
        (CERTIFICATES, REPORTS, None, "executor", EXECUTOR),
        (CERTIFICATES, EXECUTIONS, None, "gateway", GATEWAY),
        (CERTIFICATES, EXECUTIONS, None, "session_service", SERVICE),
        (CERTIFICATES, REPORTS, None, "gateway", DENIED),
        (CERTIFICATES, REPORTS, None, "execution_service", DENIED),
        (CERTIFICATES, EXECUTIONS, None, "executor", DENIED),
        (CERTIFICATES, REPORTS, None, "executor-7", UNAUTHENTICATED),
        (CERTIFICATES, HEALTH, None, "executor-7", None),
        # Both: each is required, and they must name the same caller.
        (BOTH, REPORTS, EXECUTOR_TOKEN, "executor", EXECUTOR),
        (BOTH, EXECUTIONS, INTERNAL_TOKEN, "gateway", GATEWAY),
        (BOTH, REPORTS, None, "executor", UNAUTHENTICATED),
        (BOTH, REPORTS, "w" * 64, "executor", UNAUTHENTICATED),
        (BOTH, REPORTS, EXECUTOR_TOKEN, "gateway", DENIED),
        (BOTH, EXECUTIONS, EXECUTOR_TOKEN, "gateway", DENIED),
        (BOTH, REPORTS, INTERNAL_TOKEN, "executor", DENIED),
        (BOTH, EXECUTIONS, None, "gateway", UNAUTHENTICATED),
        # Reflection: every identified member, none else.
        (CallerPolicy(), REFLECTION_SERVICE, None, None, None),
        (TOKENS, REFLECTION_SERVICE, EXECUTOR_TOKEN, None, EXECUTOR),
        (TOKENS, REFLECTION_SERVICE, INTERNAL_TOKEN, None, SERVICE),
        (TOKENS, REFLECTION_SERVICE, None, None, UNAUTHENTICATED),
        (CERTIFICATES, REFLECTION_SERVICE, None, "gateway", GATEWAY),
        (CERTIFICATES, REFLECTION_SERVICE, None, "executor-7", UNAUTHENTICATED),
        (BOTH, REFLECTION_SERVICE, INTERNAL_TOKEN, "executor", DENIED),
    ],
)
def test_who_may_call_what(
    policy: CallerPolicy, service: str, token: str | None, common_name: str | None, expected: Any
) -> None:
    if isinstance(expected, grpc.StatusCode):
        with pytest.raises(Refused) as refused:
            policy.admit(service, token, common_name)
        assert refused.value.code == expected
    else:
        assert policy.admit(service, token, common_name) == expected


def test_a_server_with_one_token_refuses_the_callers_it_cannot_identify() -> None:
    """session_service holds the internal token only: an executor's token is unknown there."""
    session_service = CallerPolicy(internal_tokens=(INTERNAL_TOKEN,))
    with pytest.raises(Refused) as refused:
        session_service.admit("lce.session.v1.SessionService", EXECUTOR_TOKEN, None)
    assert refused.value.code == UNAUTHENTICATED


# --- real servers -----------------------------------------------------------------------------------


def _caller_name() -> bytes:
    return (service_auth.caller() or "nobody").encode()


def _register(server: grpc.Server) -> None:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return _caller_name()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield _caller_name()
        yield _caller_name()

    def both_ways(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in requests:
            yield _caller_name()

    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(REPORTS, {"ReportResult": grpc.unary_unary_rpc_method_handler(unary)}),
            grpc.method_handlers_generic_handler(
                EXECUTIONS,
                {
                    "GetExecution": grpc.unary_unary_rpc_method_handler(unary),
                    "WatchExecution": grpc.unary_stream_rpc_method_handler(stream),
                    "InteractExecution": grpc.stream_stream_rpc_method_handler(both_ways),
                },
            ),
        ]
    )


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def _serve(security: GrpcSecurity, listen_addr: str = "127.0.0.1:0") -> RunningServer:
        running = start_server(listen_addr, _register, [REPORTS, EXECUTIONS], security=security)
        started.append(running)
        return running

    yield _serve
    for running in started:
        running.stop(0)


def call(channel: grpc.Channel, method: str) -> bytes | grpc.StatusCode:
    try:
        return channel.unary_unary(method)(b"", timeout=5)  # type: ignore[no-any-return]
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]


def test_tokens_over_plaintext(serve: Callable[..., RunningServer]) -> None:
    running = serve(GrpcSecurity(executor_tokens=(EXECUTOR_TOKEN,), internal_tokens=(INTERNAL_TOKEN,)))
    addr = f"127.0.0.1:{running.port}"
    with grpc_client.channel(addr, GrpcSecurity(), token=EXECUTOR_TOKEN) as executor:
        assert call(executor, REPORT) == b"executor"
        assert call(executor, GET) == DENIED
    with grpc_client.channel(addr, GrpcSecurity(internal_tokens=(INTERNAL_TOKEN,))) as internal:
        assert call(internal, GET) == b"service"
        assert list(internal.unary_stream(WATCH)(b"", timeout=5)) == [b"service", b"service"]
        assert list(internal.stream_stream(INTERACT)(iter([b"a", b"b"]), timeout=5)) == [b"service", b"service"]
        assert call(internal, REPORT) == DENIED
    with grpc.insecure_channel(addr) as anonymous:
        assert call(anonymous, REPORT) == UNAUTHENTICATED
        assert call(anonymous, GET) == UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as refused:
            list(anonymous.unary_stream(WATCH)(b"", timeout=5))
        assert refused.value.code() == UNAUTHENTICATED  # type: ignore[attr-defined]
    with grpc_client.channel(addr, GrpcSecurity(), token="w" * 64) as wrong:
        assert call(wrong, REPORT) == UNAUTHENTICATED
    assert healthcheck.check(addr, security=GrpcSecurity())  # probes need no token


def reflected(channel: grpc.Channel) -> set[str] | grpc.StatusCode:
    """The services the server lists through reflection, as grpcurl asks for them; the refusal's code."""
    try:
        return set(ProtoReflectionDescriptorDatabase(channel).get_services())
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined, no-any-return]


def test_reflection_lists_the_services_to_identified_members_only(serve: Callable[..., RunningServer]) -> None:
    running = serve(GrpcSecurity(executor_tokens=(EXECUTOR_TOKEN,), internal_tokens=(INTERNAL_TOKEN,)))
    addr = f"127.0.0.1:{running.port}"
    served = {REPORTS, EXECUTIONS, HEALTH, REFLECTION_SERVICE}
    with grpc_client.channel(addr, GrpcSecurity(), token=EXECUTOR_TOKEN) as executor:
        assert reflected(executor) == served
    with grpc_client.channel(addr, GrpcSecurity(internal_tokens=(INTERNAL_TOKEN,))) as internal:
        assert reflected(internal) == served
        described = ProtoReflectionDescriptorDatabase(internal).FindFileContainingSymbol(EXECUTIONS)
        assert described.package == "lce.execution.v1"
    with grpc.insecure_channel(addr) as anonymous:
        assert reflected(anonymous) == UNAUTHENTICATED


def test_reflection_lists_only_services_with_a_known_schema() -> None:
    """An executor's health names ("lce.executor", its sandbox's) are no gRPC services: not listed."""
    assert reflected_services(["lce.executor", EXECUTIONS]) == (EXECUTIONS, HEALTH, REFLECTION_SERVICE)


def test_asyncio_channels_present_the_internal_token(serve: Callable[..., RunningServer]) -> None:
    running = serve(GrpcSecurity(executor_tokens=(EXECUTOR_TOKEN,), internal_tokens=(INTERNAL_TOKEN,)))
    addr = f"127.0.0.1:{running.port}"

    async def calls() -> tuple[bytes, list[bytes], list[bytes]]:
        async with grpc_client.aio_channel(addr, GrpcSecurity(internal_tokens=(INTERNAL_TOKEN,))) as channel:
            unary = await channel.unary_unary(GET)(b"", timeout=5, metadata=(("lce-tenant", "t"),))
            streamed = [item async for item in channel.unary_stream(WATCH)(b"", timeout=5)]
            both = [item async for item in channel.stream_stream(INTERACT)(iter([b"a"]), timeout=5)]
            return unary, streamed, both

    assert asyncio.run(calls()) == (b"service", [b"service", b"service"], [b"service"])


def test_nobody_is_identified_without_security(serve: Callable[..., RunningServer]) -> None:
    running = serve(GrpcSecurity())
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        assert call(channel, REPORT) == b"nobody"


def test_plaintext_is_served_on_loopback_only(serve: Callable[..., RunningServer]) -> None:
    with pytest.raises(ConfigError, match="LCE_GRPC_ALLOW_PLAINTEXT"):
        serve(GrpcSecurity(), "0.0.0.0:0")
    # Allowed plaintext beyond loopback still identifies its callers: tokens.
    with pytest.raises(ConfigError, match="identifies no caller"):
        serve(GrpcSecurity(allow_plaintext=True), "0.0.0.0:0")
    tokens = {"executor_tokens": ("e" * 32,), "internal_tokens": ("i" * 32,)}
    assert serve(GrpcSecurity(allow_plaintext=True, **tokens), "0.0.0.0:0").port > 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs") / "certs"
    subprocess.run(["bash", str(REPO / "scripts/gen-certs.sh"), str(directory)], check=True, capture_output=True)
    return directory


@pytest.fixture(scope="module")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another deployment's: its certificates carry our names, signed by a CA we do not trust."""
    directory = tmp_path_factory.mktemp("foreign") / "certs"
    subprocess.run(["bash", str(REPO / "scripts/gen-certs.sh"), str(directory)], check=True, capture_output=True)
    return directory


def tls(certs: Path, name: str, **tokens: Any) -> GrpcSecurity:
    """The security of the service `name`, with the certificates of `certs`."""
    files = {"tls_cert": certs / f"{name}.pem", "tls_key": certs / f"{name}.key", "tls_ca": certs / "ca.pem"}
    return GrpcSecurity(**files, **tokens)


def test_gen_certs_makes_one_certificate_per_service_and_keeps_what_exists(certs: Path) -> None:
    made = {path.name: path.read_bytes() for path in certs.iterdir()}
    for name in ("session_service", "execution_service", "executor", "gateway"):
        assert {f"{name}.pem", f"{name}.key"} <= set(made)
        subject = subprocess.run(
            ["openssl", "x509", "-in", str(certs / f"{name}.pem"), "-noout", "-subject"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert subject.strip() == f"subject=CN = {name}"
    assert len(made["executor.token"].strip()) == 64
    assert made["executor.token"] != made["internal.token"]
    assert (certs.stat().st_mode & 0o777, (certs / "gateway.key").stat().st_mode & 0o777) == (0o700, 0o600)
    subprocess.run(["bash", str(REPO / "scripts/gen-certs.sh"), str(certs)], check=True, capture_output=True)
    assert {path.name: path.read_bytes() for path in certs.iterdir()} == made


def test_mtls_identifies_callers_by_their_certificates(serve: Callable[..., RunningServer], certs: Path) -> None:
    running = serve(tls(certs, "execution_service"))
    addr = f"127.0.0.1:{running.port}"
    with grpc_client.channel(addr, tls(certs, "executor")) as executor:
        assert call(executor, REPORT) == b"executor"
        assert call(executor, GET) == DENIED
    with grpc_client.channel(addr, tls(certs, "gateway")) as gateway:
        assert call(gateway, GET) == b"gateway"
        assert call(gateway, REPORT) == DENIED
    with grpc_client.channel(addr, tls(certs, "session_service")) as service:
        assert call(service, GET) == b"service"
    assert healthcheck.check(addr, security=tls(certs, "gateway"))


def test_mtls_with_tokens_needs_both(serve: Callable[..., RunningServer], certs: Path) -> None:
    tokens = {"executor_tokens": (EXECUTOR_TOKEN,), "internal_tokens": (INTERNAL_TOKEN,)}
    running = serve(tls(certs, "execution_service", **tokens))
    addr = f"127.0.0.1:{running.port}"
    with grpc_client.channel(addr, tls(certs, "executor", **tokens), token=EXECUTOR_TOKEN) as executor:
        assert call(executor, REPORT) == b"executor"
    with grpc_client.channel(addr, tls(certs, "executor"), token="") as no_token:
        assert call(no_token, REPORT) == UNAUTHENTICATED
    with grpc_client.channel(addr, tls(certs, "gateway"), token=EXECUTOR_TOKEN) as stolen_token:
        assert call(stolen_token, REPORT) == DENIED
    with grpc_client.channel(addr, tls(certs, "gateway", **tokens)) as gateway:
        assert call(gateway, GET) == b"gateway"


def test_a_tls_server_refuses_whoever_cannot_prove_membership(
    serve: Callable[..., RunningServer], certs: Path, foreign_certs: Path
) -> None:
    running = serve(tls(certs, "execution_service"))
    addr = f"127.0.0.1:{running.port}"
    no_certificate = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    foreign = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(foreign_certs / "executor.key").read_bytes(),
        certificate_chain=(foreign_certs / "executor.pem").read_bytes(),
    )
    with grpc.insecure_channel(addr) as plaintext:
        assert call(plaintext, REPORT) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(addr, no_certificate) as anonymous:
        assert call(anonymous, REPORT) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(addr, foreign) as impostor:
        assert call(impostor, REPORT) == grpc.StatusCode.UNAVAILABLE
    assert not healthcheck.check(addr, security=GrpcSecurity())


def test_a_client_verifies_the_server_against_its_ca(
    serve: Callable[..., RunningServer], certs: Path, foreign_certs: Path
) -> None:
    impostor = serve(tls(foreign_certs, "execution_service"))
    with grpc_client.channel(f"127.0.0.1:{impostor.port}", tls(certs, "executor")) as executor:
        assert call(executor, REPORT) == grpc.StatusCode.UNAVAILABLE


def test_compose_names_with_underscores_verify(serve: Callable[..., RunningServer], certs: Path) -> None:
    """docker-compose.yml dials session_service:7051 and execution_service:7052."""
    running = serve(tls(certs, "execution_service"))
    credentials = service_auth.channel_credentials(tls(certs, "gateway"))
    options = [("grpc.ssl_target_name_override", "execution_service")]
    with grpc.secure_channel(f"127.0.0.1:{running.port}", credentials, options=options) as channel:
        assert call(channel, GET) == b"gateway"


def test_asyncio_channels_speak_mtls(serve: Callable[..., RunningServer], certs: Path) -> None:
    running = serve(tls(certs, "execution_service"))

    async def get() -> bytes:
        async with grpc_client.aio_channel(f"127.0.0.1:{running.port}", tls(certs, "gateway")) as channel:
            return await channel.unary_unary(GET)(b"", timeout=5)  # type: ignore[no-any-return]

    assert asyncio.run(get()) == b"gateway"
