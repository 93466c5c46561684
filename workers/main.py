"""`arq workers.main.WorkerSettings`: a worker configured from the `QUEUE_*` environment."""

from __future__ import annotations

from queue_service.logs import configure_logging
from queue_service.settings import Settings

from .entry import check_configuration, use_uvloop, worker_settings

_settings = Settings()
configure_logging(_settings)
check_configuration(_settings)
use_uvloop()
WorkerSettings = type("WorkerSettings", (), worker_settings(_settings))
