"""What the screens share: the config being edited and what is known about its data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.engine.config.document import ConfigDocument


@dataclass
class Session:
    doc: ConfigDocument | None = None
    vocab_size: int | None = None          # known once the data is prepared
    data_summary: dict[str, Any] = field(default_factory=dict)
    data_key: tuple | None = None          # the data settings the summary belongs to

    def data_settings(self) -> tuple:
        doc = self.doc
        keys = ("data.source", "data.sources", "data.val_source", "data.val_fraction",
                "data.prepared_dir", "data.bin_dtype", "tokenizer.kind", "tokenizer.encoding")
        return tuple(repr(doc.get(k)) for k in keys) if doc else ()

    def data_is_current(self) -> bool:
        return self.data_key is not None and self.data_key == self.data_settings()


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Run directories under `runs_dir` that hold checkpoints, newest first.

    Cheap: reads directory listings and each checkpoint's small state.json;
    hashes are verified only when a run is resumed."""
    from llmtui.engine.training import checkpoint as ckpt

    runs = []
    if not runs_dir.is_dir():
        return runs
    for run_dir in runs_dir.iterdir():
        if not run_dir.is_dir() or not (run_dir / "config.toml").is_file():
            continue
        found = ckpt.candidates(run_dir)
        if not found:
            continue
        step = max(ckpt.checkpoint_step(p) for p in found)
        try:
            mtime = max(p.stat().st_mtime for p in found)
        except OSError:
            mtime = 0.0
        runs.append({"name": run_dir.name, "path": run_dir, "step": step, "mtime": mtime,
                     "checkpoints": [p.name for p in found]})
    runs.sort(key=lambda r: (-r["mtime"], r["name"]))
    return runs
