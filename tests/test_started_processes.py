"""The teardown helper of the cluster tests stops a detached process tree that never names a temp
dir on its command line, by PID and inherited marker, and leaves other processes alone."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
from started_processes import StartedProcesses

# A daemon as `ray start` makes them: the child double-forks a grandchild that outlives it
# (re-parented away from the test) and sleeps; nothing on its command line names the test.
DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1] + ".tmp", "w").write(str(os.getpid())); os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(120)
    os._exit(0)
os.wait()
"""


def test_detached_processes_are_stopped_and_others_left(tmp_path):
    started = StartedProcesses()
    pid_file = tmp_path / "daemon.pid"
    subprocess.run([sys.executable, "-c", DAEMON, str(pid_file)], env=started.env(dict(os.environ)),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, check=True)
    deadline = time.monotonic() + 20
    while not pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    daemon = int(pid_file.read_text())
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # not started with the marker
    try:
        assert psutil.pid_exists(daemon) and psutil.Process(daemon).ppid() != os.getpid()
        assert daemon in started.record() and bystander.pid not in started.pids
        stopped = started.stop(timeout_s=5)
        assert daemon in stopped and bystander.pid not in stopped
        deadline = time.monotonic() + 5
        while psutil.pid_exists(daemon) and psutil.Process(daemon).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the detached process survived"
            time.sleep(0.05)
        assert bystander.poll() is None  # still running
    finally:
        bystander.kill()
        bystander.wait()
