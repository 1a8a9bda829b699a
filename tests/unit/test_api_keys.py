"""API keys (execution_service/api_keys.py) on a real database: issued once, stored as a hash, revoked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy

from common.db import make_engine
from common.errors import InvalidArgument, NotFound, Unauthenticated
from execution_service.api_keys import ApiKeys, key_hash
from execution_service.models import api_keys


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def engine(postgres_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = make_engine(postgres_url)  # migrated by the fixture
    yield engine
    engine.dispose()


def test_a_key_is_shown_once_and_stored_as_its_hash(engine: sqlalchemy.Engine) -> None:
    keys = ApiKeys(engine)
    secret, key = keys.create("acme", name="ci", runs_per_minute=5)
    assert secret.startswith("lce_") and len(secret) > 40
    with engine.connect() as conn:
        stored = conn.execute(sqlalchemy.select(api_keys).where(api_keys.c.id == key.id)).mappings().one()
    assert stored["key_hash"] == key_hash(secret) and secret not in str(dict(stored))
    assert keys.authenticate(secret) == key
    assert keys.by_id(key.id) == key
    with pytest.raises(Unauthenticated):
        keys.authenticate(secret + "x")


def test_a_revoked_key_fails_once_the_cache_lets_go(engine: sqlalchemy.Engine) -> None:
    clock = Clock()
    keys = ApiKeys(engine, clock=clock)
    secret, key = keys.create("acme")
    keys.authenticate(secret)
    assert ApiKeys(engine).revoke(key.id).revoked_at is not None
    keys.authenticate(secret)  # still cached
    clock.now += 6
    with pytest.raises(Unauthenticated):
        keys.authenticate(secret)
    assert keys.by_id(key.id) is None
    assert any(listed.id == key.id and listed.revoked_at for listed in keys.list())


@pytest.mark.parametrize(("tenant", "limit"), [("", 1), ("x" * 201, 1), ("*", 1), ("a b", 1), ("acme", 0)])
def test_bad_keys_are_refused(engine: sqlalchemy.Engine, tenant: str, limit: int) -> None:
    with pytest.raises(InvalidArgument):
        ApiKeys(engine).create(tenant, concurrent_runs=limit)


def test_revoking_an_unknown_key(engine: sqlalchemy.Engine) -> None:
    with pytest.raises(NotFound):
        ApiKeys(engine).revoke("00000000-0000-0000-0000-000000000000")
    assert ApiKeys(engine).by_id("not-a-uuid") is None
