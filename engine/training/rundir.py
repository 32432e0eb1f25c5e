"""Who owns a run directory, and who is writing to it now.

A run directory belongs to llmtui when it holds the marker file `.llmtui-run`
(written first, when llmtui creates the directory, with a format version).
llmtui deletes or rewrites files only inside a marked directory, and only the
names it writes itself (OWN_FILES, its checkpoint directories, and their
`.tmp-` / `.trash-` siblings). A folder that is not empty and has no marker is
refused, unless its layout is recognisably a run of llmtui 0.1.0 (only names
llmtui writes), which is adopted by writing the marker.

The marker also records the checkpoint folders the run wrote (`checkpoints`):
retention and `--overwrite` delete only those, so a user's own `step_999999/`
or `best_step_1/` inside a run is never taken for llmtui's. A marker that is
not llmtui's JSON, or comes from a newer llmtui, is refused, not rewritten.

A run being trained holds `.llmtui-lock`: an exclusive `fcntl.flock` on it for
the whole run, data preparation included, and in it the holder's PID, host and
start time. A second writer is refused with one line naming the holder. The
kernel drops a flock when its process dies, so a lock file that still names a
holder but is not locked was left by a process that is gone: it is reported
and taken over, never obeyed. A clean exit removes the file (while still
holding the lock; a process that locked the removed file notices that the path
names another file now and tries again). The holder checks at every step that
its lock file is still the one at the path: deleted by hand, it is put back;
replaced by another process's, training stops without writing more.
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
# where --overwrite keeps the old run until the new one has saved its first checkpoint
OVERWRITTEN = ".llmtui-overwritten"
OWN_FILES = frozenset({"config.toml", "metrics.jsonl", "train_log.json", MARKER, LOCK, OVERWRITTEN, "wandb_run_id.txt"})
RECORD_FILES = ("metrics.jsonl", "train_log.json", "config.toml")   # the record a run writes
_CHECKPOINT_DIR = re.compile(r"^(last|best|step_\d+|best_step_\d+|epoch_\d+)$")
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
    return temp is not None and (temp["name"] in OWN_FILES or is_checkpoint_name(temp["name"]))


def own_temp_name(name: str) -> bool:
    """A `.tmp-` or `.trash-` sibling of one of llmtui's own names."""
    return bool(_TEMP.match(name)) and is_own_name(name)


# ---------------------------------------------------------------------------
# ownership

def state_of(run_dir: Path) -> str:
    """missing | empty | ours (marked) | legacy (a 0.1.0 run) | foreign | not_a_dir |
    bad_marker (a marker that is not llmtui's, or from a newer llmtui)."""
    if not run_dir.exists():
        return "missing"
    if not run_dir.is_dir():
        return "not_a_dir"
    names = [p.name for p in run_dir.iterdir()]
    if MARKER in names:
        return "ours" if marker_problem(run_dir) is None else "bad_marker"
    if not names:
        return "empty"
    if all(is_own_name(n) for n in names):
        # only llmtui's names: a 0.1.0 run when it holds a config or checkpoints written by
        # llmtui (a manifest), else the remains of a start that wrote nothing of value (a
        # lock file); a user's folder that happens to be called last/ is not a checkpoint
        if "config.toml" in names or any(_is_llmtui_checkpoint(run_dir / n) for n in names
                                         if is_checkpoint_name(n)):
            return "legacy"
        if any(is_checkpoint_name(n) for n in names):
            return "foreign"
        return "empty"
    return "foreign"


def _is_llmtui_checkpoint(path: Path) -> bool:
    """A folder written by llmtui's checkpoint code: it holds a manifest with a format version."""
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(manifest, dict) and "format_version" in manifest and "files" in manifest


def read_marker(run_dir: Path) -> dict | None:
    """The marker's record, or None when it is missing or not llmtui's."""
    try:
        text = (run_dir / MARKER).read_bytes()[:1 << 20].decode("utf-8")
        record = json.loads(text)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("format") != "llmtui-run":
        return None
    return record


def marker_problem(run_dir: Path) -> str | None:
    """Why the run's marker cannot be trusted, or None when it is a marker this llmtui reads."""
    path = run_dir / MARKER
    if not path.is_file():
        return f"{path}: is not a file; this folder was not made by llmtui (or its marker was replaced)"
    record = read_marker(run_dir)
    if record is None:
        return f"{path}: is not an llmtui run marker; llmtui will not write into this folder"
    version = record.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"{path}: has no valid \"version\"; llmtui will not write into this folder"
    if version > MARKER_VERSION:
        return (f"{path}: written by a newer llmtui (run format {version}; this llmtui reads "
                f"{MARKER_VERSION}); use that llmtui, or choose another run.name")
    listed = record.get("checkpoints")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(n, str) for n in listed)):
        return f"{path}: \"checkpoints\" must be a list of folder names; llmtui will not write into this folder"
    return None


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
    if state == "bad_marker":
        # (the marker changed between the two reads: report what state_of saw)
        raise RunDirError(marker_problem(run_dir) or f"{run_dir / MARKER}: is not an llmtui run marker; "
                          "llmtui will not write into this folder")
    return state


