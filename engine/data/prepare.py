"""Corpora -> token files.

`prepare_data` turns the configured sources into `train` and `val` token
arrays. Text is tokenized once into `<prepared_dir>/<key>/{train,val}.bin`
plus `meta.json` (and, for a trained BPE, the `tokenizer.json` trained on the
training sources first) and reused while the sources and tokenizer settings stay the same;
pre-tokenized `.bin`/`.npy` files are memory-mapped in place. Record formats
(.jsonl/.json/.csv/.parquet, Hugging Face datasets) are read by
engine.data.records, one document per record. Everything streams, so a corpus
far larger than RAM prepares in bounded memory.

The batches drawn from those arrays are `engine.data.batches`'s.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, NamedTuple, Protocol, overload

import numpy as np

from llmtui.engine import fsutil
from llmtui.engine.data import corpus, records
from llmtui.engine.data.bpe_training import load_tokenizer_file, train_bpe
from llmtui.engine.data.bpe_workers import RecordRange, cut_point, encode_processes, encode_threads
from llmtui.engine.data.tokenizers import (
    BpeTokenizer,
    CharTokenizer,
    IdTokenizer,
    Tokenizer,
    TrainedTokenizer,
    tokenizer_from_json,
)
from llmtui.engine.errors import DataError

FORMAT_VERSION = 1
LEFTOVER_MARK = ".llmtui-preparing"   # in a temporary preparation folder: who is writing it
CHUNK_BYTES = 4 << 20        # text read and encoded per step (bounds memory); tests lower it
TRAIN_READ_BYTES = 64 << 10  # text read per progress report while a BPE trains (a stop is seen soon)
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
    notes: list[str] = field(default_factory=list)   # what a front end should be told
    stamp: Stamp | None = None  # what it was made from, to tell cheaply that it still is (reuse_prepared)


@dataclass(frozen=True)
class Stamp:
    """What a preparation was made from, taken again without hashing anything: the
    config's [data] and [tokenizer] settings and the size and modification time of
    each corpus file, the tokenizer file and the token files. The same stamp later:
    the same settings and untouched files, so preparing again would only hash them
    to find the same token files (see reuse_prepared)."""

    settings: str                               # [data] and [tokenizer], as JSON
    files: tuple[tuple[str, int, int], ...]     # (path, size, mtime_ns); the builtin corpus: 0


# ---------------------------------------------------------------------------
# sources

class _Doc(NamedTuple):
    name: str
    size: int
    open: Callable[[], BinaryIO] | None   # its bytes (None: a loaded dataset, see `files`)
    mtime_ns: int | None = None   # a file's, when it was listed (None: the builtin corpus)
    # record formats: on_read -> the texts of its records, one document each (None: plain text)
    records: Callable[[Callable[[int], None]], Iterator[str]] | None = None
    files: tuple[Path, ...] = ()  # a dataset's Arrow files, hashed to know when it changed
    lines: tuple[str, str] | None = None   # a .jsonl/.json record file: (its format, the text field)


@dataclass
class _Source:
    key: str        # the config key that named it, for messages
    kind: str       # builtin | text | folder | tokens | dataset | several (validation sources)
    identity: str   # "builtin", the absolute path, "hf:ORG/NAME", or (several) their JSON list
    path: Path | None
    docs: list[_Doc]
    parts: list[_Source] = field(default_factory=list)   # kind "several": the sources it joins

    @property
    def file(self) -> Path:
        """The path of a source that has one (text, folder, tokens, a dataset folder)."""
        if self.path is None:
            raise AssertionError(f"{self.key}: a {self.kind} source has no path")
        return self.path


KINDS = ('give a text file, a folder of .txt files, a .jsonl/.json/.csv/.parquet file of records, '
         'a dataset folder written by save_to_disk, "hf:ORG/NAME", a .bin/.npy token file or "builtin"')


def _resolve(spec: str, key: str, data=None, load: bool = True) -> _Source:
    """The source `spec` names. `data` is the config's [data] section (the text field and
    split of records); load=False only checks what is cheap (no dataset is loaded)."""
    field_name, split = (data.text_field, data.split) if data is not None else ("text", "train")
    if spec == "builtin":
        text = corpus.builtin_text().encode("utf-8")
        return _Source(key, "builtin", "builtin", None,
                       [_Doc("builtin corpus", len(text), lambda: io.BytesIO(text))])
    if spec.startswith(records.HUB_PREFIX):
        return _dataset_source(spec, key, spec, None, split, field_name, load)
    path = Path(os.path.expanduser(spec))
    shown = f'{key} = "{spec}"'
    if not path.exists() and data is not None:
        path = _in_parent_of_processed(path, data)
    if not path.exists():
        raise DataError(f"{shown}: no such file or folder ({path.absolute()}); {KINDS}")
    identity = str(path.resolve())
    if path.is_dir():
        if records.is_saved_dataset(path):
            return _dataset_source(spec, key, identity, path, split, field_name, load)
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{shown}: folder {path} holds no .txt files")
        return _Source(key, "folder", identity, path, [_file_doc(p) for p in files])
    if path.suffix.lower() in TOKEN_SUFFIXES:
        return _Source(key, "tokens", identity, path, [])
    fmt = records.file_format(path)
    if fmt == "parquet":   # the package is optional: say which extra, before anything is read
        records.require("pyarrow.parquet", "parquet", f"{shown} (Parquet)")
    return _Source(key, "text", identity, path, [_file_doc(path, fmt, field_name)])


def _processed_parent(folder: Path, data) -> Path | None:
    """000's binary layout: data.prepared_dir = "data/processed" (a folder named processed)
    while train.bin, val.bin and meta.json live in its parent, data/. The parent when
    `folder` is that prepared_dir, else None."""
    processed = Path(os.path.expanduser(data.prepared_dir)).absolute()
    if processed.name == "processed" and folder.absolute() == processed:
        return processed.parent
    return None


def _in_parent_of_processed(path: Path, data) -> Path:
    """A token file named inside 000's data/processed that is not there: the one in data/
    (as 000's train.py looks for it); the path as given otherwise."""
    parent = _processed_parent(path.parent, data) if path.suffix.lower() in TOKEN_SUFFIXES else None
    if parent is not None and (parent / path.name).is_file():
        return parent / path.name
    return path


def _meta_path(path: Path, cfg) -> Path:
    """The meta.json of a token file: beside it, else, for a token file in 000's
    data/processed, the one in data/ (see _processed_parent)."""
    beside = path.with_name("meta.json")
    parent = _processed_parent(path.parent, cfg.data)
    if not beside.is_file() and parent is not None and (parent / "meta.json").is_file():
        return parent / "meta.json"
    return beside


def _file_doc(path: Path, fmt: str | None = None, field_name: str = "text") -> _Doc:
    st = path.stat()
    read = None
    if fmt:
        def read(on_read):
            return records.file_texts(path, fmt, field_name, on_read)
    return _Doc(str(path), st.st_size, lambda: open(path, "rb"), st.st_mtime_ns, read,
                lines=(fmt, field_name) if fmt in ("jsonl", "json") else None)


def _dataset_source(spec: str, key: str, identity: str, path: Path | None, split: str,
                    field_name: str, load: bool) -> _Source:
    """A Hugging Face dataset: "hf:ORG/NAME" or a folder written by save_to_disk."""
    if not load:
        records.require("datasets", "datasets", f'{key} = "{spec}" (a Hugging Face dataset)')
        return _Source(key, "dataset", identity, path, [])
    ds = records.load_dataset(spec, split, key)
    files = tuple(records.dataset_files(ds))
    size = sum(f.stat().st_size for f in files)

    def read(on_read):
        return records.dataset_texts(ds, field_name, spec, on_read, size)
    return _Source(key, "dataset", identity, path, [_Doc(spec, size, None, None, read, files)])


def _check_unchanged(docs: list[_Doc]) -> None:
    """Refuse the preparation when a corpus file changed since it was listed (before it
    was hashed): the tokens would not be the text whose hash meta.json records, and a
    later run on the complete file would reuse them (a file truncated while it was
    tokenized trained a run on half its data, without a word)."""
    for doc in docs:
        if doc.mtime_ns is None:
            continue
        try:
            st = os.stat(doc.name)
            now = f"{st.st_size:,} bytes" if st.st_size != doc.size else "rewritten"
            changed = (st.st_size, st.st_mtime_ns) != (doc.size, doc.mtime_ns)
        except OSError:
            now, changed = "removed", True
        if changed:
            raise DataError(f"{doc.name}: changed while it was being prepared ({doc.size:,} bytes, "
                            f"now {now}); nothing was kept: prepare again once the file is complete")


def check_sources(cfg) -> None:
    """Fail now, with one line, when a configured corpus or tokenizer.json does not exist
    or does not parse (cheap: no corpus is read or hashed, no dataset loaded), so a run
    refuses before it writes anything."""
    _configured_sources(cfg, load=False)
    _val_source(cfg, load=False)
    t = cfg.tokenizer
    if t.kind in ("trained", "char") and t.path:
        load_tokenizer_file(t.path, t.special_tokens, t.kind)   # a file that does not parse: refused now


# bytes of UTF-8 text per token, for estimates made before the data is prepared: a
# character each (char), about 4 for English with a BPE vocabulary (GPT-2's, or a trained one)
BYTES_PER_TOKEN = {"char": 1.0, "bpe": 4.0, "trained": 4.0}


def estimate_train_tokens(cfg) -> int | None:
    """About how many training tokens the configured text sources make, before they are
    prepared: their size in bytes over BYTES_PER_TOKEN, less the validation share. Cheap
    (file sizes only; nothing is read). None when it cannot be told cheaply: token
    files, records (JSONL, CSV, Parquet, datasets), or a source that does not exist."""
    try:
        sources = _configured_sources(cfg, load=False)
    except (DataError, OSError):
        return None
    if any(s.kind not in ("builtin", "text", "folder") or any(d.records for d in s.docs) for s in sources):
        return None
    size = sum(d.size for s in sources for d in s.docs)
    share = 1.0 if (cfg.data.val_source or cfg.data.val_sources) else 1 - cfg.data.val_fraction
    return int(size / BYTES_PER_TOKEN.get(cfg.tokenizer.kind, 4.0) * share)


def check_tokenizer(cfg) -> None:
    """Fail now, writing nothing, when the tokenizer of a text corpus cannot be had (a
    tiktoken encoding that is unknown or not downloaded) or data.prepared_dir cannot be
    a folder."""
    root = Path(cfg.data.prepared_dir)
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DataError(f'data.prepared_dir = "{root}": {folder} is a file, not a folder; '
                                "give a folder for the prepared token files")
            break
    text = any(src.kind != "tokens" for src in _configured_sources(cfg, load=False))
    if text and cfg.tokenizer.kind == "bpe":
        from llmtui.engine.data.tokenizers import load_encoding
        load_encoding(cfg.tokenizer.encoding)


def _configured_sources(cfg, load: bool = True) -> list[_Source]:
    specs = [("data.source", cfg.data.source)]
    specs += [(f"data.sources[{i}]", s) for i, s in enumerate(cfg.data.sources)]
    sources = [_resolve(s, key, cfg.data, load) for key, s in specs if s]
    if not sources:
        raise DataError(f"data.source is empty; {KINDS}")
    return sources


def _val_source(cfg, load: bool = True) -> _Source | None:
    """The validation corpus: data.val_source and data.val_sources (002's validation
    shards) as one source whose documents follow each other; None when there is none."""
    specs = [("data.val_source", cfg.data.val_source)]
    specs += [(f"data.val_sources[{i}]", s) for i, s in enumerate(cfg.data.val_sources)]
    parts = [_resolve(s, key, cfg.data, load) for key, s in specs if s]
    if len(parts) <= 1:
        return parts[0] if parts else None
    tokens = [p for p in parts if p.kind == "tokens"]
    if tokens:
        raise DataError(f"{tokens[0].key}: only one pre-tokenized .bin/.npy validation source can be "
                        "used (concatenate the token files, or give text validation sources)")
    return _Source(parts[0].key, "several", json.dumps([p.identity for p in parts]), None,
                   [d for p in parts for d in p.docs], parts)


PROGRESS_INTERVAL = 0.25   # seconds between progress reports (tests set 0 to see every one)


class _Reporter:
    """Rate-limits the progress callback: a UI wants a few updates a second."""

    def __init__(self, fn: Progress | None, interval: float | None = None):
        self.fn, self.last = fn, 0.0
        self.interval = PROGRESS_INTERVAL if interval is None else interval
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

def reuse_prepared(data: PreparedData, cfg) -> PreparedData | None:
    """`data` as prepare_data(cfg) would give it now, without reading or hashing the
    corpus again, when nothing it was made from changed since (its Stamp: the same data
    and tokenizer settings, every file the same size and modification time); None when
    something did or it cannot be told cheaply (Hugging Face datasets and token files
    have no stamp): then prepare_data again. Reported as prepare_data reports data it
    reuses: `reused`, and no notes (they were for the first preparation)."""
    if data.stamp is None:
        return None
    try:
        stamp = _stamp(cfg, _configured_sources(cfg, load=False), _val_source(cfg, load=False), data.directory)
    except (DataError, OSError):   # a source gone: prepare_data says so
        return None
    if stamp != data.stamp:
        return None
    return replace(data, reused=True, notes=[])


def _stamp(cfg, sources: list[_Source], val: _Source | None, directory: Path) -> Stamp | None:
    """The Stamp of text sources prepared into `directory` (see Stamp); None for sources
    whose change a file's size and time do not tell (datasets, token files)."""
    every = sources + ([val] if val else [])
    if any(s.kind not in ("builtin", "text", "folder", "several") for s in every + [p for s in every for p in s.parts]):
        return None
    files = [(d.name, d.size, d.mtime_ns or 0) for s in every for d in s.docs]
    made = [directory / n for n in ("train.bin", "val.bin", "meta.json")]
    for path in made + ([Path(cfg.tokenizer.path).expanduser()] if cfg.tokenizer.path else []):
        try:
            st = path.stat()
        except OSError:
            return None
        files.append((str(path), st.st_size, st.st_mtime_ns))
    settings = json.dumps({"data": asdict(cfg.data), "tokenizer": asdict(cfg.tokenizer)}, sort_keys=True,
                          default=str)
    return Stamp(settings, tuple(files))


def prepare_data(cfg, progress: Progress | None = None) -> PreparedData:
    sources = _configured_sources(cfg)
    val = _val_source(cfg)
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
    kind, t = cfg.tokenizer.kind, cfg.tokenizer
    # Load a BPE encoding or tokenizer.json first: a missing one should fail before
    # minutes of hashing. `given` is None when the tokenizer comes from the corpus.
    given: Tokenizer | None = None
    if kind == "bpe":
        given = BpeTokenizer(t.encoding)
    elif kind in ("trained", "char") and t.path:
        given = load_tokenizer_file(t.path, t.special_tokens, kind)
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
        "encoding": t.encoding if kind == "bpe" else None,
        "sources": [[e["source"], e["sha256"]] for e in entries],
        "val_source": [val_entry["source"], val_entry["sha256"]] if val_entry else None,
        "val_fraction": None if val else cfg.data.val_fraction,
    }
    if kind == "trained":   # what decides the trained tokenizer: retrained when it changes
        wanted["trained"] = ({"path": str(Path(t.path).expanduser().resolve()), "special_tokens": t.special_tokens}
                             if t.path else {"vocab_size": t.vocab_size, "special_tokens": t.special_tokens})
    if kind == "char" and t.path:
        wanted["char"] = {"path": str(Path(t.path).expanduser().resolve())}
    if given is not None:
        wanted["tokenizer_fingerprint"] = given.fingerprint()
    if any(d.records for s in sources + ([val] if val else []) for d in s.docs):
        # what decides a record's text besides its file (absent for plain text: the
        # folders prepared before record formats existed are still reused)
        wanted["records"] = {"version": records.FORMAT_VERSION, "text_field": cfg.data.text_field,
                             "template": records.CHAT_TEMPLATE}
        if any(s.kind == "dataset" or any(p.kind == "dataset" for p in s.parts)
               for s in sources + ([val] if val else [])):
            wanted["records"]["split"] = cfg.data.split

    root = Path(cfg.data.prepared_dir)
    directory = root / _dataset_key(sources, wanted)
    _remove_own_leftovers(root)
    meta = _valid_meta(directory, wanted)
    notes = []
    if meta and not cfg.tokenizer.retrain and _files_intact(directory, meta, report):
        return replace(_open_prepared(directory, meta, reused=True), stamp=_stamp(cfg, sources, val, directory))
    if meta and cfg.tokenizer.retrain:
        notes.append(f"{directory}: tokenizer.retrain (--retrain-tokenizer): preparing the data and "
                     "the tokenizer again")
    elif meta:
        notes.append(f"{directory}: the prepared token files do not match the hashes in meta.json "
                     "(changed on disk, or written by llmtui 0.1.0, which recorded none); "
                     "preparing them again")
    made = [f for f in (root, *root.parents) if not f.exists()]   # removed again if this fails
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=root))
        # who made it: a later run removes it once that process is gone (a double Ctrl-C
        # or kill -9 mid-preparation leaves it behind)
        (tmp / LEFTOVER_MARK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    except OSError as exc:
        raise DataError(f'data.prepared_dir = "{root}": cannot write there ({exc.strerror})') from None
    try:
        meta = _tokenize_into(tmp, sources, val, entries, val_entry, wanted, given, cfg, report)
        _check_unchanged([d for s in sources + ([val] if val else []) for d in s.docs])
        (tmp / LEFTOVER_MARK).unlink()
        _install(tmp, directory)
    except OSError as exc:
        _remove_made(tmp, made)
        raise DataError(f'data.prepared_dir = "{root}": cannot write the token files '
                        f"({exc.strerror or exc})") from None
    except BaseException:
        _remove_made(tmp, made)
        raise
    # Another process (e.g. a second DDP rank) may have installed it first.
    meta = _valid_meta(directory, wanted) or meta
    prepared = _open_prepared(directory, meta, reused=False)
    prepared.notes.extend(notes)
    prepared.stamp = _stamp(cfg, sources, val, directory)
    return prepared


def _remove_made(tmp: Path, made: list[Path]) -> None:
    """A preparation that failed leaves nothing: its temporary folder, and the folders it
    created for data.prepared_dir when they are empty again."""
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            break


def _source_entry(src: _Source, report: _Reporter) -> dict:
    if src.kind == "several":
        digest = _sha256_json([_source_entry(p, report)["sha256"] for p in src.parts])
    elif src.kind == "dataset":
        # the Arrow files behind the dataset: content, not where the cache keeps them
        h = hashlib.sha256()
        for f in src.docs[0].files:
            h.update(f"{f.name}\0{_hash_doc(_file_doc(f), report)}\n".encode())
        digest = h.hexdigest()
    elif src.kind == "folder":
        # Folder hash covers names too: adding, removing or renaming a file changes it.
        h = hashlib.sha256()
        for d in src.docs:
            h.update(f"{Path(d.name).relative_to(src.file).as_posix()}\0{_hash_doc(d, report)}\n".encode())
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
    if doc.open is None:
        raise AssertionError(f"{doc.name}: a loaded dataset is read by its records, not opened")
    try:
        return doc.open()
    except OSError as exc:
        raise DataError(f"{doc.name}: cannot read ({exc.strerror})") from None


def _dataset_key(sources: list[_Source], wanted: dict) -> str:
    # Readable part from the first source, hash of what identifies the dataset
    # (paths, not contents: new content is re-prepared into the same folder).
    first = sources[0]
    if first.kind == "dataset" and first.path is None:   # hf:ORG/NAME
        name = first.identity.rsplit("/", 1)[-1]
    else:
        name = "builtin" if first.path is None else (first.path.stem or first.path.name)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:32] or "data"
    ident = [[s.identity for s in sources], wanted["val_source"] and wanted["val_source"][0],
             wanted["tokenizer_kind"], wanted["encoding"], wanted["val_fraction"]]
    if "trained" in wanted:   # each tokenizer setting its own folder: switching back reuses it
        ident.append(wanted["trained"])
    if "records" in wanted:
        ident.append(wanted["records"])
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


