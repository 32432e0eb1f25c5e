"""The optimizer state of a training.parallel = "fsdp" checkpoint, sharded: one
safetensors file per process and a JSON index.

  optim-rank00000-of-00004.safetensors   rank 0's rows of every sharded state tensor,
  ...                                    by the names state.safetensors gives whole ones
  optim-rank00003-of-00004.safetensors   ("optimizer.<parameter index>.<key>")
  optim-index.json                       what the files hold:

    {"format": "llmtui-optimizer-shards", "version": 1, "world_size": 4,
     "files": ["optim-rank00000-of-00004.safetensors", ...],        one per rank, in rank order
     "tensors": {"optimizer.0.exp_avg": {"shape": [65, 128], "dtype": "float32",
                                         "rows": [[0, 17], [17, 34], [34, 51], [51, 65]]}, ...}}

FSDP2 shards every parameter, and so every moment, along dim 0 as torch.chunk does
(ceil(n / world) rows each, the last ranks fewer or none): "rows" says which rows of
the whole tensor each file holds. The step counts, the same on every rank, are whole
in state.safetensors. A resume on the same number of processes reads each rank's own
file; on another number each rank reads its rows as slices of the files that hold
them (`ShardReader.rows`), so no process ever holds the whole state; one process
without torchrun reads the whole of each tensor. Nothing is unpickled.

No torch.distributed here (engine.training.sharded makes and loads the DTensors), and
torch only once tensors are read: verifying a checkpoint (run listings) does not load it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmtui.engine.errors import CheckpointError

if TYPE_CHECKING:
    import torch

INDEX = "optim-index.json"
FORMAT = "llmtui-optimizer-shards"
VERSION = 1
MAX_WORLD_SIZE = 65536
_FILE = re.compile(r"^optim-rank(\d{5})-of-(\d{5})\.safetensors$")
_NAME = re.compile(r"^optimizer\.(\d{1,9})\.([A-Za-z_][A-Za-z0-9_]{0,63})$")
# torch dtype names <-> safetensors' dtype codes (what get_slice reports)
DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
MAX_DIM = 2**40


def shard_file(rank: int, world: int) -> str:
    return f"optim-rank{rank:05d}-of-{world:05d}.safetensors"


def chunk_rows(n: int, world: int, rank: int) -> tuple[int, int]:
    """The rows [start, stop) of a dim of `n` that torch.chunk(world) gives `rank`."""
    size = -(-n // world)
    start = min(rank * size, n)
    return start, min(start + size, n)


def dtype_name(dtype: "torch.dtype") -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Entry:
    shape: tuple[int, ...]
    dtype: str
    rows: tuple[tuple[int, int], ...]   # one (start, stop) per file


@dataclass(frozen=True)
class ShardIndex:
    world_size: int
    files: tuple[str, ...]
    tensors: dict[str, Entry]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "world_size": self.world_size,
                "files": list(self.files),
                "tensors": {name: {"shape": list(e.shape), "dtype": e.dtype, "rows": [list(r) for r in e.rows]}
                            for name, e in self.tensors.items()}}


def build_index(world: int, tensors: dict[str, tuple[tuple[int, ...], "torch.dtype"]]) -> ShardIndex:
    """The index of `world` files that hold each tensor (its whole shape and dtype) split by rows."""
    return ShardIndex(world, tuple(shard_file(r, world) for r in range(world)),
                      {name: Entry(tuple(shape), dtype_name(dtype),
                                   tuple(chunk_rows(shape[0], world, r) for r in range(world)))
                       for name, (shape, dtype) in tensors.items()})


def read_index(d: Any, source: str) -> ShardIndex:
    """optim-index.json parsed, every value checked (a crafted file is a one-line CheckpointError)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{source}: {what}; the sharded optimizer state is damaged")
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise bad(f"not an index of llmtui's sharded optimizer state (\"format\" must be \"{FORMAT}\")")
    if d.get("version") != VERSION:
        raise CheckpointError(f"{source}: \"version\" = {d.get('version')!r} is not supported (this llmtui "
                              f"reads version {VERSION})")
    if set(d) != {"format", "version", "world_size", "files", "tensors"}:
        raise bad("unknown or missing keys")
    world = d["world_size"]
    if isinstance(world, bool) or not isinstance(world, int) or not 1 <= world <= MAX_WORLD_SIZE:
        raise bad(f"\"world_size\" = {world!r} is not a number of processes")
    files = d["files"]
    if files != [shard_file(r, world) for r in range(world)]:
        raise bad(f"\"files\" must name {shard_file(0, world)} ... one file per rank, in rank order")
    tensors = d["tensors"]
    if not isinstance(tensors, dict):
        raise bad("\"tensors\" must be a JSON object")
    entries = {}
    for name, e in tensors.items():
        if not _NAME.match(name):
            raise bad(f"tensor name {name[:60]!r} is not optimizer.<index>.<key>")
        if not isinstance(e, dict) or set(e) != {"shape", "dtype", "rows"}:
            raise bad(f"\"tensors.{name}\" must hold \"shape\", \"dtype\" and \"rows\"")
        shape, dtype, rows = e["shape"], e["dtype"], e["rows"]
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 8
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < MAX_DIM for s in shape)):
            raise bad(f"\"tensors.{name}.shape\" must be a list of 1 to 8 sizes")
        if dtype not in DTYPES:
            raise bad(f"\"tensors.{name}.dtype\" = {str(dtype)[:40]!r} is not one of {', '.join(DTYPES)}")
        if (not isinstance(rows, list) or len(rows) != world
                or not all(isinstance(r, list) and len(r) == 2
                           and all(isinstance(x, int) and not isinstance(x, bool) for x in r) for r in rows)):
            raise bad(f"\"tensors.{name}.rows\" must be {world} pairs [start, stop]")
        edge = 0
        for start, stop in rows:
            if start != edge or stop < start:
                raise bad(f"\"tensors.{name}.rows\" must split rows 0 to {shape[0]} in order, without gaps")
            edge = stop
        if edge != shape[0]:
            raise bad(f"\"tensors.{name}.rows\" end at row {edge}, the tensor has {shape[0]}")
        entries[name] = Entry(tuple(shape), dtype, tuple((a, b) for a, b in rows))
    return ShardIndex(world, tuple(files), entries)


