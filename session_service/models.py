"""The tables session_service owns: `languages` (reference data) and `sessions`."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()


class SessionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


languages = Table(
    "languages",
    metadata,
    # Not generated here: ids come from common.languages and are identical in every deployment.
    Column("id", Uuid, primary_key=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("runtime", String(32), nullable=False),
    Column("version", String(64), nullable=False),
    Column("template_code", Text, nullable=False),
    Column("file_name", String(64), nullable=False),
    Column("default_time_limit_ms", Integer, nullable=False),
    Column("default_memory_mb", Integer, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("language_id", Uuid, ForeignKey("languages.id"), nullable=False),
    Column("status", String(8), nullable=False),
    Column("source_code", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # [{"name", "content"}, ...] beside the main file; NULL (never []) when there are none, which lets
    # autosave of the source alone skip reading the row (sessions.py). Nullable: a later release added it.
    Column("files", JSON(none_as_null=True), nullable=True),
    # The tenant of the API key that created it (common/tenancy.py); NULL without keys.
    Column("tenant", Text, nullable=True),
    CheckConstraint(
        "status IN ({})".format(", ".join(f"'{status}'" for status in SessionStatus)),
        name="sessions_status_known",
    ),
)
