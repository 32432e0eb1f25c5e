"""Run directories, as front ends see them: where a config's run lives, which
runs a folder holds, what state each is in, and their checkpoints.

The app and the CLI use these instead of reading a run's files themselves.
Listing is cheap (small JSON files, the wanted lines of config.toml, and only
the tail of a running run's metrics.jsonl), so a folder of hundreds of runs
lists at once.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.engine.config.schema import Config
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training import rundir
from llmtui.engine.training.history import progress
from llmtui.engine.training.rundir import Holder

# what a run's summary says about how it ended -> the status users see
_STATUS_OF_STOP = {"max_steps": "finished", "early_stopping": "finished", "stopped": "stopped",
                   "interrupted": "interrupted", "nonfinite_loss": "diverged"}


def run_dir_of(cfg: Config) -> Path:
    """`<run.out_dir>/<run.name>`: where a run of this config keeps its files."""
    return Path(cfg.run.out_dir) / cfg.run.name


@dataclass
class RunInfo:
    name: str
    path: Path
    status: str                         # running, or a value of _STATUS_OF_STOP
    holder: Holder | None               # who trains it now (or left it, when interrupted)
    steps: int                          # steps done: a running run's newest metrics line, else
                                        # its newest checkpoint (where a resume starts), or the summary
    max_steps: int | None
    best_val_loss: float | None
    last_val_loss: float | None
    tokens_seen: int | None
    training_time: float | None         # seconds over all segments (pauses excluded)
    modified: float                     # Unix time of the newest file llmtui wrote
    n_params: int | None
    tokenizer: str                      # "char", "bpe gpt2", ...
    model: str                          # "4x128, block 64"
    checkpoints: list[str] = field(default_factory=list)   # names, newest first

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["path"] = str(self.path)
        out["holder"] = None if self.holder is None else {
            "pid": self.holder.pid, "host": self.holder.host, "started": self.holder.started,
            "alive": self.holder.alive}
        return out


def newest_checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's newest checkpoint, None when it has none (cheap:
    reads state.json files, verifies no hashes)."""
    found = ckpt.candidates(run_dir)
    return max(ckpt.checkpoint_step(p) for p in found) if found else None


