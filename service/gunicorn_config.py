"""gunicorn's server hooks (the Procfile's ``--config python:service.gunicorn_config``).

Layer: composition (entry point). Runs in gunicorn's master, which never builds the app: when a worker
exits (a crash, a restart, the end of a drain), its live gauges are removed from prometheus-client's
multiprocess directory, so ``/metrics`` sums only the workers alive.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

from service.settings import metrics_multiprocess_dir


def child_exit(server: Any, worker: Any) -> None:
    directory = metrics_multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(worker.pid, directory)  # type: ignore[no-untyped-call]
