"""Corpora -> token files -> training batches.

`prepare_data` turns the configured sources into `train` and `val` token
arrays. Text is tokenized once into `<prepared_dir>/<key>/{train,val}.bin`
plus `meta.json` and reused while the sources and tokenizer stay the same;
pre-tokenized `.bin`/`.npy` files are memory-mapped in place. Everything
streams, so a corpus far larger than RAM prepares in bounded memory.

`BatchSampler` draws nanoGPT-style random windows with its own seeded RNG
whose state goes into checkpoints, so a resumed run sees the same batches.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple

import numpy as np

from engine import corpus
from engine.errors import DataError
from engine.tokenizers import BpeTokenizer, CharTokenizer, Tokenizer, tokenizer_from_json

FORMAT_VERSION = 1
CHUNK_BYTES = 4 << 20        # text read and encoded per step (bounds memory); tests lower it
BPE_PIECE_CHARS = 256 << 10  # text per tiktoken call when encoding in parallel
BPE_PROCESS_MIN_BYTES = 16 << 20  # from this corpus size BPE uses worker processes
TOKEN_SUFFIXES = (".bin", ".npy")
_TOKEN_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "int64")
_FULL_RANGE_CHECK = 256 << 20  # token files up to this many tokens are range-checked in full

Progress = Callable[[str, int, int], None]


@dataclass
class PreparedData:
    train: np.ndarray          # 1-D token memmap
    val: np.ndarray            # 1-D token memmap
    vocab_size: int
    tokenizer: Tokenizer
    meta: dict[str, Any]
    directory: Path            # where train/val live
    reused: bool               # True when nothing had to be tokenized this time
    fingerprint: str           # identifies the token content; checkpoints store it


# ---------------------------------------------------------------------------
# sources

class _Doc(NamedTuple):
    name: str
    size: int
    open: Callable[[], BinaryIO]


@dataclass
class _Source:
    key: str        # the config key that named it, for messages
    kind: str       # builtin | text | folder | tokens
    identity: str   # "builtin" or the absolute path
    path: Path | None
    docs: list[_Doc]


def _resolve(spec: str, key: str) -> _Source:
    if spec == "builtin":
        data = corpus.builtin_text().encode("utf-8")
        return _Source(key, "builtin", "builtin", None,
                       [_Doc("builtin corpus", len(data), lambda: io.BytesIO(data))])
    path = Path(os.path.expanduser(spec))
    shown = f'{key} = "{spec}"'
    if not path.exists():
        raise DataError(f"{shown}: no such file or folder ({path.absolute()}); give a text file, "
                        'a folder of .txt files, a .bin/.npy token file or "builtin"')
    identity = str(path.resolve())
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{shown}: folder {path} holds no .txt files")
        return _Source(key, "folder", identity, path, [_file_doc(p) for p in files])
    if path.suffix.lower() in TOKEN_SUFFIXES:
        return _Source(key, "tokens", identity, path, [])
    return _Source(key, "text", identity, path, [_file_doc(path)])


def _file_doc(path: Path) -> _Doc:
    return _Doc(str(path), path.stat().st_size, lambda: open(path, "rb"))


def _configured_sources(cfg) -> list[_Source]:
    specs = [("data.source", cfg.data.source)]
    specs += [(f"data.sources[{i}]", s) for i, s in enumerate(cfg.data.sources)]
    sources = [_resolve(s, key) for key, s in specs if s]
    if not sources:
        raise DataError('data.source is empty; give a text file, a folder, a .bin/.npy file or "builtin"')
    return sources


class _Reporter:
    """Rate-limits the progress callback: a UI wants a few updates a second."""

    def __init__(self, fn: Progress | None, interval: float = 0.25):
        self.fn, self.interval, self.last = fn, interval, 0.0
        self.stage, self.done, self.total = "", 0, 0

    def begin(self, stage: str, total: int) -> None:
        self.stage, self.done, self.total = stage, 0, total

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.fn and now - self.last >= self.interval:
            self.last = now
            self.fn(self.stage, min(self.done, self.total), self.total)

    def end(self) -> None:
        if self.fn:
            self.last = time.monotonic()
            self.fn(self.stage, self.total, self.total)


# ---------------------------------------------------------------------------
# entry point

def prepare_data(cfg, progress: Progress | None = None) -> PreparedData:
    sources = _configured_sources(cfg)
    val = _resolve(cfg.data.val_source, "data.val_source") if cfg.data.val_source else None
    pre = [s.kind == "tokens" for s in sources + ([val] if val else [])]
    if any(pre) and not all(pre):
        mixed = ", ".join(f"{s.key} ({'tokens' if s.kind == 'tokens' else 'text'})"
                          for s in sources + ([val] if val else []))
        raise DataError(f"cannot mix text and pre-tokenized .bin/.npy sources: {mixed}")
    if all(pre):
        return _open_pretokenized(cfg, sources, val)
    return _prepare_text(cfg, sources, val, _Reporter(progress))


# ---------------------------------------------------------------------------
# text sources: tokenize once, reuse while nothing changed

def _prepare_text(cfg, sources: list[_Source], val: _Source | None, report: _Reporter) -> PreparedData:
    kind = cfg.tokenizer.kind
    # Load a BPE encoding first: a missing one should fail before minutes of hashing.
    bpe = BpeTokenizer(cfg.tokenizer.encoding) if kind == "bpe" else None
    for src in sources + ([val] if val else []):
        if not any(d.size for d in src.docs):
            raise DataError(f"{src.key}: the corpus is empty ({src.identity})")

    report.begin("hash", sum(d.size for s in sources + ([val] if val else []) for d in s.docs))
    entries = [_source_entry(s, report) for s in sources]
    val_entry = _source_entry(val, report) if val else None
    report.end()
    wanted = {
        "version": FORMAT_VERSION,
        "tokenizer_kind": kind,
        "encoding": cfg.tokenizer.encoding if bpe else None,
        "sources": [[e["source"], e["sha256"]] for e in entries],
        "val_source": [val_entry["source"], val_entry["sha256"]] if val_entry else None,
        "val_fraction": None if val else cfg.data.val_fraction,
    }
    if bpe:
        wanted["tokenizer_fingerprint"] = bpe.fingerprint()

    root = Path(cfg.data.prepared_dir)
    directory = root / _dataset_key(sources, wanted)
    meta = _valid_meta(directory, wanted)
    if meta:
        return _open_prepared(directory, meta, reused=True)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f'data.prepared_dir = "{root}": cannot create it ({exc.strerror})') from None

    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=root))
    try:
        meta = _tokenize_into(tmp, sources, val, entries, val_entry, wanted, bpe, cfg, report)
        _install(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Another process (e.g. a second DDP rank) may have installed it first.
    meta = _valid_meta(directory, wanted) or meta
    return _open_prepared(directory, meta, reused=False)


def _source_entry(src: _Source, report: _Reporter) -> dict:
    if src.kind == "folder":
        # Folder hash covers names too: adding, removing or renaming a file changes it.
        h = hashlib.sha256()
        for d in src.docs:
            h.update(f"{Path(d.name).relative_to(src.path).as_posix()}\0{_hash_doc(d, report)}\n".encode())
        digest = h.hexdigest()
    else:
        digest = _hash_doc(src.docs[0], report)
    return {"source": src.identity, "key": src.key, "kind": src.kind, "files": len(src.docs),
            "bytes": sum(d.size for d in src.docs), "sha256": digest}


def _hash_doc(doc: _Doc, report: _Reporter) -> str:
    h = hashlib.sha256()
    with _opened(doc) as f:
        while block := f.read(1 << 20):
            h.update(block)
            report.advance(len(block))
    return h.hexdigest()


def _opened(doc: _Doc) -> BinaryIO:
    try:
        return doc.open()
    except OSError as exc:
        raise DataError(f"{doc.name}: cannot read ({exc.strerror})") from None


def _dataset_key(sources: list[_Source], wanted: dict) -> str:
    # Readable part from the first source, hash of what identifies the dataset
    # (paths, not contents: new content is re-prepared into the same folder).
    first = sources[0]
    name = "builtin" if first.path is None else (first.path.stem or first.path.name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:32] or "data"
    ident = [[s.identity for s in sources], wanted["val_source"] and wanted["val_source"][0],
             wanted["tokenizer_kind"], wanted["encoding"], wanted["val_fraction"]]
    digest = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:10]
    label = wanted["encoding"] if wanted["encoding"] else wanted["tokenizer_kind"]
    return f"{name}-{label}-{digest}"


def _valid_meta(directory: Path, wanted: dict) -> dict | None:
    """meta.json of a complete preparation matching `wanted`, else None."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if any(meta.get(k) != v for k, v in wanted.items() if k != "sources" and k != "val_source"):
            return None
        if [[e["source"], e["sha256"]] for e in meta["sources"]] != wanted["sources"]:
            return None
        val = meta["val_source"]
        if (val and [val["source"], val["sha256"]]) != (wanted["val_source"] or None):
            return None
        itemsize = np.dtype(meta["dtype"]).itemsize
        for split in ("train", "val"):
            if (directory / f"{split}.bin").stat().st_size != meta[f"{split}_tokens"] * itemsize:
                return None
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tokenize_into(tmp: Path, sources, val, entries, val_entry, wanted, bpe, cfg, report) -> dict:
    docs = [d for s in sources for d in s.docs]
    val_docs = val.docs if val else []
    if bpe:
        tokenizer: Tokenizer = bpe
    else:
        # The char vocabulary must also cover the validation text.
        tokenizer = CharTokenizer(_scan_chars(docs + val_docs, report))
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32)

    n_train = _write_tokens(docs, tokenizer, dtype, tmp / "train.bin", report)
    if val:
        n_val = _write_tokens(val_docs, tokenizer, dtype, tmp / "val.bin", report)
    else:
        # nanoGPT split: the first (1 - f) of the tokens train, the rest validate.
        keep = int(n_train * (1 - cfg.data.val_fraction))
        _split_tail(tmp / "train.bin", keep * dtype.itemsize, tmp / "val.bin", report)
        n_train, n_val = keep, n_train - keep

    meta = dict(wanted)
    meta.update({
        "format": "llmtui-tokens",
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": tokenizer.to_json(),
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "sources": entries,
        "val_source": val_entry,
        "train_tokens": n_train,
        "val_tokens": n_val,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    meta["fingerprint"] = _sha256_json({
        "sources": [e["sha256"] for e in entries], "val": val_entry and val_entry["sha256"],
        "tokenizer": meta["tokenizer_fingerprint"], "dtype": meta["dtype"],
        "train_tokens": n_train, "val_tokens": n_val})
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    for name in ("train.bin", "val.bin", "meta.json"):
        _fsync(tmp / name)
    return meta


def _install(tmp: Path, directory: Path) -> None:
    """Put the finished folder in place with renames: readers see the old
    complete folder, no folder, or the new complete one, never a partial one."""
    old = None
    if directory.exists():
        old = directory.with_name(f".old-{directory.name}-{uuid.uuid4().hex[:8]}")
        os.rename(directory, old)
    try:
        os.rename(tmp, directory)
    except OSError:
        if not directory.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # someone else installed it meanwhile
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _open_prepared(directory: Path, meta: dict, reused: bool) -> PreparedData:
    dtype = np.dtype(meta["dtype"])
    return PreparedData(
        train=_memmap(directory / "train.bin", dtype), val=_memmap(directory / "val.bin", dtype),
        vocab_size=meta["vocab_size"], tokenizer=tokenizer_from_json(meta["tokenizer"]), meta=meta,
        directory=directory, reused=reused, fingerprint=meta["fingerprint"])


# ---------------------------------------------------------------------------
# streaming text -> tokens

# Places where text can be cut without changing how tiktoken's GPT-2/cl100k/
# o200k patterns split it: after a newline that ends a word and is followed
# by a letter, or before a space that ends a word and is followed by a letter.
# With cuts only there, chunked encoding equals encoding the whole text.
_CUT = re.compile(r"(?<=\S\n)(?=[^\W\d_])|(?<=\S)(?= [^\W\d_])")


def _cut_point(text: str, lo: int, hi: int) -> int:
    """The last safe cut in (lo, hi], searching backwards; hi if there is none."""
    span = 4096
    while True:
        start = max(lo + 1, hi - span)
        last = None
        for last in _CUT.finditer(text, start, hi):
            pass
        if last:
            return last.start()
        if start <= lo + 1:
            return hi
        span *= 8


def _text_chunks(doc: _Doc, report: _Reporter) -> Iterator[str]:
    """The document's text in pieces of about CHUNK_BYTES, cut at safe points."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry, offset = "", 0
    with _opened(doc) as f:
        while True:
            raw = f.read(CHUNK_BYTES)
            try:
                text = carry + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                raise DataError(f"{doc.name}: not UTF-8 text (bad byte near offset {offset + exc.start}); "
                                "convert it to UTF-8, or give a .bin/.npy token file") from None
            offset += len(raw)
            report.advance(len(raw))
            if not raw:
                if text:
                    yield text
                return
            cut = _cut_point(text, len(text) // 2, len(text))
            carry = text[cut:]
            yield text[:cut]


def _scan_chars(docs: list[_Doc], report: _Reporter) -> list[str]:
    """First pass for a char vocabulary: the set of characters, streaming."""
    report.begin("scan", sum(d.size for d in docs))
    seen = np.zeros(0x110000, dtype=bool)
    for doc in docs:
        for text in _text_chunks(doc, report):
            seen[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)] = True
    report.end()
    return [chr(c) for c in np.flatnonzero(seen)]


def _pieces(text: str) -> Iterator[str]:
    """Cut a chunk into texts of at most BPE_PIECE_CHARS for parallel encoding."""
    start = 0
    while len(text) - start > BPE_PIECE_CHARS:
        cut = _cut_point(text, start + BPE_PIECE_CHARS // 2, start + BPE_PIECE_CHARS)
        yield text[start:cut]
        start = cut
    yield text[start:]


def _encode_threads(tokenizer: BpeTokenizer, texts: Iterator[str | None], dtype: np.dtype):
    for text in texts:
        if text is None:
            yield np.array([tokenizer.eot_token], dtype=dtype)
            continue
        ids = tokenizer.encode_batch(list(_pieces(text)), num_threads=os.cpu_count() or 1)
        yield np.concatenate([np.array(p, dtype=dtype) for p in ids])


def _encode_processes(tokenizer: BpeTokenizer, texts: Iterator[str | None], dtype: np.dtype):
    # With threads, tiktoken's Python-side work (building int lists) and ours
    # (decoding, cutting, converting to numpy) share one GIL: on 2 cores
    # threads reached 22 MB/s, worker processes 30 MB/s, and the gap grows with
    # cores. At most 2 pieces per worker are in flight: bounded memory, ordered output.
    workers = _BpeWorkers(tokenizer.encoding, min(os.cpu_count() or 1, 32), dtype)
    try:
        pending: deque = deque()
        for text in texts:
            if text is None:
                pending.append(np.array([tokenizer.eot_token], dtype=dtype))
                continue
            for piece in _pieces(text):
                pending.append(workers.submit(piece))
                while len(pending) > 2 * workers.count:
                    yield _ready(pending.popleft(), dtype)
        while pending:
            yield _ready(pending.popleft(), dtype)
    finally:
        workers.close()


def _ready(item, dtype: np.dtype) -> np.ndarray:
    return item if isinstance(item, np.ndarray) else np.frombuffer(item.result(), dtype=dtype)


class _BpeWorkers:
    """tiktoken encoders in child processes, fed through pipes.

    Started with `python -c` rather than multiprocessing: "spawn" re-runs the
    caller's __main__ script in every child (a library user's script without
    an `if __name__ == "__main__"` guard would run again), and "fork" is unsafe
    in a process that already runs torch or UI threads. One parent thread per
    child does the blocking pipe I/O, so a slow child never stalls the others.
    """

    def __init__(self, encoding: str, count: int, dtype: np.dtype):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)  # so the child imports this engine
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-c", "from engine.data import _worker_main; _worker_main()",
               encoding, dtype.str]
        self.count, self.procs = count, []
        self.idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            # stderr goes to a file, not a pipe: a chatty child can never block on it.
            err = tempfile.TemporaryFile()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
            proc.err_file = err
            self.procs.append(proc)
            self.idle.put(proc)
        self.threads = ThreadPoolExecutor(count, thread_name_prefix="bpe-io")

    def submit(self, text: str):
        return self.threads.submit(self._encode, text.encode("utf-8"))

    def _encode(self, data: bytes) -> bytes:
        proc = self.idle.get()
        try:
            proc.stdin.write(len(data).to_bytes(8, "little") + data)
            proc.stdin.flush()
            size = int.from_bytes(_read_exact(proc, 8), "little")
            return _read_exact(proc, size)
        except BrokenPipeError:
            raise _worker_error(proc) from None
        finally:
            self.idle.put(proc)

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        for proc in self.procs:
            try:
                proc.stdin.close()  # end of input: the child exits
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
            proc.stdout.close()
            proc.err_file.close()


def _read_exact(proc: subprocess.Popen, size: int) -> bytes:
    data = proc.stdout.read(size)
    if len(data) != size:
        raise _worker_error(proc)
    return data


def _worker_error(proc: subprocess.Popen) -> RuntimeError:
    proc.wait()
    proc.err_file.seek(0)
    err = proc.err_file.read().decode(errors="replace").strip().splitlines()
    return RuntimeError(f"BPE worker process failed (exit code {proc.returncode}): "
                        f"{err[-1] if err else 'no output'}")


def _worker_main() -> None:
    """Child side of _BpeWorkers: length-prefixed UTF-8 in, token bytes out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        import tiktoken

        encoding, dtype = tiktoken.get_encoding(sys.argv[1]), sys.argv[2]
        inp, out = sys.stdin.buffer, sys.stdout.buffer
        while header := inp.read(8):
            text = inp.read(int.from_bytes(header, "little")).decode("utf-8")
            ids = np.array(encoding.encode_ordinary(text), dtype=dtype).tobytes()
            out.write(len(ids).to_bytes(8, "little") + ids)
            out.flush()
    except Exception as exc:  # one line for the parent's error message
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        sys.exit(1)


def _write_tokens(docs: list[_Doc], tokenizer: Tokenizer, dtype: np.dtype, path: Path,
                  report: _Reporter) -> int:
    total = sum(d.size for d in docs)
    report.begin("tokenize", total)

    def texts():
        for i, doc in enumerate(docs):
            # BPE marks document boundaries with end-of-text (None here), as
            # GPT-2 training did; a single file gets none, like nanoGPT's scripts.
            if i and tokenizer.eot_token is not None:
                yield None
            yield from _text_chunks(doc, report)

    if isinstance(tokenizer, CharTokenizer):
        arrays = (tokenizer.encode_array(text).astype(dtype) for text in texts())
    elif total >= BPE_PROCESS_MIN_BYTES and (os.cpu_count() or 1) > 1 and sys.executable:
        arrays = _encode_processes(tokenizer, texts(), dtype)
    else:
        arrays = _encode_threads(tokenizer, texts(), dtype)
    count = 0
    with open(path, "wb") as out, contextlib.closing(arrays):  # closing stops a worker pool
        for ids in arrays:
            ids.tofile(out)
            count += len(ids)
    report.end()
    return count


def _split_tail(path: Path, keep_bytes: int, tail: Path, report: _Reporter) -> None:
    """Move the bytes after keep_bytes into `tail` without loading the file."""
    with open(path, "r+b") as src, open(tail, "wb") as dst:
        size = src.seek(0, os.SEEK_END)
        report.begin("split", size - keep_bytes)
        src.seek(keep_bytes)
        while block := src.read(16 << 20):
            dst.write(block)
            report.advance(len(block))
        src.truncate(keep_bytes)
    report.end()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _memmap(path: Path, dtype: np.dtype) -> np.ndarray:
    if path.stat().st_size == 0:  # mmap refuses empty files
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------
# pre-tokenized sources: used in place

def _open_pretokenized(cfg, sources: list[_Source], val: _Source | None) -> PreparedData:
    if len(sources) > 1:
        raise DataError(f"{sources[1].key}: only one pre-tokenized .bin/.npy source can be used "
                        "(concatenate the token files, or tokenize text sources together)")
    src = sources[0]
    side = _side_meta(src.path)
    tokens = _open_token_file(src, side, cfg)
    sibling = src.path.with_name("val" + src.path.suffix)
    if val:
        train, val_tokens = tokens, _open_token_file(val, _side_meta(val.path), cfg)
        val_name = val.identity
    elif src.path.stem == "train" and sibling.is_file():
        # nanoGPT's data/<name>/train.bin + val.bin layout
        train = tokens
        val_tokens = _open_token_file(_Source("data.source", "tokens", str(sibling.resolve()),
                                              sibling, []), side, cfg)
        val_name = str(sibling.resolve())
    else:
        keep = int(len(tokens) * (1 - cfg.data.val_fraction))
        train, val_tokens, val_name = tokens[:keep], tokens[keep:], None

    tokenizer, vocab_size = _pretokenized_vocab(src, side, cfg)
    for arr, name in ((train, src.identity), (val_tokens, val_name or src.identity)):
        _check_ids(arr, vocab_size, name)
    meta = {
        "format": "llmtui-tokens", "version": FORMAT_VERSION, "pretokenized": True,
        "dtype": tokens.dtype.name, "vocab_size": vocab_size,
        "tokenizer": tokenizer.to_json(), "tokenizer_fingerprint": tokenizer.fingerprint(),
        "sources": [{"source": src.identity, "key": src.key, "kind": "tokens"}],
        "val_source": val_name and {"source": val_name, "kind": "tokens"},
        "val_fraction": None if val_name else cfg.data.val_fraction,
        "train_tokens": len(train), "val_tokens": len(val_tokens),
        "side_meta": side,
    }
    meta["fingerprint"] = _sha256_json({"train": _sampled_digest(train), "val": _sampled_digest(val_tokens),
                                        "vocab_size": vocab_size})
    return PreparedData(train=train, val=val_tokens, vocab_size=vocab_size, tokenizer=tokenizer,
                        meta=meta, directory=src.path.parent, reused=True, fingerprint=meta["fingerprint"])


def _side_meta(path: Path) -> dict:
    """meta.json beside a token file ({} if none)."""
    meta_path = path.with_name("meta.json")
    if not meta_path.is_file():
        return {}
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path}: cannot read it as JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{meta_path}: must hold a JSON object")
    return meta


