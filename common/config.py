"""Configuration from `LCE_*` environment variables: what every service's settings class is made of.

Each service declares the variables it reads in one settings class of its own (session_service/settings.py,
execution_service/settings.py, executor/settings.py, gateway/settings.py; lce_client/grpc.py for internal
callers): a pydantic-settings class whose fields name their variable, default and bounds. A service asks
for those variables and no other, so it never sees (or requires) another's secrets: the executor, for
one, has no database URL at all. The README's configuration table lists them all, in prose; LCE_LOG_LEVEL
alone is read elsewhere (common/logs.py, before any settings exist).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The longest an executor may keep retrying a report; RQ's job timeout leaves room for it (common.job).
REPORT_RETRY_MAX_S = 600
# The compile stage's limits: the deployment's defaults, which a run may only lower. Sized for the
# heaviest ordinary programs (a C++ program of the whole standard library, a Go one of net/http; README).
DEFAULT_COMPILE_TIME_LIMIT_MS = 10_000
DEFAULT_COMPILE_MEMORY_LIMIT_MB = 512
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(ValueError):
    """An environment variable is set to something the service cannot use."""


# --- single variables, for the tools that read one or two (bench/, devstack/) ---


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
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


# --- settings classes ---


def variable(name: str, default: Any = PydanticUndefined, **field: Any) -> Any:
    """A field read from the variable `name`; `field`: pydantic's bounds (ge, le) or a default_factory."""
    return Field(default, validation_alias=name, **field)


class Settings(BaseSettings):
    """A service's settings: each field read from the variable its `variable(...)` names (empty counts as
    unset), else its default. Keyword arguments (tests) win over the environment, which still gives the
    rest. `from_env()` turns wrong values into one ConfigError."""

    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _DeclaredVariables(settings_cls)

    @classmethod
    def from_env(cls) -> Self:
        """The settings the environment gives; ConfigError, naming each wrong variable, on one line."""
        try:
            return cls()
        except ValidationError as exc:
            raise ConfigError("; ".join(_problems(exc))) from None

    @classmethod
    def variables(cls) -> list[str]:
        """Every variable the class reads, a file's variable (NAME_FILE) too."""
        names = []
        for _, alias, from_file in _declared(cls):
            names += [alias, f"{alias}_FILE"] if from_file else [alias]
        return names


class Group(BaseModel):
    """Variables read together into one field of a settings class (e.g. the webhooks')."""

    model_config = Settings.model_config


class _ReadsFile:
    """Marks a type whose variable NAME may name a file instead, as NAME_FILE (secrets mounted as files)."""


def _declared(model: type[BaseModel], group: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, bool]]:
    """(the groups it is in, the variable, whether NAME_FILE may give it) of each field read from a variable."""
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Group):
            yield from _declared(field.annotation, (*group, name))
        elif isinstance(field.validation_alias, str):
            from_file = any(isinstance(marker, _ReadsFile) for marker in field.metadata)
            yield group, field.validation_alias, from_file


class _DeclaredVariables(PydanticBaseSettingsSource):
    """The variables the class declares, each asked for by name: a service never takes another's. In place
    of pydantic-settings' own source, which matches field names against the whole environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for group, alias, from_file in _declared(self.settings_cls):
            value = read_tokens(alias) if from_file else os.environ.get(alias, "")
            if value:
                target = values
                for name in group:
                    target = target.setdefault(name, {})
                target[alias] = value
        return values


def _problems(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors():
        if error["type"] != "default_factory_not_called":  # a consequence of another field's error
            yield _problem(error)


def _problem(error: ErrorDetails) -> str:
    """One error as an operator reads it: the variable, what it must be, what it got."""
    name = next((part for part in reversed(error["loc"]) if str(part).startswith("LCE_")), "")
    ctx, got = error.get("ctx", {}), error["input"]
    if error["type"] == "value_error":
        # A class's own checks name their variables; a type's say what the value must be.
        message = str(ctx["error"])
        return f"{name} {message}" if name else message
    if error["type"] == "greater_than_equal":
        return f"{name} must be >= {_number(ctx['ge'])}, got {got}"
    if error["type"] == "less_than_equal":
        return f"{name} must be <= {_number(ctx['le'])}, got {got}"
    if error["type"] in ("int_parsing", "int_from_float"):
        return f"{name} must be an integer, got {got!r}"
    if error["type"] == "float_parsing":
        return f"{name} must be a number, got {got!r}"
    return f"{name}: {error['msg']}"


def _number(bound: float) -> float:
    """600 rather than the 600.0 a float field's bound becomes."""
    return int(bound) if float(bound).is_integer() else bound


