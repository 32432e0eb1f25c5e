"""Checkpoints: one directory each, written atomically, verified on load.

Layout of a checkpoint directory (`last`, `best`, `step_N`, ...):

  model.safetensors   model weights (clean names, tied head stored once)
  state.safetensors   optimizer moments and RNG byte states
  state.json          step, counters, optimizer hyperparameters, sampler
                      position, Python/NumPy RNG, GradScaler, fingerprints
  config.toml         the resolved config the run used
  tokenizer.json      the tokenizer (char vocabulary or encoding name)
  manifest.json       format version, sha256 and size of every file above

A sharded run's checkpoint (training.parallel = "fsdp") has the same files, the model
consolidated, and its optimizer moments sharded beside them, one file per process
(engine.training.optim_shards: optim-rank*-of-*.safetensors and optim-index.json);
its manifest says format version 2, which llmtui before them refuses in one line
rather than resuming without the moments. Every file is in the manifest.

Nothing here calls pickle: tensors go through safetensors, the rest is JSON.
A save writes into a temporary directory on the same filesystem, fsyncs each
file and the directory, then renames it into place; the previous directory of
that name is moved aside first and only deleted once the new one is in place,
so a crash at any instant leaves a complete checkpoint on disk. `save_set` puts a
save where its reason says (step_N, epoch_N, best, last) and rotates the older ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from llmtui.engine import fsutil
from llmtui.engine.errors import CheckpointError
from llmtui.engine.training import optim_shards, rundir
from llmtui.engine.training.events import SaveReason
from llmtui.engine.training.rundir import is_checkpoint_name, own_temp_name, recorded_checkpoints
from llmtui.engine.training.state import MAX_STEPS, SavedState, parse_json, read_state

FORMAT_VERSION = 1          # every checkpoint but a sharded run's
SHARDED_FORMAT_VERSION = 2  # optimizer state in optim-rank*-of-*.safetensors files (engine.training.optim_shards)
MANIFEST = "manifest.json"
REQUIRED = ("model.safetensors", "state.safetensors", "state.json", "config.toml", "tokenizer.json")
_STEP_DIR = re.compile(r"^step_(\d+)$")
_BEST_DIR = re.compile(r"^best_step_(\d+)$")
_TRASH_PREFIX = ".trash-"


# ---------------------------------------------------------------------------
# atomic writing

def atomic_write_text(path: Path, text: str) -> None:
    """Replace a small text file of the run so readers see the old or the new content."""
    try:
        fsutil.atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _build_atomically(target: Path, fill) -> Path:
    """Create directory `target` atomically: `fill(tmp)` writes the files into a
    temporary directory beside it, which is fsynced and renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = fsutil.temp_sibling(target)
    try:
        tmp.mkdir()
        fill(tmp)
        fsutil.fsync_dir(tmp)
        replace_dir(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"{target}: cannot write checkpoint ({exc.strerror or exc}); "
                              "the previous checkpoint is kept") from None
    return target


