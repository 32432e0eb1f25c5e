"""Run directories, as front ends see them: where a config's run lives, which
runs a folder holds, and their newest checkpoints.

The app and the CLI use these instead of reading checkpoint files themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmtui.engine.config.schema import Config
from llmtui.engine.training import checkpoint as ckpt


def run_dir_of(cfg: Config) -> Path:
    """`<run.out_dir>/<run.name>`: where a run of this config keeps its files."""
    return Path(cfg.run.out_dir) / cfg.run.name


@dataclass
class RunInfo:
    name: str
    path: Path
    step: int                      # step of the newest checkpoint (not verified)
    modified: float                # Unix time of the newest checkpoint
    checkpoints: list[str] = field(default_factory=list)   # names, newest first


def newest_checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's newest checkpoint, None when it has none (cheap:
    reads state.json files, verifies no hashes)."""
    found = ckpt.candidates(run_dir)
    return max(ckpt.checkpoint_step(p) for p in found) if found else None


def newest_intact_checkpoint(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose files verify, and a note for each damaged one skipped."""
    return ckpt.latest_intact(run_dir)


def list_runs(folder: Path) -> list[RunInfo]:
    """Runs under `folder` that hold a config and checkpoints, newest first."""
    runs = []
    if not folder.is_dir():
        return runs
    for run_dir in folder.iterdir():
        if not run_dir.is_dir() or not (run_dir / "config.toml").is_file():
            continue
        found = ckpt.candidates(run_dir)
        if not found:
            continue
        try:
            modified = max(p.stat().st_mtime for p in found)
        except OSError:
            modified = 0.0
        runs.append(RunInfo(name=run_dir.name, path=run_dir,
                            step=max(ckpt.checkpoint_step(p) for p in found),
                            modified=modified, checkpoints=[p.name for p in found]))
    runs.sort(key=lambda r: (-r.modified, r.name))
    return runs
