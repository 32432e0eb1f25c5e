"""Where `llmtui export` may write, what it may replace, and what it cleans up.

An export never deletes an llmtui run (a folder with `.llmtui-run`, or a run of
llmtui 0.1.0) or checkpoint (a folder with llmtui's manifest.json), at any depth
below OUT, and never writes inside one: resuming a run rewrites its checkpoints
and would delete an export made in `RUN/last/`. OUT may not be a symbolic link
(replacing it would move the link, not what it points to).

The export is written in `.tmp-OUT-xxxxxxxx` beside OUT, which holds a marker
file locked (flock) by the exporting process for as long as it writes. An
export killed midway leaves that folder behind, and one killed while replacing
OUT leaves the old OUT as `.trash-OUT-xxxxxxxx`; the next export to OUT removes
those of its own name once its own OUT is in place: a `.tmp-` folder only when
no process holds its marker, and neither when it holds a run or a checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from llmtui.engine import fsutil
from llmtui.engine.errors import UserError
from llmtui.engine.training import rundir
from llmtui.engine.training.checkpoint import MANIFEST

WRITING_MARK = ".llmtui-exporting"   # in a temporary export folder, locked while it is written
UNMARKED_STALE_SECONDS = 600         # a `.tmp-` folder without a marker is someone's only this long


# ---------------------------------------------------------------------------
# what is llmtui's

def owned_by_llmtui(folder: Path) -> str | None:
    """What `folder` is when it is one of llmtui's ("a run", "a checkpoint"), else None.
    A folder that cannot be listed is taken for none (callers that delete walk it first)."""
    try:
        if rundir.state_of(folder) in ("ours", "legacy"):
            return "a run"
    except OSError:
        return None
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "a checkpoint"      # cannot tell: taken for one, so it is kept
        if isinstance(data, dict) and "format_version" in data and isinstance(data.get("files"), dict):
            return "a checkpoint"
    return None


def _llmtui_inside(folder: Path) -> tuple[Path, str] | None:
    """The first llmtui run or checkpoint at or below `folder` (symbolic links are not
    followed: removing a folder removes a link, not its target)."""
    unreadable: list[OSError] = []
    for dirpath, _, _ in os.walk(folder, onerror=unreadable.append):
        what = owned_by_llmtui(Path(dirpath))
        if what:
            return Path(dirpath), what
    if unreadable:
        exc = unreadable[0]
        raise UserError(f"{exc.filename}: cannot look inside ({exc.strerror or exc}); it may hold "
                        "llmtui runs or checkpoints, so it is not replaced")
    return None


# ---------------------------------------------------------------------------
# the refusals, before anything is written

def check_out(out: Path, source: Path, overwrite: bool) -> None:
    """Refuse (one line, nothing written) an OUT the export may not use."""
    if out.is_symlink():
        raise UserError(f"{out}: is a symbolic link (to {os.readlink(out)}); give the folder itself, "
                        "or a new name to export into")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give a folder to export into")
    resolved = out.resolve()
    for parent in resolved.parents:
        what = owned_by_llmtui(parent)
        if what:
            raise UserError(f"{out}: is inside {what} of llmtui ({parent}), which llmtui rewrites "
                            "(resuming deletes what it does not know); export to a folder outside it")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UserError(f"{out}: exists and is not empty; choose another folder, or pass --overwrite "
                        "to replace it")
    source = source.resolve()
    found = (source, "the checkpoint exported") if resolved == source or resolved in source.parents \
        else _llmtui_inside(out)
    if found:
        where = "" if found[0] == resolved else f" ({found[0]})"
        raise UserError(f"{out}: holds {found[1]} of llmtui{where}; --overwrite never replaces "
                        "those: choose another folder")


# ---------------------------------------------------------------------------
# the temporary folder and what killed exports left

class TempExport:
    """`.tmp-OUT-xxxxxxxx` beside OUT with a marker locked while this process writes it."""

    def __init__(self, out: Path):
        self.path = fsutil.temp_sibling(out)
        self._fd: int | None = None

    def create(self) -> Path:
        self.path.mkdir()
        mark = self.path / WRITING_MARK
        self._fd = os.open(mark, os.O_RDWR | os.O_CREAT, 0o644)
        _lock(self._fd)
        os.write(self._fd, json.dumps({"pid": os.getpid(), "started": time.time()}).encode())
        return self.path

    def finish(self) -> None:
        """Take the marker out (the folder becomes the export); the lock goes with close()."""
        (self.path / WRITING_MARK).unlink(missing_ok=True)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)    # drops the flock
            self._fd = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:          # no flock (Windows): leftovers are then never taken for stale
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _nobody_writes(tmp: Path) -> bool:
    """Whether no live process writes the temporary export folder `tmp`."""
    try:
        fd = os.open(tmp / WRITING_MARK, os.O_RDONLY)
    except FileNotFoundError:
        # made before its marker, or about to be renamed: only for a moment
        try:
            return time.time() - tmp.stat().st_mtime > UNMARKED_STALE_SECONDS
        except OSError:
            return False
    except OSError:
        return False
    try:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True              # nobody holds it: the writer is gone
    except (ImportError, OSError):
        return False
    finally:
        os.close(fd)


def remove_leftovers(out: Path) -> list[str]:
    """Remove what killed exports to `out` left beside it (see the module docstring);
    returns the names removed."""
    pattern = re.compile(rf"^\.(tmp|trash)-{re.escape(out.name)}-[0-9a-f]{{8}}$")
    removed: list[str] = []
    try:
        siblings = [p for p in out.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return removed
    for p in siblings:
        try:
            if p.is_symlink():
                p.unlink()      # OUT was a link an earlier llmtui moved aside: never its target
            elif p.is_dir() and (p.name.startswith(".trash-") or _nobody_writes(p)) \
                    and _llmtui_inside(p) is None:
                shutil.rmtree(p)
            else:
                continue
        except (OSError, UserError):
            continue
        removed.append(p.name)
    return removed
