"""Parallel BPE encoding for data preparation, and where text may be cut.

tiktoken is fast, but one Python process holds the GIL while building token
lists; worker processes scale with cores where threads do not (measured on
2 cores: threads 22 MB/s, processes 30 MB/s).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Iterator

import numpy as np

from llmtui.engine.data.tokenizers import BpeTokenizer

BPE_PIECE_CHARS = 256 << 10  # text per tiktoken call when encoding in parallel
_DOCUMENTS = 1 << 63         # length flag of a worker job: a list of documents, not one text

# Places where text can be cut without changing how tiktoken's GPT-2/cl100k/
# o200k patterns split it: after a newline that ends a word and is followed
# by a letter, or before a space that ends a word and is followed by a letter.
# With cuts only there, chunked encoding equals encoding the whole text.
_CUT = re.compile(r"(?<=\S\n)(?=[^\W\d_])|(?<=\S)(?= [^\W\d_])")


def cut_point(text: str, lo: int, hi: int) -> int:
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



def split_text(text: str, size: int) -> Iterator[str]:
    """Cut `text` into pieces of at most `size` characters, where GPT-2's pattern splits anyway."""
    start = 0
    while len(text) - start > size:
        cut = cut_point(text, start + size // 2, start + size)
        yield text[start:cut]
        start = cut
    yield text[start:]


def _pieces(text: str) -> Iterator[str]:
    """Cut a chunk into texts of at most BPE_PIECE_CHARS for parallel encoding."""
    return split_text(text, BPE_PIECE_CHARS)


def record_jobs(records: list[str], size: int) -> Iterator[str | None | list[str]]:
    """Whole documents as encoding jobs, None (end-of-text) between documents: consecutive
    short ones grouped into lists of about `size` characters (encoded with end-of-text between
    their items), a longer one on its own as text (which is cut into pieces like any text)."""
    group: list[str] = []
    chars = 0
    for i, text in enumerate(records):
        last = i == len(records) - 1
        if len(text) > size:
            if group:
                yield group
                yield None
                group, chars = [], 0
            yield text
            if not last:
                yield None
            continue
        group.append(text)
        chars += len(text)
        if chars >= size or last:
            yield group
            if not last:
                yield None
            group, chars = [], 0


def pack_documents(docs: list[str]) -> bytes:
    """Documents for a worker: their count, their lengths in characters, then their text as
    one UTF-8 string. One encode of the whole list (and one decode in the worker) instead of
    one per document: records are short, and per-record framing was a tenth of the parent's
    time on JSON Lines."""
    lengths = np.fromiter((len(d) for d in docs), dtype="<u8", count=len(docs))
    return len(docs).to_bytes(8, "little") + lengths.tobytes() + "".join(docs).encode("utf-8")


def unpack_documents(data: bytes) -> list[str]:
    count = int.from_bytes(data[:8], "little")
    lengths = np.frombuffer(data, dtype="<u8", count=count, offset=8).tolist()
    text = data[8 + 8 * count:].decode("utf-8")
    docs, at = [], 0
    for n in lengths:
        docs.append(text[at:at + n])
        at += n
    return docs


def _joined(ids: list[list[int]], eot: int, dtype: np.dtype) -> np.ndarray:
    """Documents' ids with end-of-text between them."""
    out: list[int] = []
    for i, doc in enumerate(ids):
        if i:
            out.append(eot)
        out.extend(doc)
    return np.array(out, dtype=dtype)


def _jobs(texts: Iterator[str | None | list[str]]) -> Iterator[str | None | list[str]]:
    """The stream as jobs: text as it is, a batch of whole documents (a list) as record_jobs."""
    for text in texts:
        if isinstance(text, list):
            yield from record_jobs(text, BPE_PIECE_CHARS)
        else:
            yield text


def encode_threads(tokenizer, texts: Iterator[str | None | list[str]], dtype: np.dtype):
    """Ids of a stream of text pieces, None (end-of-text) and lists of whole documents
    (end-of-text between them), encoded on threads."""
    threads = os.cpu_count() or 1
    pool = ThreadPoolExecutor(threads, thread_name_prefix="bpe-docs") if isinstance(tokenizer, BpeTokenizer) else None
    try:
        for text in _jobs(texts):
            if text is None:
                yield np.array([tokenizer.eot_token], dtype=dtype)
            elif isinstance(text, list):
                yield _joined(_encode_documents(tokenizer, text, pool, threads), tokenizer.eot_token, dtype)
            else:
                ids = tokenizer.encode_batch(list(_pieces(text)), num_threads=threads)
                yield np.concatenate([np.array(p, dtype=dtype) for p in ids])
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _encode_documents(tokenizer, docs: list[str], pool, threads: int) -> list[list[int]]:
    """Ids of each document. tiktoken's own batch call costs a thread-pool task per text,
    more than encoding a short record (measured: twice the CPU time on paragraph-sized
    records), so each thread here takes an equal share of the list."""
    if pool is None:   # a trained tokenizer: its Rust core spreads a batch over the cores
        return tokenizer.encode_batch(docs, num_threads=threads)
    share = -(-len(docs) // threads)
    parts = pool.map(lambda part: [tokenizer.encode(d) for d in part],
                     [docs[i:i + share] for i in range(0, len(docs), share)])
    return [ids for part in parts for ids in part]


def encode_processes(tokenizer: BpeTokenizer, texts: Iterator[str | None], dtype: np.dtype):
    # With threads, tiktoken's Python-side work (building int lists) and ours
    # (decoding, cutting, converting to numpy) share one GIL: on 2 cores
    # threads reached 22 MB/s, worker processes 30 MB/s, and the gap grows with
    # cores. At most 2 pieces per worker are in flight: bounded memory, ordered output.
    workers = BpeWorkers(tokenizer.encoding, min(os.cpu_count() or 1, 32), dtype)
    try:
        pending: deque = deque()
        for text in _jobs(texts):
            if text is None:
                pending.append(np.array([tokenizer.eot_token], dtype=dtype))
                continue
            for piece in [text] if isinstance(text, list) else _pieces(text):
                pending.append(workers.submit(piece))
                while len(pending) > 2 * workers.count:
                    yield _ready(pending.popleft(), dtype)
        while pending:
            yield _ready(pending.popleft(), dtype)
    finally:
        workers.close()


def _ready(item, dtype: np.dtype) -> np.ndarray:
    return item if isinstance(item, np.ndarray) else np.frombuffer(item.result(), dtype=dtype)


class BpeWorkers:
    """tiktoken encoders in child processes, fed through pipes.

    Started with `python -c` rather than multiprocessing: "spawn" re-runs the
    caller's __main__ script in every child (a library user's script without
    an `if __name__ == "__main__"` guard would run again), and "fork" is unsafe
    in a process that already runs torch or UI threads. One parent thread per
    child does the blocking pipe I/O, so a slow child never stalls the others.
    """

    def __init__(self, encoding: str, count: int, dtype: np.dtype):
        env = dict(os.environ)
        # the child imports this very module, wherever the parent found it
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        cmd = [sys.executable, "-c", f"from {__name__} import worker_main; worker_main()",
               encoding, dtype.str]
        self.count = count
        self.procs: list[_Worker] = []
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for _ in range(count):
            # stderr goes to a file, not a pipe: a chatty child can never block on it.
            err = tempfile.TemporaryFile()
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
            assert proc.stdin is not None and proc.stdout is not None  # PIPE makes both
            worker = _Worker(proc, proc.stdin, proc.stdout, err)
            self.procs.append(worker)
            self.idle.put(worker)
        self.threads = ThreadPoolExecutor(count, thread_name_prefix="bpe-io")

    def submit(self, text: str | list[str]) -> Future[bytes]:
        """Ids of a text, or of a list of whole documents with end-of-text between them."""
        if isinstance(text, list):
            return self.threads.submit(self._encode, pack_documents(text), _DOCUMENTS)
        return self.threads.submit(self._encode, text.encode("utf-8"))

    def _encode(self, data: bytes, flags: int = 0) -> bytes:
        worker = self.idle.get()
        try:
            worker.stdin.write((len(data) | flags).to_bytes(8, "little") + data)
            worker.stdin.flush()
            size = int.from_bytes(_read_exact(worker, 8), "little")
            return _read_exact(worker, size)
        except BrokenPipeError:
            raise _worker_error(worker) from None
        finally:
            self.idle.put(worker)

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        for worker in self.procs:
            try:
                worker.stdin.close()  # end of input: the child exits
                worker.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                worker.proc.kill()
            worker.stdout.close()
            worker.err_file.close()


@dataclass
class _Worker:
    """One child process, its pipes and the file its stderr goes to."""

    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    stdout: IO[bytes]
    err_file: IO[bytes]


def _read_exact(worker: _Worker, size: int) -> bytes:
    data = worker.stdout.read(size)
    if len(data) != size:
        raise _worker_error(worker)
    return data


def _worker_error(worker: _Worker) -> RuntimeError:
    proc = worker.proc
    proc.wait()
    worker.err_file.seek(0)
    err = worker.err_file.read().decode(errors="replace").strip().splitlines()
    return RuntimeError(f"BPE worker process failed (exit code {proc.returncode}): "
                        f"{err[-1] if err else 'no output'}")


def worker_main() -> None:
    """Child side of BpeWorkers: length-prefixed UTF-8 in, token bytes out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        import tiktoken

        encoding, dtype = tiktoken.get_encoding(sys.argv[1]), sys.argv[2]
        inp, out = sys.stdin.buffer, sys.stdout.buffer
        while header := inp.read(8):
            size = int.from_bytes(header, "little")
            data = inp.read(size & ~_DOCUMENTS)
            if size & _DOCUMENTS:   # documents, end-of-text between them
                docs = [encoding.encode_ordinary(doc) for doc in unpack_documents(data)]
                ids = _joined(docs, encoding.eot_token, np.dtype(dtype)).tobytes()
            else:
                ids = np.array(encoding.encode_ordinary(data.decode("utf-8")), dtype=dtype).tobytes()
            out.write(len(ids).to_bytes(8, "little") + ids)
            out.flush()
    except Exception as exc:  # one line for the parent's error message
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        sys.exit(1)
