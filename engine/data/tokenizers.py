"""Tokenizers: characters, a tiktoken BPE encoding, a trained byte-level BPE, or bare token ids.

All kinds share one small interface (encode, decode, vocab_size, kind,
eot_token, fingerprint, to_json, token_bytes) so the data pipeline, the
trainer and the sampler never care which one they hold. A tokenizer is saved
as plain JSON (never a pickle), so checkpoints and prepared datasets can be
loaded without running code. Training a BPE is engine.data.bpe_training's job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Iterable, Sequence

import numpy as np

from llmtui.engine.errors import DataError

_MAX_CODEPOINT = 0x10FFFF
REPLACEMENT = "\ufffd"  # what decode shows for an id the vocabulary does not have


def _sha256_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class CharTokenizer:
    """One token per character; ids index the sorted unique characters."""

    kind = "char"
    eot_token = None  # no end-of-text token: documents are simply concatenated

    def __init__(self, chars: Iterable[str], *, keep_order: bool = False):
        # keep_order is for vocabularies read back from JSON: the ids in a token
        # file depend on that exact order, so it must not be re-sorted.
        chars = list(chars) if keep_order else sorted(set(chars))
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise DataError(f"char vocabulary: entry {c!r} is not a single character")
        if len(set(chars)) != len(chars):
            raise DataError("char vocabulary: characters must be unique")
        if not chars:
            raise DataError("char vocabulary is empty: the corpus has no characters")
        self.chars: list[str] = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __contains__(self, c: str) -> bool:
        return c in self._index

    @functools.cached_property
    def _lookup(self) -> np.ndarray:
        # Dense code point -> id table (at most 4.4 MB); the last slot stands
        # for every code point above the largest known one and maps to -1.
        table = np.full(max(map(ord, self.chars)) + 2, -1, dtype=np.int32)
        for i, c in enumerate(self.chars):
            table[ord(c)] = i
        return table

    def encode_array(self, text: str, strict: bool = True) -> np.ndarray:
        """Ids as an int32 array; vectorised, for bulk data preparation."""
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        table = self._lookup
        ids = table[np.minimum(points, len(table) - 1)]
        unknown = ids < 0
        if unknown.any():
            if strict:
                c = chr(points[np.argmax(unknown)])
                raise DataError(f"character {c!r} (U+{ord(c):04X}) is not in the char "
                                f"vocabulary of {self.vocab_size} characters")
            ids = ids[~unknown]
        return ids

    def encode(self, text: str, strict: bool = True) -> list[int]:
        """Ids of `text`. strict=False skips unknown characters (prompts at
        sampling time may hold characters the corpus never had)."""
        if strict:
            try:
                return [self._index[c] for c in text]
            except KeyError as exc:
                c = exc.args[0]
                raise DataError(f"character {c!r} (U+{ord(c):04X}) is not in the char "
                                f"vocabulary of {self.vocab_size} characters") from None
        return [self._index[c] for c in text if c in self._index]

    def decode(self, ids: Iterable[int]) -> str:
        n = len(self.chars)
        return "".join(self.chars[i] if 0 <= i < n else REPLACEMENT for i in map(int, ids))

    def to_json(self) -> dict:
        return {"kind": "char", "chars": list(self.chars)}

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each id stands for (bits per byte are counted with it)."""
        return np.array([len(c.encode("utf-8", "surrogatepass")) for c in self.chars], dtype=np.int64)

    @classmethod
    def from_json(cls, d: dict) -> "CharTokenizer":
        chars = d.get("chars")
        if isinstance(chars, str):  # also accept the vocabulary as one string
            chars = list(chars)
        if not isinstance(chars, list):
            raise DataError('char tokenizer JSON needs "chars": a list of single characters')
        return cls(chars, keep_order=True)

    def fingerprint(self) -> str:
        return _sha256_json(self.to_json())

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BpeTokenizer:
    """A tiktoken encoding (gpt2, r50k_base, cl100k_base, ...)."""

    kind = "bpe"

    def __init__(self, encoding_name: str = "gpt2"):
        self.encoding = encoding_name
        self._enc = load_encoding(encoding_name)

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    @property
    def eot_token(self) -> int:
        return self._enc.eot_token

    def encode(self, text: str, strict: bool = True) -> list[int]:
        # encode_ordinary treats "<|endoftext|>" in a corpus as plain text
        # instead of raising; strict exists for interface parity with char.
        return self._enc.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Encode many texts in parallel (tiktoken releases the GIL)."""
        return self._enc.encode_ordinary_batch(list(texts), num_threads=num_threads or os.cpu_count() or 1)

    def decode(self, ids: Iterable[int]) -> str:
        # A model whose vocab is padded past n_vocab can sample ids tiktoken
        # does not know; show those as U+FFFD instead of failing.
        n = self._enc.n_vocab
        out, run = [], []
        for i in map(int, ids):
            if 0 <= i < n:
                run.append(i)
            else:
                out.append(self._enc.decode(run, errors="replace"))
                out.append(REPLACEMENT)
                run = []
        out.append(self._enc.decode(run, errors="replace"))
        return "".join(out)

    def to_json(self) -> dict:
        return {"kind": "bpe", "encoding": self.encoding, "n_vocab": self.vocab_size}

    def token_bytes(self) -> np.ndarray:
        out = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(self.vocab_size):
            try:
                out[i] = len(self._enc.decode_single_token_bytes(i))
            except KeyError:  # a gap in the encoding's ids
                pass
        return out

    @classmethod
    def from_json(cls, d: dict) -> "BpeTokenizer":
        name = d.get("encoding")
        if not isinstance(name, str) or not name:
            raise DataError('bpe tokenizer JSON needs "encoding": a tiktoken encoding name')
        tok = cls(name)
        if "n_vocab" in d and d["n_vocab"] != tok.vocab_size:
            raise DataError(f'tiktoken encoding "{name}" has {tok.vocab_size} tokens here but '
                            f'{d["n_vocab"]} where the data or checkpoint was made; use the same '
                            "encoding files")
        return tok

    def fingerprint(self) -> str:
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.encoding, self._enc.n_vocab,
                             getattr(self._enc, "_pat_str", ""),
                             sorted(getattr(self._enc, "_special_tokens", {}).items())]).encode())
        # The merge table is what decides the ids; hashing it (~50k entries,
        # tens of ms) catches a different file behind the same name.
        for token, rank in getattr(self._enc, "_mergeable_ranks", {}).items():
            h.update(rank.to_bytes(4, "little"))
            h.update(token)
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"BpeTokenizer({self.encoding!r}, vocab_size={self.vocab_size})"


class TrainedTokenizer:
    """A Hugging Face `tokenizers` tokenizer (tokenizer.json): the byte-level BPE
    trained on the corpus (engine.data.bpe_training), or one loaded from a file.

    Special tokens in the text are matched whole (as transformers' AutoTokenizer
    does with the exported tokenizer.json); the first of `special_tokens` is the
    end-of-text token put between documents.
    """

    kind = "trained"

    def __init__(self, hf_json: dict, special_tokens: Sequence[str] = ()):
        from tokenizers import Tokenizer as HfTokenizer

        if not isinstance(hf_json, dict):
            raise DataError("trained tokenizer JSON: \"tokenizer\" must be a tokenizer.json object")
        try:
            self._tok = HfTokenizer.from_str(json.dumps(hf_json))
        except Exception as exc:  # the Rust side raises a plain Exception with serde's message
            raise DataError(f"not a valid tokenizer.json ({_first_line(exc)})") from None
        self.hf_json = hf_json
        self.special_tokens = list(special_tokens)
        self._special_ids = []
        for token in self.special_tokens:
            token_id = self._tok.token_to_id(token)
            if token_id is None:
                raise DataError(f"special token {token!r} is not in the tokenizer's vocabulary")
            self._special_ids.append(token_id)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def eot_token(self) -> int | None:
        return self._special_ids[0] if self._special_ids else None

    def vocabulary(self) -> dict[str, int]:
        """Token text -> id, added tokens included."""
        return self._tok.get_vocab(with_added_tokens=True)

    def encode(self, text: str, strict: bool = True) -> list[int]:
        # a byte-level BPE has a token for every byte: nothing is ever unknown
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """Encode many texts in parallel (the Rust core spreads them over the cores)."""
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        n = self.vocab_size
        out, run = [], []
        for i in map(int, ids):
            if 0 <= i < n:
                run.append(i)
            else:  # a padded model vocabulary can sample ids the tokenizer lacks
                out.append(self._tok.decode(run, skip_special_tokens=False))
                out.append(REPLACEMENT)
                run = []
        out.append(self._tok.decode(run, skip_special_tokens=False))
        return "".join(out)

    def token_bytes(self) -> np.ndarray:
        out = np.zeros(self.vocab_size, dtype=np.int64)
        byte_level = _byte_level_spelling()
        added = set(self._tok.get_added_tokens_decoder())
        for token, i in self.vocabulary().items():
            if i >= len(out):
                continue
            if i in added:                    # matched whole in the text, as written
                out[i] = len(token.encode("utf-8"))
            elif all(c in byte_level for c in token):
                out[i] = len(token)           # one character per byte in this spelling
            else:
                out[i] = len(self._tok.decode([i], skip_special_tokens=False).encode("utf-8"))
        return out

    def to_json(self) -> dict:
        return {"kind": "trained", "special_tokens": list(self.special_tokens), "tokenizer": self.hf_json}

    def hf_tokenizer_json(self) -> str:
        """The tokenizer.json text (Hugging Face format) transformers and tokenizers load."""
        return json.dumps(self.hf_json, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, d: dict) -> "TrainedTokenizer":
        special = d.get("special_tokens", [])
        if not isinstance(special, list) or not all(isinstance(t, str) for t in special):
            raise DataError('trained tokenizer JSON: "special_tokens" must be a list of strings')
        hf_json = d.get("tokenizer")
        if not isinstance(hf_json, dict):
            raise DataError("trained tokenizer JSON: \"tokenizer\" must be a tokenizer.json object")
        return cls(hf_json, special)

    def fingerprint(self) -> str:
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        return _sha256_json(self.to_json())

    def __repr__(self) -> str:
        return f"TrainedTokenizer(vocab_size={self.vocab_size})"


@functools.cache
def _byte_level_spelling() -> set[str]:
    """The 256 characters GPT-2's byte-level BPE spells bytes with."""
    from tokenizers.pre_tokenizers import ByteLevel

    return set(ByteLevel.alphabet())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class IdTokenizer:
    """Token ids with no text behind them: a .bin/.npy token file another tokenizer made
    (source document 004 trains on such files, given only a vocabulary size), read when nothing
    beside it says what its ids spell. Text in and out is the ids written out, "17 905 3": a
    prompt is given that way and samples print that way. Export needs a real tokenizer."""

    kind = "ids"
    eot_token = None

    def __init__(self, vocab_size: int):
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise DataError(f"ids tokenizer: vocab_size {vocab_size!r} must be a positive integer")
        self._vocab_size = vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def encode(self, text: str, strict: bool = True) -> list[int]:
        """The ids written in `text` (whitespace between them). strict=False drops what is not
        an id of this vocabulary (a prompt); strict=True refuses it."""
        ids = []
        for word in text.split():
            if self.is_id(word):
                ids.append(int(word))
            elif strict:
                raise DataError(f"{word[:40]!r} is not a token id below {self._vocab_size}: this model "
                                "was trained on token ids with no tokenizer, so text for it is ids "
                                "written out (\"17 905 3\")")
        return ids

    def is_id(self, word: str) -> bool:
        """Whether `word` is written as a token id of this vocabulary."""
        return word.isdecimal() and int(word) < self._vocab_size

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(f" {int(i)}" for i in ids)   # a leading space: continuations join prompts

    def to_json(self) -> dict:
        return {"kind": "ids", "vocab_size": self._vocab_size}

    def token_bytes(self) -> np.ndarray:
        """No text behind the ids: no bytes to count bits per byte with (zeros: n/a)."""
        return np.zeros(self._vocab_size, dtype=np.int64)

    @classmethod
    def from_json(cls, d: dict) -> "IdTokenizer":
        vocab = d.get("vocab_size")
        if not isinstance(vocab, int):
            raise DataError(f"ids tokenizer JSON: vocab_size {vocab!r} must be a positive integer")
        return cls(vocab)

    def fingerprint(self) -> str:
        return _sha256_json(self.to_json())

    def __repr__(self) -> str:
        return f"IdTokenizer(vocab_size={self.vocab_size})"


