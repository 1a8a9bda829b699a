"""Whose data a call may touch: the tenant, carried between services in gRPC metadata.

The gateway authenticates a request's API key and names the key's tenant (and the key) on every
call it makes; execution_service passes the tenant on to session_service. Every session and
execution belongs to the tenant that created it, and a caller of another tenant is told it does
not exist (NOT_FOUND, so that ids leak nothing). Without API keys everything belongs to the
tenant "".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TENANT_METADATA_KEY = "lce-tenant"
KEY_ID_METADATA_KEY = "lce-key-id"


@dataclass(frozen=True)
class Caller:
    tenant: str = ""
    key_id: str | None = None  # the API key the call was made with, when there is one

    def metadata(self) -> tuple[tuple[str, str], ...]:
        named = ((TENANT_METADATA_KEY, self.tenant),)
        return (*named, (KEY_ID_METADATA_KEY, self.key_id)) if self.key_id else named


# Named by the gateway's shared reads of executions, which then tell each request only of its own.
ANY_TENANT = Caller(tenant="*")


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    found = {key: value for key, value in metadata or () if isinstance(value, str)}
    return Caller(tenant=found.get(TENANT_METADATA_KEY, ""), key_id=found.get(KEY_ID_METADATA_KEY) or None)