def _open_token_file(src: _Source, side: dict, cfg) -> np.ndarray:
    path = src.path
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{src.key}: {path} is not a readable .npy array ({exc})") from None
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise DataError(f"{src.key}: {path} must hold a 1-D integer array "
                            f"(it is {arr.ndim}-D {arr.dtype})")
    else:
        meta_dtype, cfg_dtype = side.get("dtype"), cfg.data.bin_dtype
        if meta_dtype is not None and meta_dtype not in _TOKEN_DTYPES:
            raise DataError(f'{path.with_name("meta.json")}: "dtype" = {meta_dtype!r} is not allowed; '
                            f"expected one of {', '.join(_TOKEN_DTYPES)}")
        if cfg_dtype != "auto" and meta_dtype and meta_dtype != cfg_dtype:
            raise DataError(f'data.bin_dtype = "{cfg_dtype}" but {path.with_name("meta.json")} '
                            f'says "{meta_dtype}"; set data.bin_dtype = "auto"')
        dtype = np.dtype(cfg_dtype if cfg_dtype != "auto" else meta_dtype or "uint16")
        size = path.stat().st_size
        if size % dtype.itemsize:
            raise DataError(f"{src.key}: {path} has {size} bytes, not a whole number of "
                            f"{dtype.name} tokens; check data.bin_dtype or meta.json \"dtype\"")
        arr = _memmap(path, dtype)
    if len(arr) == 0:
        raise DataError(f"{src.key}: {path} holds no tokens")
    return arr


