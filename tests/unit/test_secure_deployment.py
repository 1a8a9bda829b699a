"""The secure deployments as written: `make run-secure`'s plan of processes and docker-compose.yml give
each service its own certificate and only the tokens it needs, and no store password is written down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import Stack, StackConfig, probe_security

REPO = Path(__file__).resolve().parents[2]
TOKEN_VARIABLES = {"LCE_EXECUTOR_TOKEN_FILE", "LCE_INTERNAL_TOKEN_FILE"}
# Which certificate each service presents, and which tokens it holds.
NEEDS = {
    "session_service": ("session_service", {"LCE_INTERNAL_TOKEN_FILE"}),
    "execution_service": ("execution_service", TOKEN_VARIABLES),
    "executor": ("executor", {"LCE_EXECUTOR_TOKEN_FILE"}),
    "gateway": ("gateway", {"LCE_INTERNAL_TOKEN_FILE"}),
}


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    (tmp_path / "ca.pem").write_text("a CA")
    return tmp_path


def test_make_run_secure_hands_each_service_its_own_certificate_and_tokens(certs: Path) -> None:
    for service in Stack(StackConfig(executors=2, certs_dir=certs)).services:
        certificate, tokens = NEEDS[service.name.split("-")[0]]
        env = service.env
        assert env["LCE_GRPC_TLS_CERT"] == str(certs / f"{certificate}.pem")
        assert env["LCE_GRPC_TLS_KEY"] == str(certs / f"{certificate}.key")
        assert env["LCE_GRPC_TLS_CA"] == str(certs / "ca.pem")
        assert TOKEN_VARIABLES & set(env) == tokens, service.name
        for variable in tokens:
            assert env[variable] == str(certs / f"{variable.split('_')[1].lower()}.token")
        if isinstance(service.health, tuple):  # a gRPC server, probed with its own certificate
            assert probe_security(env).tls_cert == certs / f"{certificate}.pem"


def test_make_run_is_plaintext_and_says_where_certificates_are_missing(tmp_path: Path) -> None:
    for service in Stack(StackConfig()).services:
        assert not {"LCE_GRPC_TLS_CERT", *TOKEN_VARIABLES} & set(service.env)
        assert not probe_security(service.env).tls
    with pytest.raises(FileNotFoundError, match="make certs"):
        Stack(StackConfig(certs_dir=tmp_path))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_compose_gives_each_service_its_own_secrets(compose: dict[str, Any], name: str) -> None:
    certificate, tokens = NEEDS[name]
    service = compose["services"][name]
    env = service["environment"]
    mounted = {f"/run/secrets/{secret}": compose["secrets"][secret]["file"] for secret in service["secrets"]}
    assert mounted[env["LCE_GRPC_TLS_CERT"]] == f"./data/certs/{certificate}.pem"
    assert mounted[env["LCE_GRPC_TLS_KEY"]] == f"./data/certs/{certificate}.key"
    assert mounted[env["LCE_GRPC_TLS_CA"]] == "./data/certs/ca.pem"
    assert TOKEN_VARIABLES & set(env) == tokens
    for variable in tokens:
        assert mounted[env[variable]] == f"./data/certs/{variable.split('_')[1].lower()}.token"
    # Nothing mounted beyond what the environment names: no other service's key or token.
    assert set(mounted) == {value for value in env.values() if str(value).startswith("/run/secrets/")}


def test_compose_writes_down_no_password(compose: dict[str, Any]) -> None:
    postgres_password = "${POSTGRES_PASSWORD:?"
    redis_password = "${REDIS_PASSWORD:?"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(postgres_password)
    assert redis_password in " ".join(compose["services"]["redis"]["command"])
    for name in NEEDS:
        env = compose["services"][name]["environment"]
        if "LCE_DATABASE_URL" in env:
            assert env["LCE_DATABASE_URL"].startswith(f"postgresql+psycopg://postgres:{postgres_password}")
        if "LCE_REDIS_URL" in env:
            assert env["LCE_REDIS_URL"].startswith(f"redis://:{redis_password}")