Tokenizer = CharTokenizer | BpeTokenizer | TrainedTokenizer | IdTokenizer


def load_encoding(name: str):
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # ValueError, requests errors, OSError, hash mismatch...
        cause = f"{type(exc).__name__}: {exc}"
    try:
        known = tiktoken.list_encoding_names()
    except Exception:
        known = []
    if known and name not in known:
        raise DataError(f'tokenizer.encoding = "{name}" is not a tiktoken encoding; '
                        f"expected one of {', '.join(known)}")
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    where = f"TIKTOKEN_CACHE_DIR={cache}" if cache else "tiktoken's default cache in the temp folder"
    raise DataError(f'tokenizer.encoding = "{name}": cannot load its tiktoken files from {where} '
                    f"or the network ({cause[:160]}); run once with network access to download "
                    "them, or set TIKTOKEN_CACHE_DIR to a folder holding the cached files")


def tokenizer_from_json(d: dict) -> Tokenizer:
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind == "char":
        return CharTokenizer.from_json(d)
    if kind == "bpe":
        return BpeTokenizer.from_json(d)
    if kind == "trained":
        return TrainedTokenizer.from_json(d)
    if kind == "ids":
        return IdTokenizer.from_json(d)
    raise DataError(f'tokenizer JSON: "kind" = {kind!r} is not allowed; expected "char", "bpe", '
                    '"trained" or "ids"')
