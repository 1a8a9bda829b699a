"""Run by Alembic for every command on this history; common/migrations.py does the work."""

from alembic import context

from common.migrations import run_env

run_env(context)
