"""session_service's migration history (versions/), applied by `python -m session_service migrate`."""

from common.migrations import History
from session_service.models import metadata

HISTORY = History("session_service", metadata)
