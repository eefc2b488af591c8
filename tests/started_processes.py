"""Stop exactly the processes a test started, however far they detached.

``ray start`` daemonises: its GCS, raylet, dashboard, log monitor and client server (and later the
workers and job drivers they spawn) are re-parented away from the test, and some of them
(``ray.util.client.server``, a dead node's ``log_monitor``) do not name the node's temp dir on
their command line. Every one of them inherits its environment from the command the test ran,
so the test starts them with a marker variable of its own (:class:`StartedProcesses`), records
their PIDs once they are up, and at teardown stops the recorded PIDs and any process carrying the
marker: never a process someone else started (another Ray on the machine, the session's own).
"""
from __future__ import annotations

import contextlib
import os
import uuid

MARKER = "MMSEARCH_TEST_STARTED_BY"


class StartedProcesses:
    def __init__(self) -> None:
        self.token = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.pids: dict[int, float] = {}  # pid -> create time (a recycled PID is not ours)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` plus the marker: pass it to every command whose processes the test owns."""
        return {**base, MARKER: self.token}

    def marked(self) -> dict[int, float]:
        """The live processes that carry this test's marker, and their children: pid -> create time."""
        import psutil

        found: dict[int, float] = {}
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == os.getpid():
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARKER) == self.token:
                    found[proc.pid] = proc.create_time()
                    for child in proc.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            found[child.pid] = child.create_time()
        return found

    def record(self) -> set[int]:
        """Remember the PIDs started so far (call once the processes are up)."""
        self.pids.update(self.marked())
        return set(self.pids)

    def stop(self, timeout_s: float = 5.0) -> set[int]:
        """SIGTERM, then SIGKILL, the recorded PIDs and every process still carrying the marker."""
        import psutil

        procs = []
        for pid, created in {**self.pids, **self.marked()}.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created:
                    procs.append(proc)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=timeout_s)
        return {p.pid for p in procs}
