"""execution_service's migration history (versions/), applied by `python -m execution_service migrate`."""

from common.migrations import History
from execution_service.models import metadata

HISTORY = History("execution_service", metadata)