def write_checkpoint_dir(target: Path, files: dict[str, Any]) -> Path:
    """Atomically create or replace directory `target` holding `files` and their manifest.
    A file's content is bytes (any buffer), or a function that returns them when the file
    is written (a rank's optimizer shard, received then: one at a time in memory)."""
    def fill(tmp: Path) -> None:
        listed: dict[str, dict[str, Any]] = {}
        version = SHARDED_FORMAT_VERSION if optim_shards.INDEX in files else FORMAT_VERSION
        manifest = {"format_version": version, "files": listed}
        for name, data in files.items():
            if callable(data):
                data = data()
            fsutil.write_synced(tmp / name, data)
            listed[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        fsutil.write_synced(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
    return _build_atomically(target, fill)


def replace_dir(new: Path, target: Path) -> None:
    """Move directory `new` to `target`, keeping the old `target` until the
    new one is in place (it is recoverable from `.trash-*` after a crash)."""
    trash = None
    if target.exists():
        trash = target.parent / f"{_TRASH_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, trash)
    os.rename(new, target)
    fsutil.fsync_dir(target.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def copy_checkpoint(src: Path, target: Path) -> Path:
    """Atomically make `target` a copy of checkpoint `src` (hard links where
    the filesystem allows: the files are never modified in place)."""
    def fill(tmp: Path) -> None:
        for f in src.iterdir():
            try:
                os.link(f, tmp / f.name)
            except OSError:
                shutil.copy2(f, tmp / f.name)
    return _build_atomically(target, fill)


# ---------------------------------------------------------------------------
# verification and discovery

def verify(path: Path) -> dict[str, Any]:
    """Check the manifest, every file's size and sha256, and state.json against its schema
    (a crafted checkpoint can carry a recomputed manifest, and the step, read before a
    resume loads anything, must be one a run can reach); return the manifest."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        version = manifest["format_version"]
    except FileNotFoundError:
        raise CheckpointError(f"{manifest_path}: missing; the checkpoint is incomplete") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise CheckpointError(f"{manifest_path}: unreadable or not a llmtui manifest") from None
    if not isinstance(files, dict) or not all(
            isinstance(info, dict) and isinstance(info.get("size"), int)
            and not isinstance(info.get("size"), bool)
            and isinstance(info.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", info["sha256"])
            for info in files.values()):
        raise CheckpointError(f"{manifest_path}: damaged: every file needs a \"size\" and a "
                              "\"sha256\"; the checkpoint cannot be verified")
    if version not in (FORMAT_VERSION, SHARDED_FORMAT_VERSION):
        raise CheckpointError(f"{manifest_path}: format version {version} is not supported "
                              f"(this llmtui reads versions {FORMAT_VERSION} and {SHARDED_FORMAT_VERSION})")
    required = REQUIRED + ((optim_shards.INDEX,) if version == SHARDED_FORMAT_VERSION else ())
    for name in required:
        if name not in files:
            raise CheckpointError(f"{path / name}: not listed in the manifest; the checkpoint is incomplete")
    for name, info in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise CheckpointError(f"{manifest_path}: bad file name {name!r}")
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from the checkpoint")
        if file.stat().st_size != info["size"]:
            raise CheckpointError(f"{file}: size {file.stat().st_size} bytes, manifest says "
                                  f"{info['size']}; the file is truncated or altered")
        if fsutil.sha256_file(file) != info["sha256"]:
            raise CheckpointError(f"{file}: sha256 does not match the manifest; the file is corrupt or altered")
    read_state(_read_text(path / "state.json"), str(path / "state.json"))
    if version == SHARDED_FORMAT_VERSION:
        for name in shard_index(path).files:
            if name not in files:
                raise CheckpointError(f"{path / name}: not listed in the manifest; the checkpoint is incomplete")
    return manifest


def shard_index(path: Path) -> optim_shards.ShardIndex:
    """The index of a sharded run's optimizer state (engine.training.optim_shards), checked."""
    return optim_shards.read_index(_read_json(path / optim_shards.INDEX), str(path / optim_shards.INDEX))


def checkpoint_step(path: Path) -> int:
    """The step state.json records, or -1 when it cannot be read or no run reaches it."""
    try:
        step = parse_json((path / "state.json").read_text(encoding="utf-8"), "")["step"]
        return step if isinstance(step, int) and not isinstance(step, bool) and 0 <= step <= MAX_STEPS else -1
    except (OSError, UnicodeDecodeError, CheckpointError, KeyError, TypeError):
        return -1


def checkpoint_time(path: Path) -> float | None:
    """When the checkpoint was saved (Unix time, state.json's "time"), or None when unreadable."""
    try:
        stamp = parse_json((path / "state.json").read_text(encoding="utf-8"), "")["time"]
        return float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else None
    except (OSError, UnicodeDecodeError, CheckpointError, KeyError, TypeError, ValueError):
        return None


def candidates(run_dir: Path) -> list[Path]:
    """Every checkpoint directory of a run (llmtui's names only), newest step first."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir()
             if is_checkpoint_name(p.name) and p.is_dir() and (p / MANIFEST).exists()]
    def preference(p: Path) -> tuple[float, int]:  # at equal steps: last, then step_N, then best
        # a step that cannot be read comes first: that checkpoint is tried, found damaged and
        # named in a "skipped" note rather than passed over in silence
        step = checkpoint_step(p)
        return step if step >= 0 else math.inf, 2 if p.name == "last" else 1 if _STEP_DIR.match(p.name) else 0
    return sorted(found, key=preference, reverse=True)


def latest_intact(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that verifies, and a note for each one skipped."""
    notes: list[str] = []
    for path in candidates(run_dir):
        try:
            verify(path)
            return path, notes
        except CheckpointError as exc:
            notes.append(str(exc))
    return None, notes


def intact_newest_first(run_dir: Path):
    """(path, None) for each checkpoint that verifies, newest first, and (None, note)
    for each damaged one skipped on the way."""
    for path in candidates(run_dir):
        try:
            verify(path)
        except CheckpointError as exc:
            yield None, str(exc)
            continue
        yield path, None


def has_checkpoints(run_dir: Path) -> bool:
    return bool(candidates(run_dir))


# ---------------------------------------------------------------------------
# retention: only the folders the run's record says llmtui wrote are ever deleted

def step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    mine = recorded_checkpoints(run_dir)
    out = []
    for p in run_dir.iterdir() if run_dir.is_dir() else []:
        m = _STEP_DIR.match(p.name)
        if m and p.name in mine and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def rotate_steps(run_dir: Path, keep_last: int, protect: Path | None = None) -> list[Path]:
    """Delete the oldest step_N directories beyond `keep_last`."""
    removed = []
    dirs = step_dirs(run_dir)
    for _, path in dirs[:max(0, len(dirs) - keep_last)]:
        if protect is not None and path.resolve() == protect.resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def best_dirs(run_dir: Path) -> list[tuple[float, Path]]:
    """`best` and older `best_step_N` directories, lowest val loss first."""
    mine = recorded_checkpoints(run_dir)
    out = []
    for p in run_dir.iterdir() if run_dir.is_dir() else []:
        if p.name in mine and p.is_dir() and (p.name == "best" or _BEST_DIR.match(p.name)):
            try:
                loss = float(json.loads((p / "state.json").read_text())["val_loss"])
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                loss = float("inf")
            out.append((loss, p))
    return sorted(out, key=lambda t: t[0])


def rotate_best(run_dir: Path, keep_best: int, protect: Path | None = None) -> list[Path]:
    removed = []
    for _, path in best_dirs(run_dir)[keep_best:]:
        if path.name == "best" or (protect is not None and path.resolve() == protect.resolve()):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def clear_leftovers(run_dir: Path) -> None:
    """Remove temporary directories and files of a save that was interrupted (only
    llmtui's own `.tmp-<name>-xxxxxxxx`). Trash directories are only removed when
    a complete checkpoint of the same name exists; otherwise they are the last
    copy and are kept for recovery."""
    for p in run_dir.iterdir() if run_dir.is_dir() else []:
        if not own_temp_name(p.name):
            continue
        if p.name.startswith(fsutil.TMP_PREFIX):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        elif p.name.startswith(_TRASH_PREFIX):
            original = run_dir / p.name[len(_TRASH_PREFIX):].rsplit("-", 1)[0]
            if original.is_dir() and (original / MANIFEST).exists():
                shutil.rmtree(p, ignore_errors=True)


@dataclass
class LoadedCheckpoint:
    path: Path
    model_state: dict          # name -> tensor
    tensors: dict              # optimizer moments, RNG states
    state: SavedState          # state.json
    config_toml: str
    tokenizer: dict
    # a sharded run's optimizer state: its moments are in the files this names, not in `tensors`
    optimizer_shards: optim_shards.ShardIndex | None = None


def _read_safetensors(file: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file}: not a valid safetensors file ({exc}); llmtui never "
                              "loads pickled weights") from None


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file}: not readable as text ({exc})") from None


def _read_json(file: Path) -> Any:
    return parse_json(_read_text(file), str(file))


def check_finite(tensors: dict, file: Path) -> None:
    """Refuse NaN or infinite values in a checkpoint's floating-point tensors. Training
    never saves them (a non-finite loss stops it first), so they are damage, even
    under a manifest that verifies; loaded, they make every output NaN."""
    import torch
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{file}: tensor {name} holds NaN or infinite values; the "
                                  "checkpoint is damaged")


