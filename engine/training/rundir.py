"""Who owns a run directory, and who is writing to it now.

A run directory belongs to llmtui when it holds the marker file `.llmtui-run`
(written first, when llmtui creates the directory, with a format version).
llmtui deletes or rewrites files only inside a marked directory, and only the
names it writes itself (OWN_FILES, its checkpoint directories, and their
`.tmp-` / `.trash-` siblings). A folder that is not empty and has no marker is
refused, unless its layout is recognisably a run of llmtui 0.1.0 (only names
llmtui writes), which is adopted by writing the marker.

A run being trained holds `.llmtui-lock`: an exclusive `fcntl.flock` on it for
the whole run, data preparation included, and in it the holder's PID, host and
start time. A second writer is refused with one line naming the holder. The
kernel drops a flock when its process dies, so a lock file that still names a
holder but is not locked was left by a process that is gone: it is reported
and taken over, never obeyed. A clean exit empties the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from llmtui.engine import fsutil
from llmtui.engine.errors import UserError

MARKER = ".llmtui-run"
LOCK = ".llmtui-lock"
MARKER_VERSION = 1
OWN_FILES = frozenset({"config.toml", "metrics.jsonl", "train_log.json", MARKER, LOCK})
_CHECKPOINT_DIR = re.compile(r"^(last|best|step_\d+|best_step_\d+)$")
_TEMP = re.compile(r"^\.(tmp|trash)-(?P<name>.+)-[0-9a-f]{8}$")


class RunDirError(UserError):
    """A run directory that llmtui may not write to (not its own, or in use)."""


def is_checkpoint_name(name: str) -> bool:
    return bool(_CHECKPOINT_DIR.match(name))


def is_own_name(name: str) -> bool:
    """A name llmtui writes in a run directory: its files, checkpoint folders, and
    the temporary siblings of either."""
    if name in OWN_FILES or is_checkpoint_name(name):
        return True
    temp = _TEMP.match(name)
    return bool(temp) and (temp["name"] in OWN_FILES or is_checkpoint_name(temp["name"]))


def own_temp_name(name: str) -> bool:
    """A `.tmp-` or `.trash-` sibling of one of llmtui's own names."""
    return bool(_TEMP.match(name)) and is_own_name(name)


# ---------------------------------------------------------------------------
# ownership

def state_of(run_dir: Path) -> str:
    """missing | empty | ours (marked) | legacy (a 0.1.0 run) | foreign | not_a_dir."""
    if not run_dir.exists():
        return "missing"
    if not run_dir.is_dir():
        return "not_a_dir"
    names = [p.name for p in run_dir.iterdir()]
    if MARKER in names:
        return "ours"
    if not names:
        return "empty"
    if all(is_own_name(n) for n in names):
        # only llmtui's names: a 0.1.0 run when it holds a config or checkpoints, else
        # the remains of a start that wrote nothing of value (a lock file)
        if any(n == "config.toml" or is_checkpoint_name(n) for n in names):
            return "legacy"
        return "empty"
    return "foreign"


def check_writable(run_dir: Path) -> str:
    """The directory's state when llmtui may make or use it as a run directory;
    a one-line refusal otherwise. Writes nothing."""
    state = state_of(run_dir)
    if state == "not_a_dir":
        raise RunDirError(f"{run_dir}: is a file, not a run directory; choose another run.name "
                          "or run.out_dir")
    if state == "foreign":
        raise RunDirError(f"{run_dir}: folder exists, is not empty and was not made by llmtui; "
                          "llmtui will not write into it (choose another run.name or run.out_dir)")
    return state


def claim(run_dir: Path) -> None:
    """Make `run_dir` a marked run directory (creating it, or adopting a 0.1.0 run)."""
    if check_writable(run_dir) == "ours":
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        record = {"format": "llmtui-run", "version": MARKER_VERSION,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        fsutil.atomic_write(run_dir / MARKER, (json.dumps(record) + "\n").encode())
    except OSError as exc:
        raise RunDirError(f"{run_dir}: cannot create the run directory ({exc.strerror or exc}); "
                          "check run.out_dir") from None


# ---------------------------------------------------------------------------
# the lock

@dataclass(frozen=True)
class Holder:
    """Who holds (or held) a run's lock."""
    pid: int
    host: str
    started: float            # Unix time the holder took the lock
    alive: bool               # the lock is held now

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        return f"PID {self.pid} on {self.host} since {when}"


def _read_holder(text: str) -> tuple[int, str, float] | None:
    try:
        d = json.loads(text)
        return int(d["pid"]), str(d["host"]), float(d["started"])
    except (ValueError, KeyError, TypeError):
        return None


def holder(run_dir: Path) -> Holder | None:
    """The process training this run now, or the one that left the lock without
    releasing it (killed); None when nobody holds it. Reads; takes no lock for
    longer than a test."""
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(fd, 4096).decode("utf-8", "replace")
        parsed = _read_holder(text)
        if parsed is None:
            return None
        import fcntl
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            alive = True          # someone holds it exclusively: training now
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            alive = False
        return Holder(*parsed, alive=alive)
    finally:
        os.close(fd)


def busy(run_dir: Path, held: Holder | None) -> RunDirError:
    """The refusal of a second writer, naming the one training the run."""
    who = held.describe() if held is not None else "another process"
    return RunDirError(f"{run_dir}: is being trained by {who}; llmtui refuses a second writer "
                       "(wait for it, or stop it first)")


def refuse_if_held(run_dir: Path) -> None:
    """Refuse now (writing nothing) when a live process holds the run's lock."""
    held = holder(run_dir)
    if held is not None and held.alive:
        raise busy(run_dir, held)


class RunLock:
    """The exclusive lock of one run directory, held by the process training it."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> str | None:
        """Take the lock or refuse with one line naming the holder. Returns a warning
        when a lock left by a dead process was taken over."""
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"{self.path}: cannot create the run's lock file "
                              f"({exc.strerror or exc})") from None
        # a reader testing the lock holds it shared for microseconds: retry briefly
        for attempt in range(20):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or attempt == 19:
                    parsed = _read_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                    os.close(fd)
                    raise busy(self.run_dir, Holder(*parsed, alive=True) if parsed else None) from None
                time.sleep(0.05)
        previous = _read_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        warning = None
        if previous is not None:
            stale = Holder(*previous, alive=False)
            warning = (f"{self.run_dir}: took over the lock left by {stale.describe()}, whose process "
                       "is gone (the run was interrupted)")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (record + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise RunDirError(f"{self.path}: cannot write the run's lock file "
                              f"({exc.strerror or exc})") from None
        self._fd = fd
        return warning

    def release(self) -> None:
        """Empty the lock file (nobody holds it) and drop the lock. The file stays:
        removing it would let two processes lock two different files."""
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # a full disk must not keep the lock: flock is dropped below anyway
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