def _pretokenized_vocab(src: _Source, side: dict, cfg) -> tuple[Tokenizer, int]:
    """Tokenizer and vocab size for token files: meta.json's vocabulary (ours,
    or a "chars" list), else the configured BPE encoding. A char tokenizer
    cannot be guessed, and training without one could not show samples."""
    meta_path = src.path.with_name("meta.json")
    vocab = side.get("vocab_size")
    if vocab is not None and (not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1):
        raise DataError(f'{meta_path}: "vocab_size" = {vocab!r} must be a positive integer')
    if isinstance(side.get("tokenizer"), dict):
        tokenizer = tokenizer_from_json(side["tokenizer"])
    elif "chars" in side:
        tokenizer = CharTokenizer.from_json({"chars": side["chars"]})
    elif cfg.tokenizer.kind == "bpe":
        tokenizer = BpeTokenizer(cfg.tokenizer.encoding)
    else:
        pkl = " (meta.pkl is not read: unpickling can run code)" if meta_path.with_suffix(".pkl").exists() else ""
        where = "has no" if not side else "has a meta.json without a"
        raise DataError(f"{src.key}: {src.path} {where} char vocabulary beside it{pkl}; write meta.json "
                        'with {"vocab_size": N, "chars": [...]} (the characters in id order), or set '
                        'tokenizer.kind = "bpe" if these are BPE tokens')
    # meta's vocab_size may be padded past the tokenizer's (nanoGPT uses 50304).
    return tokenizer, max(vocab or 0, tokenizer.vocab_size)