def load(path: Path) -> LoadedCheckpoint:
    """Verify and read a checkpoint, every value checked that a manifest cannot vouch
    for (one crafted with a recomputed manifest verifies). Never unpickles anything.
    A sharded optimizer state is only indexed: read it with optim_shards.ShardReader."""
    manifest = verify(path)
    model_state = _read_safetensors(path / "model.safetensors")
    check_finite(model_state, path / "model.safetensors")
    tensors = _read_safetensors(path / "state.safetensors")
    check_finite(tensors, path / "state.safetensors")
    state = read_state(_read_text(path / "state.json"), str(path / "state.json"))
    tokenizer = _read_json(path / "tokenizer.json")
    config_toml = _read_text(path / "config.toml")
    shards = shard_index(path) if manifest["format_version"] == SHARDED_FORMAT_VERSION else None
    return LoadedCheckpoint(path, model_state, tensors, state, config_toml, tokenizer, shards)


# ---------------------------------------------------------------------------
# a run's checkpoints as a set: where a save goes, what it rotates out


def save_set(run_dir: Path, reason: SaveReason, files: dict[str, Any], *, step: int, epoch: int | None,
             keep_last: int, keep_best: int, protect: Path | None) -> Path:
    """Write a checkpoint's `files` into the run where `reason` puts them: step_N (and a
    copy as last), epoch_N (and last), best (the older best kept as best_step_N with
    keep_best > 1) or last; then rotate step_N to keep_last and best_step_N to keep_best,
    never `protect` (the checkpoint the run resumed from). The folder written."""
    # every folder is recorded before it is written: a kill in between leaves a name in
    # the record with no folder (harmless), never a folder of llmtui's that it disowns
    best = run_dir / "best"
    keep_older_best = reason == SaveReason.BEST and keep_best > 1 and best.exists()
    target = {SaveReason.STEP: f"step_{step}", SaveReason.BEST: "best",
              SaveReason.EPOCH: f"epoch_{epoch}"}.get(reason, "last")
    names = [target] + (["last"] if reason in (SaveReason.STEP, SaveReason.EPOCH) else [])
    if keep_older_best:
        names.append(f"best_step_{checkpoint_step(best)}")
    _update_record(run_dir, add=names)
    removed: list[Path] = []
    if keep_older_best:
        copy_checkpoint(best, run_dir / names[-1])
    path = write_checkpoint_dir(run_dir / target, files)
    if reason in (SaveReason.STEP, SaveReason.EPOCH):      # epoch_N are kept; step_N rotate
        copy_checkpoint(path, run_dir / "last")
    if reason == SaveReason.STEP:
        removed = rotate_steps(run_dir, keep_last, protect=protect)
    elif reason == SaveReason.BEST:
        removed = rotate_best(run_dir, keep_best, protect=protect)
    if removed:
        _update_record(run_dir, remove=[p.name for p in removed])
    return path


def _update_record(run_dir: Path, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
    """Keep the run's record of the checkpoint folders llmtui wrote (the only ones
    it will ever delete) in step with the disk: added before anything is deleted."""
    names = (rundir.recorded_checkpoints(run_dir) | set(add)) - set(remove)
    try:
        rundir.record_checkpoints(run_dir, names)
    except OSError as exc:
        raise CheckpointError(f"{run_dir / rundir.MARKER}: cannot write "
                              f"({exc.strerror or exc})") from None
