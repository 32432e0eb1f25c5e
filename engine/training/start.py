"""The commit half of a start: what it changes on disk, and how a refusal undoes it;
and where a torchrun group that torchrun restarted continues from (`restart_checkpoint`).

A start is planned first (every check that reads: the run directory, the
sources, the checkpoint to resume from, trackers, tokenizer, memory; nothing
written), then committed: the run directory is created and locked, the marker
written, data prepared, the model built. Some refusals can only come during the
commit (a corpus that turns out empty once read, token ids beyond the
vocabulary). `StartTransaction` remembers what the commit changed so that such
a refusal leaves the disk as it found it:

- a run directory (and the parent folders) this start created are removed;
- a marker this start wrote into an existing folder is removed;
- `--overwrite` moves the old run's checkpoints and record aside into
  `.llmtui-overwritten/` and deletes them only once the new run has written
  its first checkpoint; a start that fails or is interrupted before that puts
  them back. A process killed in between leaves that folder, and the next
  start puts it back (or, when the new run did save a checkpoint, removes it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from llmtui.engine.config.schema import Config
    from llmtui.engine.training.distributed import Elastic

from llmtui.engine import fsutil
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training import rundir


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` and its parents that do not exist yet, deepest first."""
    missing = []
    for p in [path, *path.parents]:
        if p.exists() or p == p.parent:
            break
        missing.append(p)
    return missing


class StartTransaction:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._created = _missing_ancestors(run_dir)     # computed before anything is made
        self._wrote_marker = False
        self._moved: list[str] = []                     # names moved into OVERWRITTEN
        self.started = False          # the run's record is open: the run exists now
        self.saved = False            # the new run wrote a checkpoint: overwrite is final

    @property
    def aside(self) -> Path:
        return self.run_dir / rundir.OVERWRITTEN

    # -- commit ---------------------------------------------------------------

    def created_dir(self) -> bool:
        return bool(self._created)

    def marked(self, had_marker: bool) -> None:
        """The marker is in place; remember whether this start wrote it."""
        self._wrote_marker = not had_marker

    def recover(self) -> str | None:
        """Finish what a start killed during an --overwrite left: its new run saved a
        checkpoint (the old run is gone for good) or it did not (the old run comes
        back). Returns a line for the user, or None when there was nothing to do."""
        if not self.aside.is_dir():
            return None
        if any((self.run_dir / name / "manifest.json").is_file()
               for name in rundir.recorded_checkpoints(self.run_dir)):
            shutil.rmtree(self.aside, ignore_errors=True)   # the new run had saved
            return None
        self._moved = sorted(_names(self.aside))
        self._put_back()
        return (f"{self.run_dir}: an earlier --overwrite was interrupted before the new run saved a "
                "checkpoint; the old run was put back")

    def move_aside(self) -> None:
        """--overwrite: move the old run's checkpoints and record out of the way."""
        names = sorted(rundir.recorded_checkpoints(self.run_dir)) + list(rundir.RECORD_FILES)
        present = [n for n in names if (self.run_dir / n).exists()]
        if not present:
            return
        self.aside.mkdir(exist_ok=True)
        for name in present:
            os.rename(self.run_dir / name, self.aside / name)
            self._moved.append(name)
        rundir.record_checkpoints(self.run_dir, set())
        fsutil.fsync_dir(self.run_dir)

    def checkpoint_saved(self) -> None:
        """The new run has a checkpoint of its own: the old one may go now."""
        if self.saved:
            return
        self.saved = True
        if self._moved:
            shutil.rmtree(self.aside, ignore_errors=True)
            self._moved = []

    # -- undo -----------------------------------------------------------------

    def finish(self) -> None:
        """The start ended (at any point): undo what it must not leave behind."""
        if self._moved and not self.saved:
            self._put_back()
        if self.started:
            return
        # refused or interrupted before the run existed: leave the disk as it was
        if self._created:
            _remove_own(self.run_dir)
            for folder in self._created:
                try:
                    folder.rmdir()       # only when empty: never anything of the user's
                except OSError:
                    break
        elif self._wrote_marker:
            (self.run_dir / rundir.MARKER).unlink(missing_ok=True)

    def _put_back(self) -> None:
        """Return the old run's files (what the new run wrote in their place goes)."""
        for name in rundir.RECORD_FILES:
            if name in self._moved:
                (self.run_dir / name).unlink(missing_ok=True)
        for name in self._moved:
            target = self.run_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            os.rename(self.aside / name, target)
        rundir.record_checkpoints(self.run_dir, rundir.recorded_checkpoints(self.run_dir)
                                  | {n for n in self._moved if rundir.is_checkpoint_name(n)})
        self._moved = []
        shutil.rmtree(self.aside, ignore_errors=True)
        fsutil.fsync_dir(self.run_dir)


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def _remove_own(run_dir: Path) -> None:
    """Remove the files a start writes into a run directory it created (its own names)."""
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if not rundir.is_own_name(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def restart_checkpoint(elastic: Elastic, cfg: Config, run_dir: Path, warn: Callable[[str], None], *,
                       job_started: Callable[[], float | None]) -> tuple[Path, str] | None:
    """`torchrun --max-restarts N`: when a process dies, torchrun restarts the group,
    which continues from the newest intact checkpoint its torchrun job wrote, whatever
    --resume or --overwrite said: the first attempt acted on them already, and acting
    again would refuse the run it started or start it over. (That checkpoint, what to
    say at the step the run continues from), or None where the start goes as asked.

    "Its job wrote it": saved after torchrun's agent started (`job_started()`). On the
    first attempt the job has saved nothing, so it never resumes there; a checkpoint
    older than the job is an earlier run's, and the arguments stand (a start refused for
    want of --resume is refused again, not turned into a resume). TORCHELASTIC_RESTART_COUNT
    is not the test: each machine's agent counts its own restarts (one that restarts because
    another machine's process died does not count it), so rank 0 may be on a machine that
    counted none; it is the test only where the agent's start cannot be read. The dead
    group's lock is stale by then (its processes are gone): the commit takes it over with
    a warning."""
    saving = cfg.checkpoint
    if not elastic.enabled:
        return None
    if elastic.max_restarts and elastic.restart == 0 and not saving.every_n_steps \
            and not (cfg.training.epochs and saving.every_n_epochs):
        warn(f"torchrun --max-restarts {elastic.max_restarts}: checkpoint.every_n_steps = 0 "
             "saves no step checkpoints, so a restarted group starts over (or from `best`); "
             "set it to save every few minutes of training")
    started = job_started()
    if started is None and not elastic.restart:
        return None

    def ours(checkpoint: Path) -> bool:
        if started is None:
            return True
        saved = ckpt.checkpoint_time(checkpoint)
        return saved is not None and saved >= started

    # a look at state.json first: the full check (every file's sha256) only when it counts
    if not any(ours(p) for p in ckpt.candidates(run_dir)):
        return None
    path, notes = ckpt.latest_intact(run_dir)
    if path is None or not ours(path):
        return None
    for note in notes:
        warn(f"skipped damaged checkpoint: {note}")
    count = f" (restart {elastic.restart} of at most {elastic.max_restarts})" if elastic.restart else ""
    return path, f"torchrun restarted the processes{count}: continuing from {path}"
