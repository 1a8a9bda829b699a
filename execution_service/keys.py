"""`python -m execution_service.keys create|list|revoke|webhook-secret`: API keys for a platform team to script.

Works on execution_service's database (LCE_DATABASE_URL, as the service reads it). `create` prints
the key once, on its own line, then its record as JSON; `list` prints one JSON record per key,
never a secret; `revoke ID` ends a key (within a few seconds on every replica); `webhook-secret ID`
prints the secret the key's webhooks are signed with (derived from LCE_WEBHOOK_SECRET), for its owner.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from common.db import make_engine
from common.job import Lane
from common.migrations import SchemaError
from execution_service import api_keys
from execution_service.api_keys import ApiKey, ApiKeys
from execution_service.migrations import HISTORY
from execution_service.settings import ExecutionServiceConfig
from execution_service.webhooks import webhook_secret


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = ExecutionServiceConfig.from_env()
    engine = make_engine(config.database_url)
    try:
        HISTORY.prepare(engine)
    except SchemaError as err:
        print(err, file=sys.stderr)
        return 2
    keys = ApiKeys(engine)
    if args.command == "create":
        secret, key = keys.create(
            args.tenant,
            name=args.name,
            admin=args.admin,
            runs_per_minute=args.runs_per_minute,
            concurrent_runs=args.concurrent_runs,
            max_time_limit_ms=args.max_time_limit_ms,
            max_memory_limit_mb=args.max_memory_limit_mb,
            max_priority=Lane(args.max_priority),
        )
        print(secret)
        print(_json(key))
    elif args.command == "list":
        for key in keys.list():
            print(_json(key))
    elif args.command == "webhook-secret":
        found = keys.by_id(args.key_id)
        if not config.webhooks.secret or found is None:
            print("no such key, or no LCE_WEBHOOK_SECRET set", file=sys.stderr)
            return 1
        print(webhook_secret(config.webhooks.secret, found.id))
    else:
        print(_json(keys.revoke(args.key_id)))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m execution_service.keys", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="")
    create.add_argument("--admin", action="store_true", help="may call the admin endpoints")
    create.add_argument("--runs-per-minute", type=int, default=api_keys.DEFAULT_RUNS_PER_MINUTE)
    create.add_argument("--concurrent-runs", type=int, default=api_keys.DEFAULT_CONCURRENT_RUNS)
    create.add_argument("--max-time-limit-ms", type=int, default=api_keys.DEFAULT_MAX_TIME_LIMIT_MS)
    create.add_argument("--max-memory-limit-mb", type=int, default=api_keys.DEFAULT_MAX_MEMORY_LIMIT_MB)
    create.add_argument(
        "--max-priority",
        choices=[lane.value for lane in Lane],
        default=Lane.INTERACTIVE.value,
        help="batch: the key's runs never take the interactive lane",
    )
    commands.add_parser("list", help="every key, without secrets")
    revoke = commands.add_parser("revoke", help="end a key")
    revoke.add_argument("key_id")
    webhooks = commands.add_parser("webhook-secret", help="the secret the key's webhooks are signed with")
    webhooks.add_argument("key_id")
    return parser


def _json(key: ApiKey) -> str:
    record: dict[str, Any] = asdict(key)
    record["created_at"] = key.created_at.isoformat()
    record["revoked_at"] = key.revoked_at.isoformat() if key.revoked_at else None
    return json.dumps(record)


if __name__ == "__main__":
    sys.exit(main())