def newest_intact_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose files verify, and a note for each damaged one skipped."""
    return ckpt.latest_intact(run_dir)


@dataclass
class ResumePoint:
    """Where a resume of a run starts: a checkpoint's step, the length of the run that
    wrote it and the config it was trained with."""
    checkpoint: Path
    step: int
    max_steps: int
    config: Config

    def lr_change(self, new_max_steps: int, config: Config | None = None) -> str | None:
        """What resuming to `new_max_steps` with `config` (by default the checkpoint's own)
        does to the learning rate at the resume point, in one sentence, or None when it
        stays: the schedule follows the new length and the new config's settings."""
        from llmtui.engine.training.schedule import lr_at, lr_jump_hint

        old, new = self.config, config or self.config
        before = lr_at(self.step, old.scheduler, old.optimizer.learning_rate, self.max_steps)
        after = lr_at(self.step, new.scheduler, new.optimizer.learning_rate, new_max_steps)
        if self.step == 0 or math.isclose(before, after, rel_tol=1e-6):
            return None
        same = old.scheduler == new.scheduler and old.optimizer.learning_rate == new.optimizer.learning_rate
        why = (f"the {self.max_steps:,}-step schedule becomes one of {new_max_steps:,} steps" if same
               else "the new config's learning rate or schedule")
        hint = f"; {lr_jump_hint(old.scheduler, self.step, self.max_steps)}" if same else ""
        return (f"Learning rate at step {self.step:,}: {before:.3g} -> {after:.3g} ({why}){hint}.")


def resume_point(checkpoint: Path) -> ResumePoint | None:
    """The ResumePoint of a checkpoint directory, or None when its state.json or its
    config.toml cannot be read (the resume itself then says why)."""
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.errors import UserError

    state = _json(checkpoint / "state.json")
    step, max_steps = state.get("step"), state.get("max_steps")
    if not (isinstance(step, int) and isinstance(max_steps, int)) or isinstance(step, bool) \
            or isinstance(max_steps, bool) or step < 0 or max_steps < 0:
        return None
    try:
        cfg = load_config(str(checkpoint / "config.toml"))
    except (UserError, OSError):
        return None
    return ResumePoint(checkpoint, step, max_steps, cfg)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


_LISTED_KEYS = ("n_layer", "n_embd", "block_size", "kind", "encoding", "max_steps")


def _config(path: Path) -> dict:
    """The few settings a run listing shows, from a run's config.toml. Only the section
    headers and those keys' lines are parsed (with tomllib): a whole config, with a
    comment on every key, costs ten times as much, and listings read hundreds."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    wanted = [line for line in lines if line.startswith("[") or line.startswith(_LISTED_KEYS)]
    try:
        return tomllib.loads("\n".join(wanted))
    except (ValueError, RecursionError):
        try:
            return tomllib.loads("\n".join(lines))
        except (ValueError, RecursionError):
            return {}


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _whole(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def run_info(run_dir: Path) -> RunInfo | None:
    """What a run directory holds, or None when it is not a run of llmtui's."""
    if rundir.state_of(run_dir) not in ("ours", "legacy"):
        return None
    summary = _json(run_dir / "train_log.json")
    config = _config(run_dir / "config.toml")
    found = ckpt.candidates(run_dir)
    newest = _json(found[0] / "state.json") if found else {}
    held = rundir.holder(run_dir)
    if held is not None and held.alive:
        status = "running"
    elif held is not None:
        status = "interrupted"       # its trainer died without releasing the lock
    elif summary.get("stop_reason") in _STATUS_OF_STOP:
        status = _STATUS_OF_STOP[summary["stop_reason"]]
    else:
        status = "interrupted"
    model, tokenizer = config.get("model", {}), config.get("tokenizer", {})
    kind = tokenizer.get("kind", "char")
    if found and _json(found[0] / "tokenizer.json").get("kind") == "ids":
        kind = "ids"     # a token file with no vocabulary: the config says char, the run has bare ids
    steps = _number(newest.get("step")) or _number(summary.get("steps")) or 0
    tokens_seen = _whole(newest.get("tokens_seen", summary.get("tokens_seen")))
    if status == "running":   # its checkpoints lag its progress (the first comes after a while)
        tail = progress(run_dir / "metrics.jsonl")
        if tail is not None and tail[0] >= steps:
            steps, tokens_seen = tail[0], tail[1] if tail[1] is not None else tokens_seen
    modified = max([p.stat().st_mtime for p in [run_dir, *found] if p.exists()] or [0.0])
    return RunInfo(
        name=run_dir.name, path=run_dir, status=status, holder=held, steps=int(steps),
        max_steps=_whole(config.get("training", {}).get("max_steps")),
        best_val_loss=_number(newest.get("best_val_loss", summary.get("best_val_loss"))),
        last_val_loss=_number(newest.get("val_loss", summary.get("final_val_loss"))),
        tokens_seen=tokens_seen,
        training_time=_number(summary.get("total_training_time")) or _number(summary.get("training_time")),
        modified=modified, n_params=_whole(summary.get("n_params")),
        tokenizer=kind if kind != "bpe" else f"bpe {tokenizer.get('encoding', '')}".strip(),
        model=(f"{model.get('n_layer', '?')}x{model.get('n_embd', '?')}, "
               f"block {model.get('block_size', '?')}"),
        checkpoints=[p.name for p in found])


def list_runs(folder: Path) -> list[RunInfo]:
    """The runs under `folder` (its direct subfolders made by llmtui), newest first."""
    if not folder.is_dir():
        return []
    runs = [info for p in folder.iterdir() if p.is_dir() and (info := run_info(p)) is not None]
    runs.sort(key=lambda r: (-r.modified, r.name))
    return runs


def delete_run(run_dir: Path) -> list[str]:
    """Delete a run: llmtui's own files and checkpoints in it, nothing else (a folder
    left with other files stays). Refused while a process trains it. Returns the
    names of what was kept."""
    import shutil

    held = rundir.holder(run_dir)
    if held is not None and held.alive:
        raise rundir.RunDirError(f"{run_dir}: is being trained by {held.describe()}; stop it first")
    if rundir.state_of(run_dir) not in ("ours", "legacy", "empty"):
        raise rundir.RunDirError(f"{run_dir}: is not a run directory made by llmtui; nothing deleted")
    kept = []
    mine = rundir.recorded_checkpoints(run_dir)
    for p in sorted(run_dir.iterdir(), key=lambda p: p.name == rundir.MARKER):   # the marker last
        # a folder with a checkpoint's name that the run's record does not list is the user's
        if not rundir.is_own_name(p.name) or (rundir.is_checkpoint_name(p.name) and p.name not in mine):
            kept.append(p.name)
        elif p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    if not kept:
        run_dir.rmdir()
    return sorted(kept)