class ShardReader:
    """Rows of the sharded tensors of one checkpoint directory, read as slices of the files
    that hold them (a file is opened when first needed). Use it in a `with` block."""

    def __init__(self, directory: Path, index: ShardIndex) -> None:
        self.directory, self.index = directory, index
        self._stack = contextlib.ExitStack()
        self._open: dict[int, Any] = {}

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _file(self, rank: int):
        if rank not in self._open:
            from safetensors import SafetensorError, safe_open
            path = self.directory / self.index.files[rank]
            try:
                self._open[rank] = self._stack.enter_context(safe_open(str(path), "pt"))
            except (SafetensorError, OSError, ValueError) as exc:
                raise CheckpointError(f"{path}: not a valid safetensors file ({exc}); llmtui never "
                                      "loads pickled state") from None
        return self._open[rank]

    def rows(self, name: str, start: int, stop: int) -> "torch.Tensor":
        """Rows [start, stop) of the whole tensor `name`, from the files that hold them."""
        import torch
        from safetensors import SafetensorError
        entry = self.index.tensors[name]
        rest = entry.shape[1:]
        if not 0 <= start <= stop <= entry.shape[0]:
            raise CheckpointError(f"{self.directory / INDEX}: rows {start}:{stop} of {name} are outside "
                                  f"its {entry.shape[0]} rows")
        parts = []
        for rank, (first, end) in enumerate(entry.rows):
            a, b = max(start, first), min(stop, end)
            if a >= b:
                continue
            path = self.directory / self.index.files[rank]
            try:
                piece = self._file(rank).get_slice(name)
                shape, dtype = list(piece.get_shape()), piece.get_dtype()
                if shape != [end - first, *rest] or dtype != DTYPES[entry.dtype]:
                    raise CheckpointError(f"{path}: {name} is {tuple(shape)} {dtype}, the index says rows "
                                          f"{first}:{end} of {entry.shape} {entry.dtype}")
                parts.append(piece[a - first:b - first])
            except SafetensorError as exc:
                raise CheckpointError(f"{path}: cannot read {name} ({exc})") from None
        dtype = getattr(torch, entry.dtype)
        out = torch.cat(parts) if parts else torch.empty((0, *rest), dtype=dtype)
        if out.is_floating_point() and not bool(torch.isfinite(out).all()):
            raise CheckpointError(f"{self.directory}: optimizer state {name} holds NaN or infinite values; "
                                  "the checkpoint is damaged")
        return out

    def whole(self) -> dict[str, "torch.Tensor"]:
        """Every sharded tensor whole (for one process that is not sharded)."""
        return {name: self.rows(name, 0, e.shape[0]) for name, e in self.index.tensors.items()}