def recorded_checkpoints(run_dir: Path) -> set[str]:
    """The checkpoint folders this run's record says llmtui wrote. A marker from
    before the record existed counts every folder of llmtui's names holding an
    llmtui manifest."""
    record = read_marker(run_dir)
    listed = record.get("checkpoints") if record else None
    if isinstance(listed, list):
        return {n for n in listed if isinstance(n, str) and is_checkpoint_name(n)}
    if not run_dir.is_dir():
        return set()
    return {p.name for p in run_dir.iterdir() if is_checkpoint_name(p.name) and _is_llmtui_checkpoint(p)}


def record_checkpoints(run_dir: Path, names: set[str]) -> None:
    """Rewrite the marker's list of checkpoint folders (atomically)."""
    record = read_marker(run_dir) or {"format": "llmtui-run", "version": MARKER_VERSION}
    record["checkpoints"] = sorted(names)
    fsutil.atomic_write(run_dir / MARKER, (json.dumps(record) + "\n").encode())


def unrecorded_checkpoint_names(run_dir: Path) -> list[str]:
    """Folders with llmtui's checkpoint names that the run's record does not list: a
    user's own, which llmtui must neither replace nor delete."""
    if not run_dir.is_dir():
        return []
    mine = recorded_checkpoints(run_dir)
    return sorted(p.name for p in run_dir.iterdir() if is_checkpoint_name(p.name) and p.name not in mine)


def claim(run_dir: Path) -> None:
    """Make `run_dir` a marked run directory (creating it, or adopting a 0.1.0 run)."""
    if check_writable(run_dir) == "ours":
        return
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        # a 0.1.0 run's checkpoints are llmtui's: adopt them into the record
        adopted = sorted(p.name for p in run_dir.iterdir()
                         if is_checkpoint_name(p.name) and _is_llmtui_checkpoint(p))
        record = {"format": "llmtui-run", "version": MARKER_VERSION,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "checkpoints": adopted}
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
        try:
            text = os.read(fd, 4096).decode("utf-8", "replace")
        except OSError:
            return None       # not a file (a directory): nobody's lock
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
        self._identity: tuple[int, int] | None = None     # (st_dev, st_ino) of the file we lock

    def acquire(self) -> str | None:
        """Take the lock or refuse with one line naming the holder. Returns a warning
        when a lock left by a dead process was taken over."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise RunDirError(f"{self.path}: is not a lock file llmtui wrote (a folder or a link); "
                              "remove it, or choose another run.name")
        # the holder removes the file at its end: a lock taken on a file that was removed
        # meanwhile protects nothing, so check the path still names the locked file
        for _ in range(100):
            fd = self._lock_once()
            if fd is None:
                continue
            st = os.fstat(fd)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (st.st_dev, st.st_ino):
                return self._write_holder(fd, (st.st_dev, st.st_ino))
            os.close(fd)
        raise busy(self.run_dir, None)

    def _lock_once(self) -> int | None:
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
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK) or attempt == 19:
                    parsed = _read_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
                    os.close(fd)
                    raise busy(self.run_dir, Holder(*parsed, alive=True) if parsed else None) from None
                time.sleep(0.05)
        return None

    def _write_holder(self, fd: int, identity: tuple[int, int]) -> str | None:
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
        self._fd, self._identity = fd, identity
        return warning

    def check(self) -> str | None:
        """Is the file at the lock's path still the one this process locks? When it was
        deleted (by hand), a new one is made and locked: a warning is returned. When
        another file is there (another process's), a RunDirError: this process must
        not write to the run any more."""
        if self._fd is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError:
            return None
        if st is not None and (st.st_dev, st.st_ino) == self._identity:
            return None
        if st is None:
            old, self._fd = self._fd, None
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError:
                fd = None          # created by someone else in between
            if fd is not None:
                import fcntl
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    fd = None
            os.close(old)
            if fd is not None:
                st = os.fstat(fd)
                self._write_holder(fd, (st.st_dev, st.st_ino))
                return (f"{self.path}: the run's lock file was deleted while training; made it again "
                        "(do not delete it while a run trains: it keeps a second process out)")
        else:
            os.close(self._fd)
            self._fd = None
        raise RunDirError(f"{self.path}: the run's lock file was replaced while training (another "
                          "process may be writing this run now); stopped without writing more")

    def release(self) -> None:
        """Remove the lock file, then drop the lock (a process waiting on the removed
        file sees that the path no longer names it, and tries again)."""
        if self._fd is None:
            return
        import fcntl

        fd, self._fd = self._fd, None
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
        except OSError:
            try:
                os.ftruncate(fd, 0)   # cannot remove it: at least it names nobody
            except OSError:
                pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None
