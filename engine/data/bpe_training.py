"""Train a byte-level BPE on the user's corpus, or load a tokenizer.json.

Training is Hugging Face `tokenizers`' BpeTrainer (a Rust core made for this),
on GPT-2's byte-level pre-tokenization: every byte has a token, so no text is
ever unknown, and the result is a standard tokenizer.json that transformers'
AutoTokenizer loads as it is.

The corpus streams through `train_from_iterator` in small pieces: the trainer
keeps only the count of each distinct word, so memory follows the vocabulary
of the text, not its size. Small pieces also keep a stop request prompt: the
library pulls 256 pieces at a time and counts them before asking for more, and
the caller's progress callback (which raises to stop) runs between pulls.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from llmtui.engine.data.bpe_workers import split_text
from llmtui.engine.data.tokenizers import TrainedTokenizer
from llmtui.engine.errors import DataError

# text per piece handed to the trainer: 256 pieces (its buffer) take well under a
# second to count on one core, so a stop request waits less than that
PIECE_CHARS = 2048


def new_byte_level_bpe():
    """An untrained byte-level BPE with GPT-2's pre-tokenization and decoder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE())
    # GPT-2's split pattern, no space added in front: the text's own bytes, exactly
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str]) -> TrainedTokenizer:
    """A byte-level BPE of at most `vocab_size` tokens (the special tokens first, then
    the 256 bytes, then the merges, most frequent first) trained on `texts`. A small
    corpus may run out of pairs to merge before reaching vocab_size."""
    from tokenizers import trainers
    from tokenizers.pre_tokenizers import ByteLevel

    tok = new_byte_level_bpe()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_pieces(texts), trainer)
    return TrainedTokenizer(json.loads(tok.to_str()), special_tokens)


def _pieces(texts: Iterable[str]) -> Iterator[str]:
    """Each text in pieces of about PIECE_CHARS, cut where GPT-2's pattern splits anyway."""
    for text in texts:
        yield from split_text(text, PIECE_CHARS)


def load_tokenizer_file(path: str | Path, special_tokens: Sequence[str], kind: str = "trained"):
    """The tokenizer at `path` (tokenizer.path) for tokenizer.kind = `kind`: a tokenizer.json
    in Hugging Face format, or the tokenizer.json of an llmtui checkpoint (a trained BPE, or a
    char vocabulary: the one that run used). A trained one must hold every one of
    `special_tokens` (tokenizer.special_tokens)."""
    from llmtui.engine.data.tokenizers import tokenizer_from_json

    path = Path(path).expanduser()
    shown = f'tokenizer.path = "{path}"'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{shown}: no such file; give a tokenizer.json (Hugging Face format, or an "
                        'llmtui checkpoint\'s) or set it to "" to make one from the corpus') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{shown}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    except ValueError as exc:
        raise DataError(f"{shown}: not valid JSON ({exc}); expected a tokenizer.json") from None
    if isinstance(data, dict) and "model" not in data and "kind" in data:   # an llmtui checkpoint's
        try:
            own = tokenizer_from_json(data)
        except DataError as exc:
            raise DataError(f"{shown}: {exc.detail}") from None
        if own.kind != kind:
            raise DataError(f'{shown}: holds a {own.kind} tokenizer, not the tokenizer.kind = "{kind}" '
                            f'of this config; set tokenizer.kind = "{own.kind}"')
        if kind == "char" or not isinstance(own, TrainedTokenizer):
            return own
        data = own.hf_json
    elif kind == "char":
        raise DataError(f'{shown}: tokenizer.kind = "char" reads the tokenizer.json of an llmtui '
                        "checkpoint (its character vocabulary), not a Hugging Face one; set "
                        'tokenizer.kind = "trained" for that')
    if not isinstance(data, dict) or "model" not in data:
        raise DataError(f'{shown}: not a tokenizer.json (Hugging Face format: an object with "model")')
    try:
        tokenizer = TrainedTokenizer(data)
    except DataError as exc:
        raise DataError(f"{shown}: {exc.detail}") from None
    vocab = tokenizer.vocabulary()
    missing = [t for t in special_tokens if t not in vocab]
    if missing:
        specials = [t["content"] for t in data.get("added_tokens") or []
                    if isinstance(t, dict) and t.get("special") and isinstance(t.get("content"), str)]
        has = f"it has {', '.join(json.dumps(t) for t in specials[:5])}" if specials else "it has none"
        raise DataError(f"tokenizer.special_tokens: {json.dumps(missing[0])} is not in the vocabulary "
                        f"of {shown} ({has}); list that file's own special tokens, or []")
    return TrainedTokenizer(data, special_tokens)


def tokenizer_file_vocab_size(path: str | Path) -> int | None:
    """The vocabulary size of a tokenizer.json, for estimates (None when it cannot be read).
    Cached by the file's size and modification time: forms ask on every keystroke."""
    try:
        st = os.stat(Path(path).expanduser())
    except OSError:
        return None
    return _vocab_size_of(str(Path(path).expanduser().resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _vocab_size_of(path: str, size: int, mtime_ns: int) -> int | None:
    from llmtui.engine.data.tokenizers import tokenizer_from_json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "model" not in data and "kind" in data:   # an llmtui checkpoint's
            return tokenizer_from_json(data).vocab_size
        return TrainedTokenizer(data).vocab_size
    except (OSError, ValueError, DataError):
        return None
