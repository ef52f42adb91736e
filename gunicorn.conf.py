"""gunicorn reads this file from the working directory: metrics shared by every worker.

``PROMETHEUS_MULTIPROC_DIR`` must be set before a worker imports prometheus_client, so it is
set here, in the master, when gunicorn loads its configuration; each worker's counts go to
files in that folder and ``GET /metrics`` sums them (extframework/observability.py).
"""

import os
import shutil
import tempfile

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="extframework-metrics-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
