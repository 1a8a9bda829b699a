"""API keys: who may call, for which tenant, under which limits.

A key is shown once, when it is created, as `lce_<random>`; only its SHA-256 is stored, so a
database that leaks gives no key away. Keys are looked up by that hash on every request the
gateway authenticates, through a small cache: a revocation takes effect within CACHE_S.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy
from sqlalchemy import Engine, insert, select, update

from common.errors import InvalidArgument, NotFound, Unauthenticated
from common.job import Lane
from execution_service.models import api_keys

KEY_PREFIX = "lce_"
_TENANT_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-")
CACHE_S = 5.0
_CACHE_ENTRIES = 10_000
# What a key may do unless told otherwise: the documented per-session rules still hold beneath.
DEFAULT_RUNS_PER_MINUTE = 60
DEFAULT_CONCURRENT_RUNS = 10
DEFAULT_MAX_TIME_LIMIT_MS = 60_000
DEFAULT_MAX_MEMORY_LIMIT_MB = 2048


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    name: str
    admin: bool
    runs_per_minute: int
    concurrent_runs: int
    max_time_limit_ms: int
    max_memory_limit_mb: int
    created_at: datetime
    revoked_at: datetime | None = None
    # The highest lane its runs may take: batch keeps a key's runs (bulk grading, say) out of the interactive lane.
    max_priority: Lane = Lane.INTERACTIVE


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self._clock = clock
        self._cache: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def create(
        self,
        tenant: str,
        *,
        name: str = "",
        admin: bool = False,
        runs_per_minute: int = DEFAULT_RUNS_PER_MINUTE,
        concurrent_runs: int = DEFAULT_CONCURRENT_RUNS,
        max_time_limit_ms: int = DEFAULT_MAX_TIME_LIMIT_MS,
        max_memory_limit_mb: int = DEFAULT_MAX_MEMORY_LIMIT_MB,
        max_priority: Lane = Lane.INTERACTIVE,
    ) -> tuple[str, ApiKey]:
        """The new key's secret (shown once, never stored) and its record."""
        if not 0 < len(tenant) <= 200 or not _TENANT_CHARACTERS.issuperset(tenant):
            raise InvalidArgument("a tenant is 1 to 200 of ASCII letters, digits, '.', '_' and '-'")
        if min(runs_per_minute, concurrent_runs, max_time_limit_ms, max_memory_limit_mb) < 1:
            raise InvalidArgument("a key's limits are positive")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=str(uuid.uuid4()),
            tenant=tenant,
            name=name,
            admin=admin,
            runs_per_minute=runs_per_minute,
            concurrent_runs=concurrent_runs,
            max_time_limit_ms=max_time_limit_ms,
            max_memory_limit_mb=max_memory_limit_mb,
            max_priority=max_priority,
            created_at=datetime.now(UTC),
        )
        with self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(**vars(key), key_hash=key_hash(secret)))
        return secret, key

    def list(self) -> list[ApiKey]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings()
            return [_to_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        with self.engine.begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None:
            raise NotFound(f"key {key_id} not found")
        return _to_key(row)

    def authenticate(self, secret: str) -> ApiKey:
        """The valid key of `secret`; Unauthenticated for an unknown or revoked one."""
        key = self._lookup(key_hash(secret), api_keys.c.key_hash)
        if key is None:
            raise Unauthenticated("unknown or revoked API key")
        return key

    def by_id(self, key_id: str) -> ApiKey | None:
        """A valid key by its id (named by the gateway that authenticated it); None once revoked."""
        try:
            uuid.UUID(key_id)
        except ValueError:
            return None
        return self._lookup(key_id, api_keys.c.id)

    def _lookup(self, value: str, column: sqlalchemy.Column[str]) -> ApiKey | None:
        cache_key = f"{column.name}:{value}"
        now = self._clock()
        with self._lock:
            cached = self._cache.get(cache_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        with self.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(column == value, api_keys.c.revoked_at.is_(None))).mappings()
            found = row.first()
        if found is None:
            return None  # not kept: a flood of unknown keys must not push out the known ones
        key = _to_key(found)
        with self._lock:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[cache_key] = (now + CACHE_S, key)
        return key


def _to_key(row: sqlalchemy.RowMapping) -> ApiKey:
    fields = {name: row[name] for name in ApiKey.__dataclass_fields__}
    return ApiKey(**fields | {"max_priority": Lane(row["max_priority"] or Lane.INTERACTIVE)})
