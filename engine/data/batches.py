"""Training and evaluation batches drawn from memory-mapped token arrays."""

from __future__ import annotations

import math

import numpy as np

from llmtui.engine.errors import DataError


def require_tokens(n: int, block_size: int, split: str) -> None:
    """DataError unless a split of n tokens holds at least one window of block_size + 1."""
    if n >= block_size + 1:
        return
    if split == "val":
        fix = "lower model.block_size or raise data.val_fraction (or give a larger data.val_source)"
    else:
        fix = "lower model.block_size or use a larger corpus (data.source)"
    raise DataError(f"{split} split has {n} tokens; model.block_size = {block_size} needs at "
                    f"least {block_size + 1}: {fix}")


def _gather(tokens: np.ndarray, offsets: np.ndarray, block_size: int):
    import torch

    # Fancy indexing a memmap reads just these windows, never the whole file.
    windows = np.asarray(tokens[offsets[:, None] + np.arange(block_size + 1)]).astype(np.int64)
    x = torch.from_numpy(np.ascontiguousarray(windows[:, :-1]))
    y = torch.from_numpy(np.ascontiguousarray(windows[:, 1:]))
    return x, y


class BatchSampler:
    """Random contiguous windows (x, y = x shifted by one), like nanoGPT's
    get_batch, drawn from a private PCG64 generator so that torch's RNG use
    elsewhere never changes the data order, and resume can restore it."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 split: str = "train"):
        require_tokens(len(tokens), block_size, split)
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.seed, self.split = seed, split
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.batches_drawn = 0

    def next_batch(self):
        """(x, y): int64 CPU tensors of shape (batch_size, block_size)."""
        offsets = self.rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        self.batches_drawn += 1
        return _gather(self.tokens, offsets, self.block_size)

    __next__ = next_batch

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        state = self.rng.bit_generator.state
        # 128-bit integers as strings: safe in any JSON reader.
        return {"bit_generator": state["bit_generator"],
                "state": str(state["state"]["state"]), "inc": str(state["state"]["inc"]),
                "has_uint32": state["has_uint32"], "uinteger": state["uinteger"],
                "batches_drawn": self.batches_drawn, "seed": self.seed,
                "n_tokens": len(self.tokens), "block_size": self.block_size,
                "batch_size": self.batch_size}

    def load_state_dict(self, d: dict) -> None:
        if d.get("bit_generator") != "PCG64":
            raise DataError("batch sampler state: not a PCG64 generator state")
        if d.get("n_tokens", len(self.tokens)) != len(self.tokens):
            raise DataError(f"batch sampler state is for a {self.split} split of {d['n_tokens']} "
                            f"tokens but this one has {len(self.tokens)}: the data changed")
        self.rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": int(d["state"]), "inc": int(d["inc"])},
            "has_uint32": int(d["has_uint32"]), "uinteger": int(d["uinteger"])}
        self.batches_drawn = int(d.get("batches_drawn", 0))


class EpochSampler:
    """Passes over the data (training.sampling = "shuffle", and real epochs with
    training.epochs): the training tokens cut into windows of block_size (+1 for the
    target), every window visited once per pass in an order shuffled anew each pass, the
    cuts moved by a random offset each pass so that no token always starts a window (a
    PCG64 stream seeded by the seed and the pass, so a resume continues exactly). Under
    torchrun each rank takes its own share of each pass's order. A batch that runs past the
    end of a pass continues into the next.

    Against random windows drawn with repeats (BatchSampler), a run of a few passes sees
    every token as often as any other: -0.014 val loss at the end of the cpu preset on
    tinyshakespeare (1.8 passes, 5 seeds), -0.03 to -0.05 on the embedded corpus (4.4
    passes; bench/RESULTS.md)."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, offsets: bool = True):
        require_tokens(len(tokens), block_size, "train")
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.index, self.batches_drawn = 0, 0, 0
        self._set_layout(offsets)

    def _set_layout(self, offsets: bool) -> None:
        """offsets=False: the fixed cuts of states saved before the offsets existed."""
        self.offsets = offsets
        self.n_windows = (window_count(len(self.tokens), self.block_size) if offsets
                          else max(1, (len(self.tokens) - 1) // self.block_size))
        self._start, self._order = self._epoch_order(self.epoch)

    def _epoch_order(self, epoch: int) -> tuple[int, np.ndarray]:
        """(the pass's first token, this rank's window order) for pass `epoch`."""
        rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
        # rng.permutation's order, in 4 bytes a window instead of 8 (a 9B-token corpus in
        # windows of 1,024: 35 MB, not 70)
        order = np.arange(self.n_windows, dtype=np.int32 if self.n_windows < 2**31 else np.int64)
        rng.shuffle(order)
        start = 0
        if self.offsets:
            slack = len(self.tokens) - 1 - self.n_windows * self.block_size
            start = int(rng.integers(0, min(self.block_size - 1, slack) + 1))
        share = order[self.rank::self.world_size]
        return start, (share if len(share) else order[:1])

    @property
    def windows_per_epoch(self) -> int:
        """This rank's windows in one epoch."""
        return len(self._order)

    @property
    def epochs_done(self) -> float:
        """Epochs completed, with the fraction of the current one."""
        return self.epoch + self.index / len(self._order)

    def next_batch(self):
        picked: list[np.ndarray] = []   # window starts, batch_size windows in all
        count = 0
        while count < self.batch_size:
            if self.index >= len(self._order):
                self.epoch += 1
                self.index = 0
                self._start, self._order = self._epoch_order(self.epoch)
            take = self._order[self.index:self.index + self.batch_size - count]
            picked.append(take.astype(np.int64) * self.block_size + self._start)
            count += len(take)
            self.index += len(take)
        self.batches_drawn += 1
        return _gather(self.tokens, np.concatenate(picked), self.block_size)

    __next__ = next_batch

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"kind": "epochs", "offsets": self.offsets, "epoch": self.epoch, "index": self.index,
                "batches_drawn": self.batches_drawn, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "n_tokens": len(self.tokens),
                "block_size": self.block_size, "batch_size": self.batch_size}

    def load_state_dict(self, d: dict) -> None:
        if d.get("kind") != "epochs":
            raise DataError("batch sampler state: saved by a run that drew random windows "
                            "(training.sampling = \"random\"), which cannot count the passes "
                            "training.epochs needs; resume with the config the run was trained with")
        if bool(d.get("offsets", False)) != self.offsets:
            self._set_layout(bool(d.get("offsets", False)))
        if d.get("n_tokens") != len(self.tokens) or d.get("block_size") != self.block_size:
            raise DataError(f"batch sampler state is for {d.get('n_tokens')} tokens in windows of "
                            f"{d.get('block_size')}, this run has {len(self.tokens)} in windows of "
                            f"{self.block_size}: the data or model.block_size changed")
        self.epoch = int(d["epoch"])
        self._start, self._order = self._epoch_order(self.epoch)
        self.index = min(int(d["index"]), len(self._order))
        self.batches_drawn = int(d["batches_drawn"])


def eval_offsets(n_tokens: int, block_size: int, batch_size: int, max_batches: int) -> list[np.ndarray]:
    """Window starts for validation, evenly spread and the same at every eval
    (no RNG), so successive val losses are comparable. All batches are full
    unless the split holds fewer than batch_size windows."""
    require_tokens(n_tokens, block_size, "val")
    last = n_tokens - block_size - 1
    count = min(batch_size * max_batches, last + 1)
    if count >= batch_size:
        count -= count % batch_size
    # Spacing >= 1, so truncation keeps the starts distinct.
    starts = np.linspace(0, last, count).astype(np.int64)
    return [starts[i:i + batch_size] for i in range(0, count, batch_size)]


def iter_eval_batches(tokens: np.ndarray, offsets: list[np.ndarray], block_size: int):
    """(x, y) for each batch of eval_offsets."""
    for batch in offsets:
        yield _gather(tokens, batch, block_size)


def window_count(n_tokens: int, block_size: int) -> int:
    """Windows of block_size (+1 for the target) in one pass over n_tokens that starts at an
    offset of up to block_size - 1 tokens: one fewer than fit from the first token."""
    return max(1, (n_tokens - block_size) // block_size)


def epoch_steps(n_train_tokens: int, cfg, world_size: int = 1) -> int:
    """Optimizer steps for one pass over the training tokens (every window of block_size once)."""
    t = cfg.training
    windows = window_count(n_train_tokens, cfg.model.block_size)
    return max(1, math.ceil(windows / (t.batch_size * t.grad_accum_steps * world_size)))