def _files_intact(directory: Path, meta: dict, report: _Reporter) -> bool:
    """Whether the prepared token files still hold what was written: their sha256
    against meta.json (a file corrupted in place keeps its size). Cheap next to
    training: hashing runs at several hundred MB/s (bench/data_prep.py)."""
    recorded = meta.get("files")
    if not isinstance(recorded, dict):
        return False     # prepared by llmtui 0.1.0, which recorded no hashes: prepare again
    names = ("train.bin", "val.bin")
    report.begin("verify", sum((directory / n).stat().st_size for n in names))
    for name in names:
        digest = hashlib.sha256()
        with open(directory / name, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
                report.advance(len(block))
        if digest.hexdigest() != recorded.get(name):
            return False
    report.end()
    return True


def _remove_own_leftovers(root: Path) -> None:
    """Temporary folders of preparations whose process is gone (marked by us, same
    host): removed. Anything else in prepared_dir is left alone."""
    if not root.is_dir():
        return
    host = socket.gethostname()
    for tmp in root.glob(".tmp-*"):
        try:
            mark = json.loads((tmp / LEFTOVER_MARK).read_text())
            pid, made_on = int(mark["pid"]), mark["host"]
        except (OSError, ValueError, KeyError, TypeError):
            continue     # not ours, or being written right now
        if made_on == host and not _process_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tokenize_into(tmp: Path, sources, val, entries, val_entry, wanted, given, cfg, report) -> dict:
    docs = [d for s in sources for d in s.docs]
    val_docs = val.docs if val else []
    if given is not None:
        tokenizer: Tokenizer = given
    elif cfg.tokenizer.kind == "trained":
        tokenizer = _train_tokenizer(docs, cfg, report)
    else:
        # The char vocabulary must also cover the validation text.
        tokenizer = CharTokenizer(_scan_chars(docs + val_docs, report))
    if isinstance(tokenizer, TrainedTokenizer):   # beside the tokens, for the user's other tools
        (tmp / "tokenizer.json").write_text(tokenizer.hf_tokenizer_json(), encoding="utf-8")
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
    meta["files"] = {name: fsutil.sha256_file(tmp / name) for name in ("train.bin", "val.bin")}
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

class _Advances(Protocol):
    def advance(self, n: int) -> None: ...


def _text_chunks(doc: _Doc, report: _Advances, block: int | None = None) -> Iterator[str]:
    """The document's text in pieces of about `block` (CHUNK_BYTES) bytes, cut at safe points."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry, offset = "", 0
    with _opened(doc) as f:
        while True:
            raw = f.read(block or CHUNK_BYTES)
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
            cut = cut_point(text, len(text) // 2, len(text))
            carry = text[cut:]
            yield text[:cut]


def text_chunks(path: Path, on_read: Callable[[int], None] | None = None,
                block: int | None = None) -> Iterator[str]:
    """A UTF-8 text file in pieces of about `block` bytes, cut where tokenizers split anyway
    (so encoding the pieces equals encoding the whole); `on_read(n)` after each n bytes read."""
    class _Counter:
        @staticmethod
        def advance(n: int) -> None:
            if on_read:
                on_read(n)
    try:
        doc = _file_doc(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return _text_chunks(doc, _Counter(), block)


RECORD_SEPARATOR = "\n"   # between records, for a tokenizer without an end-of-text token (char)


@overload
def _doc_texts(doc: _Doc, report: _Reporter, separator: str) -> Iterator[str]: ...
@overload
def _doc_texts(doc: _Doc, report: _Reporter, separator: str | None) -> Iterator[str | None | list[str]]: ...


def _doc_texts(doc: _Doc, report: _Reporter, separator: str | None) -> Iterator[str | None | list[str]]:
    """What a document gives the encoder: a text file's pieces (see _text_chunks), or a
    record file's documents in lists of about CHUNK_BYTES characters. Between records goes
    the end-of-text token (None between lists, by the encoder inside one), or, when
    `separator` is given (no end-of-text token), that text."""
    if doc.records is None:
        yield from _text_chunks(doc, report)
        return
    batch: list[str] = []
    chars, first = 0, True
    for text in doc.records(report.advance):
        batch.append(text)
        chars += len(text)
        if chars >= CHUNK_BYTES:
            yield from _record_batch(batch, separator, first)
            batch, chars, first = [], 0, False
    if batch:
        yield from _record_batch(batch, separator, first)


def _record_ranges(doc: _Doc, field_name: str, report: _Reporter) -> Iterator[RecordRange]:
    """A JSON Lines file as jobs for the BPE worker processes: ranges of whole lines of about
    CHUNK_BYTES, decoded there (records.range_texts)."""
    ranges = records.jsonl_ranges(Path(doc.name), report.advance, CHUNK_BYTES)
    for i, (first_line, data) in enumerate(ranges):
        yield RecordRange(doc.name, field_name, first_line, data, first=i == 0)


def _record_batch(batch: list[str], separator: str | None, first: bool):
    if separator is not None:
        yield ("" if first else separator) + separator.join(batch)
    else:
        if not first:
            yield None
        yield batch


def _train_tokenizer(docs: list[_Doc], cfg, report: _Reporter) -> TrainedTokenizer:
    """A byte-level BPE trained on the training documents (engine.data.bpe_training),
    read in small blocks so that the progress callback (which raises to stop) runs often;
    a record file gives each record as one text."""
    report.begin("train tokenizer", sum(d.size for d in docs))
    texts = (text for doc in docs for text in (
        doc.records(report.advance) if doc.records else _text_chunks(doc, report, TRAIN_READ_BYTES)))
    tokenizer = train_bpe(texts, cfg.tokenizer.vocab_size, cfg.tokenizer.special_tokens)
    report.end()
    return tokenizer


def _scan_chars(docs: list[_Doc], report: _Reporter) -> list[str]:
    """First pass for a char vocabulary: the set of characters, streaming."""
    report.begin("scan", sum(d.size for d in docs))
    seen = np.zeros(0x110000, dtype=bool)
    for doc in docs:
        for text in _doc_texts(doc, report, RECORD_SEPARATOR):
            seen[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)] = True
    report.end()
    return [chr(c) for c in np.flatnonzero(seen)]


def _write_tokens(docs: list[_Doc], tokenizer: Tokenizer, dtype: np.dtype, path: Path,
                  report: _Reporter) -> int:
    total = sum(d.size for d in docs)
    report.begin("tokenize", total)

    separator = RECORD_SEPARATOR if tokenizer.eot_token is None else None

    reading = [""]    # the document being read, for errors

    def texts(ranges: bool = False):
        for i, doc in enumerate(docs):
            reading[0] = doc.name
            # BPE marks document boundaries with end-of-text (None here), as
            # GPT-2 training did; a single file gets none, like nanoGPT's scripts.
            if i and tokenizer.eot_token is not None:
                yield None
            if ranges and doc.lines and records.is_json_lines(Path(doc.name), doc.lines[0]):
                yield from _record_ranges(doc, doc.lines[1], report)
            else:
                yield from _doc_texts(doc, report, separator)

    if isinstance(tokenizer, CharTokenizer):
        def char_arrays():
            for text in texts():
                try:
                    yield tokenizer.encode_array(text).astype(dtype)
                except DataError as exc:   # only a given vocabulary (tokenizer.path) lacks some
                    raise DataError(f"{reading[0]}: {exc.detail} (tokenizer.path); a char model reads "
                                    "only the characters of its vocabulary: remove those characters, "
                                    "or use a BPE tokenizer") from None
        arrays = char_arrays()
    elif (isinstance(tokenizer, BpeTokenizer) and total >= BPE_PROCESS_MIN_BYTES
          and (os.cpu_count() or 1) > 1 and sys.executable):
        arrays = encode_processes(tokenizer, texts(ranges=True), dtype)
    else:
        arrays = encode_threads(tokenizer, texts(), dtype)
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
    side = _side_meta(src.file, cfg)
    tokens = _open_token_file(src, side, cfg)
    sibling = src.file.with_name("val" + src.file.suffix)
    if val:
        train, val_tokens = tokens, _open_token_file(val, _side_meta(val.file, cfg), cfg)
        val_name = val.identity
    elif src.file.stem == "train" and sibling.is_file():
        # nanoGPT's data/<name>/train.bin + val.bin layout
        train = tokens
        val_tokens = _open_token_file(_Source("data.source", "tokens", str(sibling.resolve()),
                                              sibling, []), side, cfg)
        val_name = str(sibling.resolve())
    else:
        keep = int(len(tokens) * (1 - cfg.data.val_fraction))
        train, val_tokens, val_name = tokens[:keep], tokens[keep:], None

    notes = []
    tokenizer: Tokenizer
    if _bare_ids(src.file, side, cfg):
        tokenizer = IdTokenizer(_side_vocab_size(src, side, cfg) or _largest_id((train, val_tokens)) + 1)
        vocab_size = tokenizer.vocab_size
        notes.append(f"{src.key}: {src.path} has no vocabulary beside it: training on its token ids as "
                     f"they are (vocabulary {vocab_size:,}; samples and prompts are ids written out); "
                     "a meta.json or tokenizer.path gives them text")
    else:
        tokenizer, vocab_size = _pretokenized_vocab(src, side, cfg)
    for arr, name in ((train, src.identity), (val_tokens, val_name or src.identity)):
        _check_ids(arr, vocab_size, name)
    meta: dict[str, Any] = {
        "format": "llmtui-tokens", "version": FORMAT_VERSION, "pretokenized": True,
        "dtype": tokens.dtype.name, "vocab_size": vocab_size,
        "tokenizer": tokenizer.to_json(), "tokenizer_fingerprint": tokenizer.fingerprint(),
        "sources": [{"source": src.identity, "key": src.key, "kind": "tokens"}],
        "val_source": val_name and {"source": val_name, "kind": "tokens"},
        "val_fraction": None if val_name else cfg.data.val_fraction,
        "train_tokens": len(train), "val_tokens": len(val_tokens),
        "side_meta": side,
    }
    fingerprint = _sha256_json({"train": _sampled_digest(train), "val": _sampled_digest(val_tokens),
                                "vocab_size": vocab_size})
    meta["fingerprint"] = fingerprint
    return PreparedData(train=train, val=val_tokens, vocab_size=vocab_size, tokenizer=tokenizer,
                        meta=meta, directory=src.file.parent, reused=True, fingerprint=fingerprint,
                        notes=notes)


def _bare_ids(path: Path, side: dict, cfg) -> bool:
    """A token file with nothing to say what its ids spell (no vocabulary or tokenizer in its
    meta.json, tokenizer.kind char, no tokenizer.path): source document 004's .npy files,
    trained on as bare ids (IdTokenizer) rather than refused. A raw .bin counts only with a
    meta.json giving its vocab_size: alone, its dtype is a guess (float64 bytes read as
    uint16 would train on noise), so it stays refused."""
    described = isinstance(side.get("tokenizer"), dict) or "chars" in side
    knowable = path.suffix.lower() == ".npy" or "vocab_size" in side
    return knowable and not described and cfg.tokenizer.kind == "char" and not cfg.tokenizer.path


def _largest_id(arrays) -> int:
    """The largest id in the token arrays, read in blocks (a memmap is never loaded whole)."""
    largest, block = 0, 16 << 20
    for arr in arrays:
        for start in range(0, len(arr), block):
            part = arr[start:start + block]
            if len(part):
                largest = max(largest, int(part.max()))
    return largest


def _side_meta(path: Path, cfg) -> dict:
    """The meta.json of a token file ({} if none; see _meta_path)."""
    meta_path = _meta_path(path, cfg)
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
    path = src.file
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
            raise DataError(f'{_meta_path(path, cfg)}: "dtype" = {meta_dtype!r} is not allowed; '
                            f"expected one of {', '.join(_TOKEN_DTYPES)}")
        if cfg_dtype != "auto" and meta_dtype and meta_dtype != cfg_dtype:
            raise DataError(f'data.bin_dtype = "{cfg_dtype}" but {_meta_path(path, cfg)} '
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
    meta_path = _meta_path(src.file, cfg)
    vocab = _side_vocab_size(src, side, cfg)
    if isinstance(side.get("tokenizer"), dict):
        tokenizer = tokenizer_from_json(side["tokenizer"])
    elif "chars" in side:
        tokenizer = CharTokenizer.from_json({"chars": side["chars"]})
    elif cfg.tokenizer.kind == "trained" and cfg.tokenizer.path:
        tokenizer = load_tokenizer_file(cfg.tokenizer.path, cfg.tokenizer.special_tokens)
    elif cfg.tokenizer.kind == "bpe":
        tokenizer = BpeTokenizer(cfg.tokenizer.encoding)
    else:
        pkl = " (meta.pkl is not read: unpickling can run code)" if meta_path.with_suffix(".pkl").exists() else ""
        where = "has no" if not side else "has a meta.json without a"
        raise DataError(f"{src.key}: {src.path} {where} char vocabulary beside it{pkl}; write meta.json "
                        'with {"vocab_size": N, "chars": [...]} (the characters in id order), or '
                        '{"vocab_size": N} alone to train on the ids as they are, or set '
                        'tokenizer.kind = "bpe" if these are BPE tokens')
    # meta's vocab_size may be padded past the tokenizer's (nanoGPT uses 50304).
    return tokenizer, max(vocab or 0, tokenizer.vocab_size)


def _side_vocab_size(src: _Source, side: dict, cfg) -> int | None:
    """The "vocab_size" a token file's meta.json gives, checked, or None."""
    vocab = side.get("vocab_size")
    if vocab is not None and (not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1):
        raise DataError(f'{_meta_path(src.file, cfg)}: "vocab_size" = {vocab!r} must be a positive integer')
    return vocab


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