def _check_ids(arr: np.ndarray, vocab_size: int, name: str) -> None:
    """Out-of-range ids would crash the embedding lookup mid-run (on CUDA with
    an opaque device assert), so check them now. Huge files are checked at
    both ends only, to keep start-up fast."""
    n, block = len(arr), 16 << 20
    if n <= _FULL_RANGE_CHECK:
        spans = [(0, n)]
    else:
        spans = [(0, _FULL_RANGE_CHECK // 2), (n - _FULL_RANGE_CHECK // 2, n)]
    for lo, hi in spans:
        for start in range(lo, hi, block):
            part = arr[start:min(hi, start + block)]
            low, high = int(part.min()), int(part.max())
            if low < 0 or high >= vocab_size:
                bad = high if high >= vocab_size else low
                raise DataError(f"{name}: token id {bad} is outside the vocabulary of {vocab_size}; "
                                'fix "vocab_size" in meta.json or the tokenizer settings')


def _sampled_digest(arr: np.ndarray) -> str:
    """Content hash of length, dtype and 16 evenly spread 64 KB blocks: cheap
    even for many-GB token files, and independent of where the file lives."""
    h = hashlib.sha256(f"{arr.dtype.name}:{len(arr)}".encode())
    block = (64 << 10) // max(arr.dtype.itemsize, 1)
    for start in sorted(set(np.linspace(0, max(len(arr) - block, 0), 16).astype(np.int64).tolist())):
        h.update(np.ascontiguousarray(arr[start:start + block]).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# batches

def _require_tokens(n: int, block_size: int, split: str) -> None:
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
        _require_tokens(len(tokens), block_size, split)
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


def eval_offsets(n_tokens: int, block_size: int, batch_size: int, max_batches: int) -> list[np.ndarray]:
    """Window starts for validation, evenly spread and the same at every eval
    (no RNG), so successive val losses are comparable. All batches are full
    unless the split holds fewer than batch_size windows."""
    _require_tokens(n_tokens, block_size, "val")
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


def epoch_steps(n_train_tokens: int, cfg, world_size: int = 1) -> int:
    """Optimizer steps for one pass over the training tokens."""
    t = cfg.training
    per_step = t.batch_size * cfg.model.block_size * t.grad_accum_steps * world_size
    return max(1, math.ceil(n_train_tokens / per_step))