# --- the types variables hold ---


def _flag(raw: object) -> object:
    if not isinstance(raw, str):
        return raw
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"must be a boolean (1/0, true/false), got {raw!r}")


def _comma_list(raw: object) -> object:
    return tuple(part.strip() for part in raw.split(",") if part.strip()) if isinstance(raw, str) else raw


def _waits(raw: object) -> object:
    """e.g. "2,4,8"; "none" is the empty list."""
    if isinstance(raw, str):
        return () if raw.strip().lower() == "none" else tuple(raw.split(","))
    return raw


Flag = Annotated[bool, BeforeValidator(_flag)]
CommaList = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
# Seconds to wait, each >= 0.
Waits = Annotated[tuple[Annotated[float, Field(ge=0)], ...], BeforeValidator(_waits)]
# Tokens (secrets), from NAME or from the file NAME_FILE names; see read_tokens.
Tokens = Annotated[tuple[str, ...], Field(repr=False), _ReadsFile()]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"must be 1 to 63 lower-case letters, digits, '_' or '-', got {value!r}")
    return value


# A short lower-case name, as a metrics label and a Kubernetes name allow.
Label = Annotated[str, AfterValidator(_name)]

# An origin as a browser sends it: scheme, lower-case host (or [IPv6]) and port, nothing after.
_ORIGIN = re.compile(r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def _origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    if "*" in origins and len(origins) > 1:
        raise ValueError(f"must hold * alone (any origin) or origins, got {','.join(origins)!r}")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(
                "must hold origins as browsers send them (scheme://host[:port] in lower case, no path, "
                f"no trailing slash), got {origin!r}"
            )
    return origins


# Comma-separated web origins such as https://ide.example.com, or * alone (any origin); empty: none.
Origins = Annotated[CommaList, AfterValidator(_origins)]


# `make certs` makes tokens of 64 hex characters; a shorter one is refused.
MIN_TOKEN_CHARS = 32


def read_tokens(name: str) -> tuple[str, ...]:
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


# --- the database ---


def sqlite_url(service: str) -> str:
    """The default database: a SQLite file of the service's own in LCE_DATA_DIR (default ./data), made if missing."""
    directory = Path(env_str("LCE_DATA_DIR", "data"))
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / (service + '.db')}"


def database_url(service: str) -> str:
    """PostgreSQL (`postgresql+psycopg://...`) when LCE_DATABASE_URL is set, else the service's SQLite file;
    as the service's settings read it, for its migration commands."""
    return os.environ.get("LCE_DATABASE_URL") or sqlite_url(service)


# --- service-to-service security ---

GRPC_TLS_VARIABLES = ("LCE_GRPC_TLS_CERT", "LCE_GRPC_TLS_KEY", "LCE_GRPC_TLS_CA")


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
    executor_tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    internal_tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)
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


class GrpcSettings(Settings):
    """A gRPC process's security settings: the TLS files every one reads. The tokens and the plaintext
    switch stay off unless the service's class declares their variables: a server the switch, each
    process the tokens it holds, never another's."""

    grpc_tls_cert: Path | None = variable("LCE_GRPC_TLS_CERT", None)
    grpc_tls_key: Path | None = variable("LCE_GRPC_TLS_KEY", None)
    grpc_tls_ca: Path | None = variable("LCE_GRPC_TLS_CA", None)
    executor_tokens: Tokens = ()
    internal_tokens: Tokens = ()
    grpc_allow_plaintext: Flag = False

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> Self:
        files = (self.grpc_tls_cert, self.grpc_tls_key, self.grpc_tls_ca)
        given = {name: path for name, path in zip(GRPC_TLS_VARIABLES, files, strict=True) if path}
        if given and len(given) < len(files):
            raise ConfigError(f"{', '.join(GRPC_TLS_VARIABLES)} go together; only {', '.join(given)} set")
        for name, path in given.items():
            if not path.is_file():
                raise ConfigError(f"{name}: no file at {path}")
        return self

    @property
    def grpc_security(self) -> GrpcSecurity:
        return GrpcSecurity(
            tls_cert=self.grpc_tls_cert,
            tls_key=self.grpc_tls_key,
            tls_ca=self.grpc_tls_ca,
            executor_tokens=self.executor_tokens,
            internal_tokens=self.internal_tokens,
            allow_plaintext=self.grpc_allow_plaintext,
        )


class GrpcServerSettings(GrpcSettings):
    """A gRPC server's: it may serve plaintext beyond loopback where the network encrypts (a service mesh)."""

    grpc_allow_plaintext: Flag = variable("LCE_GRPC_ALLOW_PLAINTEXT", False)
