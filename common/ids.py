"""Ids on the wire: UUIDs, accepted in one spelling only, answered in canonical (lowercase) form."""

from __future__ import annotations

import uuid

from common.errors import InvalidArgument


def parse_uuid(value: str, field: str) -> str:
    """The id in canonical form; InvalidArgument unless it is a UUID written the usual 8-4-4-4-12 way."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"{field} must be a UUID") from None
    # uuid.UUID also takes braces, "urn:uuid:" and stray hyphens; ids in URLs should have one spelling.
    if str(parsed) != value.lower():
        raise InvalidArgument(f"{field} must be a UUID")
    return str(parsed)
