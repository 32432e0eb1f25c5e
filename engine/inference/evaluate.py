"""`llmtui eval`: how well a checkpoint predicts a text or token file.

The file streams through the model in windows of block_size tokens that
overlap by one, so every token but the first is predicted exactly once, with
the tokens before it in its window as context (nanoGPT's evaluation, on the
whole file rather than sampled batches). Reported:

  loss            mean cross-entropy per predicted token, nats
  perplexity      exp(loss)
  accuracy        share of tokens that were the model's most likely one
  bits_per_byte   total nats / ln 2 / UTF-8 bytes of the predicted tokens:
                  comparable across tokenizers, unlike loss per token

A record file (.jsonl/.json/.csv/.parquet, engine.data.records) is read as
training reads it: each record's text field (the run's data.text_field unless
`text_field` is given) is one document, and documents are joined as the
prepared data joins them (the end-of-text token between them, or a newline for
a tokenizer without one). JSON syntax is never scored.

Characters a char vocabulary lacks cannot be encoded: they are skipped and
counted (a warning names how many), or refused with `strict`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from llmtui.engine.data import records
from llmtui.engine.data.prepare import RECORD_SEPARATOR, TOKEN_SUFFIXES, text_chunks
from llmtui.engine.data.tokenizers import CharTokenizer
from llmtui.engine.errors import DataError
from llmtui.engine.training.loader import LoadedModel, load_checkpoint_model

Progress = Callable[[int, int], None]      # (done, total) in bytes (text) or tokens (token files)
TOKENS_PER_BATCH = 8192                     # predicted tokens per forward pass, at most
# the file is read in pieces of this many bytes (text) or tokens (token files), and progress
# is reported after each: small enough that a file of a few MB moves the bar (read in 1 MB
# pieces, tinyshakespeare showed 94% for the 20 s its first piece took to score)
READ_PIECE = 64 << 10
LOGITS_BYTES = 256 << 20                    # and fp32 logits of at most this size


@dataclass
class EvalResult:
    checkpoint: str
    data: str
    tokens: int                 # tokens predicted (the first one of the file has no prediction)
    bytes: int                  # UTF-8 bytes those tokens stand for
    loss: float
    perplexity: float
    accuracy: float
    bits_per_byte: float | None      # None: no text behind the ids (a model of bare token ids)
    skipped_characters: int = 0           # characters the char vocabulary does not hold
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def evaluate(checkpoint: str | Path, data: str | Path, *, max_tokens: int | None = None,
             strict: bool = False, device: str = "auto", progress: Progress | None = None,
             force: bool = False, text_field: str | None = None) -> EvalResult:
    """Evaluate `checkpoint` (a checkpoint or run directory) on `data`: a text file, a record
    file (its records' `text_field`, by default the run's data.text_field), or a .bin/.npy
    token file in the checkpoint's vocabulary; the first `max_tokens` tokens only when given.
    `warnings` of the result say which damaged checkpoints were skipped, a device that was
    not available and characters skipped."""
    path = Path(data).expanduser()
    if not path.is_file():
        raise DataError(f"--data {path}: " + ("a folder; give one text or token file" if path.is_dir()
                                              else "not a regular file" if path.exists() else "no such file"))
    if max_tokens is not None and max_tokens < 2:
        raise DataError(f"--max-tokens {max_tokens}: at least 2 tokens are needed (one to predict)")
    loaded = load_checkpoint_model(Path(checkpoint).expanduser(), device, force=force)
    fmt = records.file_format(path)
    source: _TokenFile | _RecordFile | _TextFile
    if path.suffix.lower() in TOKEN_SUFFIXES:
        source = _TokenFile(path, loaded)
    elif fmt is not None:
        source = _RecordFile(path, loaded, strict, fmt, text_field or loaded.config.data.text_field)
    else:
        source = _TextFile(path, loaded, strict)
    scores = _score(loaded, source.tokens(max_tokens, progress))
    warnings = list(loaded.warnings)
    if source.skipped:
        warnings.append(f"{path}: skipped {source.skipped:,} character(s) the char vocabulary of "
                        f"{loaded.tokenizer.vocab_size} does not hold (first {source.first_skipped}); "
                        "--strict refuses such files")
    if scores.count == 0:
        raise DataError(f"--data {path}: holds fewer than 2 tokens; nothing to evaluate")
    loss = scores.nats / scores.count
    return EvalResult(
        checkpoint=str(loaded.path), data=str(path), tokens=scores.count, bytes=scores.bytes,
        loss=loss, perplexity=math.exp(min(loss, 700.0)), accuracy=scores.correct / scores.count,
        bits_per_byte=scores.nats / math.log(2) / scores.bytes if scores.bytes else None,
        skipped_characters=source.skipped, warnings=warnings)


# ---------------------------------------------------------------------------
# tokens from the file, streamed in chunks

class _TextFile:
    def __init__(self, path: Path, loaded: LoadedModel, strict: bool):
        self.path, self.tokenizer = path, loaded.tokenizer
        self.skipped, self.first_skipped = 0, ""
        if strict and isinstance(self.tokenizer, CharTokenizer):
            self._refuse_unknown(self.tokenizer)

    def _refuse_unknown(self, tokenizer: CharTokenizer) -> None:
        """--strict: a first pass counts the characters the vocabulary lacks."""
        count, first = 0, None
        for text in self._pieces(None):
            if text is None:
                continue
            ids = tokenizer.encode_array(text, strict=False)
            if len(ids) < len(text):
                count += len(text) - len(ids)
                first = first or next(c for c in text if c not in tokenizer)
        if count:
            raise DataError(f"{self.path}: {count:,} character(s) are not in the char vocabulary of "
                            f"{tokenizer.vocab_size} (first {_show(first)}); without --strict "
                            "they are skipped")

    def tokens(self, limit: int | None, progress: Progress | None) -> Iterator[np.ndarray]:
        total, done, left = self.path.stat().st_size, 0, limit

        def read(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(min(done, total), total)

        for text in self._pieces(read):
            ids = self._encode(text)
            if left is not None:
                ids, left = ids[:left], left - min(left, len(ids))
            yield ids
            if left == 0:
                break
        if progress:
            progress(total, total)

    def _pieces(self, on_read: Callable[[int], None] | None) -> Iterator[str | None]:
        """The text, in pieces; None stands for the end-of-text token (between records)."""
        return text_chunks(self.path, on_read, block=READ_PIECE)

    def _encode(self, text: str | None) -> np.ndarray:
        tok = self.tokenizer
        if text is None:             # between two records: the end-of-text token
            return np.array([tok.eot_token], dtype=np.int64)
        if isinstance(tok, CharTokenizer):
            ids = tok.encode_array(text, strict=False)
            missing = len(text) - len(ids)
            if missing:
                if not self.first_skipped:
                    self.first_skipped = _show(next(c for c in text if c not in tok))
                self.skipped += missing
            return ids.astype(np.int64)
        return np.array(tok.encode(text), dtype=np.int64)


class _RecordFile(_TextFile):
    """A record file's documents, joined as engine.data.prepare joins them for training:
    the end-of-text token between two documents (None among the pieces), or
    RECORD_SEPARATOR for a tokenizer without one."""

    def __init__(self, path: Path, loaded: LoadedModel, strict: bool, fmt: str, field_name: str):
        self.fmt, self.field = fmt, field_name
        super().__init__(path, loaded, strict)

    def _pieces(self, on_read: Callable[[int], None] | None) -> Iterator[str | None]:
        separator = RECORD_SEPARATOR if self.tokenizer.eot_token is None else None
        first = True
        for text in records.file_texts(self.path, self.fmt, self.field, on_read or (lambda n: None)):
            if not first:
                if separator is None:
                    yield None
                else:
                    text = separator + text
            first = False
            yield text


class _TokenFile:
    skipped, first_skipped = 0, ""

    def __init__(self, path: Path, loaded: LoadedModel):
        self.path, self.vocab = path, loaded.model.config.vocab_size
        if path.suffix.lower() == ".npy":
            try:
                self.array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"--data {path}: not a readable .npy array ({exc})") from None
            if self.array.ndim != 1 or self.array.dtype.kind not in "iu":
                raise DataError(f"--data {path}: must hold a 1-D integer array of token ids")
        else:
            dtype = _bin_dtype(path, self.vocab)
            if path.stat().st_size % dtype.itemsize:
                raise DataError(f"--data {path}: its size is not a whole number of {dtype.name} tokens")
            self.array = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)

    def tokens(self, limit: int | None, progress: Progress | None) -> Iterator[np.ndarray]:
        n = len(self.array) if limit is None else min(limit, len(self.array))
        step = READ_PIECE
        for start in range(0, n, step):
            ids = np.asarray(self.array[start:min(n, start + step)], dtype=np.int64)
            if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab):
                bad = int(ids.max() if ids.max() >= self.vocab else ids.min())
                raise DataError(f"--data {self.path}: token id {bad} is outside the checkpoint's "
                                f"vocabulary of {self.vocab}; was it made with another tokenizer?")
            yield ids
            if progress:
                progress(min(n, start + step), n)


def _bin_dtype(path: Path, vocab: int) -> np.dtype:
    """A raw .bin's dtype: meta.json beside it says so (llmtui's and nanoGPT's layout), else
    uint16 when the vocabulary fits, as llmtui writes them."""
    meta = path.with_name("meta.json")
    try:
        named = json.loads(meta.read_text(encoding="utf-8")).get("dtype") if meta.is_file() else None
        return np.dtype(named or (np.uint16 if vocab <= 65536 else np.uint32))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{meta}: cannot read the token dtype from it ({exc})") from None


def _show(c: str | None) -> str:
    return f"{c!r} (U+{ord(c):04X})" if c else "?"


# ---------------------------------------------------------------------------
# scoring

@dataclass
class _Scores:
    nats: float = 0.0
    correct: int = 0
    count: int = 0
    bytes: int = 0


@torch.no_grad()
def _score(loaded: LoadedModel, chunks: Iterator[np.ndarray]) -> _Scores:
    model, device, T = loaded.model, loaded.device, loaded.model.config.block_size
    token_bytes = torch.as_tensor(_byte_table(loaded))
    V = model.config.vocab_size
    per_batch = max(1, min(TOKENS_PER_BATCH, LOGITS_BYTES // (4 * V)) // T)
    scores, pending, batch = _Scores(), np.zeros(0, dtype=np.int64), []

    def run(rows: np.ndarray) -> None:
        t = torch.as_tensor(rows, dtype=torch.long)
        x, y = t[:, :-1].contiguous().to(device), t[:, 1:].contiguous()
        logits, _ = model(x, y.to(device))    # with targets: logits at every position
        logits = logits.float().cpu()
        scores.nats += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                       reduction="sum").item()
        scores.correct += int((logits.argmax(-1) == y).sum())
        scores.count += y.numel()
        scores.bytes += int(token_bytes[y.clamp(max=len(token_bytes) - 1)].sum())

    for ids in chunks:
        pending = np.concatenate((pending, ids))
        while len(pending) >= T + 1:           # windows of T predictions, overlapping by one token
            batch.append(pending[:T + 1])
            pending = pending[T:]
            if len(batch) == per_batch:
                run(np.stack(batch))
                batch = []
    if batch:
        run(np.stack(batch))
    if len(pending) >= 2:                      # the shorter last window
        run(pending[None, :])
    return scores


def _byte_table(loaded: LoadedModel) -> np.ndarray:
    """UTF-8 bytes of each id of the model's (maybe padded) vocabulary; padding ids count 0."""
    table = loaded.tokenizer.token_bytes()
    out = np.zeros(max(loaded.model.config.vocab_size, len(table)), dtype=np.int64)
    out[:len(table)] = table
    return out
