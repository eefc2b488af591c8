"""What machine a measurement ran on, and at which code: facts that benchmarks and reports record
next to their figures.

Every benchmark under ``bench/`` starts a :class:`Provenance` before it measures anything and puts
``Provenance.block()`` under the key ``"provenance"`` of its results JSON: the git commit and
whether the tree was dirty, the exact command, the machine (CPU model, cores, memory), the load
average at the start and the end, the Python / torch / Ray versions and the UTC timestamps. A figure
is reproducible from that block alone: check out the commit, run the command.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "ray", "numpy", "pyarrow")


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``"unknown"`` where there is none)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Physical memory in GiB (``None`` where the OS does not say)."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (``None`` where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, MiB (``None`` where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


def machine() -> dict[str, Any]:
    """CPU model, logical cores, memory and platform of this machine."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": memory_gib(), "platform": platform.platform(),
            "arch": platform.machine()}


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Python's and each installed package's version (``None``: not installed); imports nothing."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The commit checked out in ``repo`` and the paths that differ from it (tracked changes and
    untracked files that git does not ignore). ``commit`` is ``None`` outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=normal").splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "changed": [], "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:50], "changed_count": len(changed)}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """Taken when a benchmark starts (before it measures); :meth:`block` adds the end.

    ``script``: the benchmark's file; ``args``: its arguments as given (``None``: ``sys.argv[1:]``,
    the command line; a list: ``main(args)`` was called in process, e.g. by a test).
    """

    script: str
    args: Sequence[str] | None = None
    repo: Path = REPO
    started_at: str = field(default_factory=_now, init=False)
    load_at_start: list[float] | None = field(default_factory=load_average, init=False)
    git: dict[str, Any] = field(init=False)
    argv: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.repo = Path(self.repo).resolve()
        self.git = git_state(self.repo)
        path = Path(self.script).resolve()
        shown = str(path.relative_to(self.repo)) if path.is_relative_to(self.repo) else str(path)
        self.argv = [shown, *(sys.argv[1:] if self.args is None else [str(a) for a in self.args])]

    @property
    def command(self) -> str:
        """The command that reruns this benchmark from the repository root."""
        return shlex.join(["python", *self.argv])

    def block(self) -> dict[str, Any]:
        """The ``"provenance"`` entry of a results JSON (call it when the measurement is done)."""
        return {
            "commit": self.git["commit"],
            "dirty": self.git["dirty"],
            "git": self.git,
            "command": self.command,
            "argv": list(self.argv),
            "invoked": "command line" if self.args is None else "main(argv) in process",
            "machine": machine(),
            "load_average": {"start": self.load_at_start, "end": load_average()},
            "versions": versions(),
            "started_at": self.started_at,
            "finished_at": _now(),
        }


PROVENANCE_KEYS = ("commit", "dirty", "git", "command", "argv", "invoked", "machine", "load_average", "versions",
                   "started_at", "finished_at")
