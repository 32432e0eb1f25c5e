"""Parallel BPE encoding for data preparation, and where text may be cut.

tiktoken is fast, but one Python process holds the GIL while building token
lists; worker processes scale with cores where threads do not (measured on
2 cores: threads 22 MB/s, processes 30 MB/s).
"""

from __future__ import annotations

import json
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
from llmtui.engine.errors import DataError

BPE_PIECE_CHARS = 256 << 10  # text per tiktoken call when encoding in parallel
_DOCUMENTS = 1 << 63         # length flag of a worker job: a list of documents, not one text
_RANGE = 1 << 62             # length flag of a worker job: a RecordRange
_FAILED = 1 << 63            # length flag of a worker's answer: one line of error, not ids

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


@dataclass
class RecordRange:
    """A worker job: whole lines of a JSON Lines file (records.jsonl_ranges), decoded,
    their text fields taken and encoded in the worker, end-of-text between records. The
    parent only finds line ends: JSON decoding was most of its time, and on 2 cores the
    parent's share is what the workers lack (issue 19: 9.5 MB/s with records decoded in
    the parent, plain text 28)."""

    name: str          # the file, as errors name it
    field: str         # data.text_field
    first_line: int    # the number of the range's first line
    data: bytes
    first: bool        # the file's first range (end-of-text only between its records)

    def pack(self) -> bytes:
        head = json.dumps([self.name, self.field, self.first_line]).encode("utf-8")
        return len(head).to_bytes(8, "little") + head + self.data

    @staticmethod
    def unpack(data: bytes) -> tuple[str, str, int, bytes]:
        size = int.from_bytes(data[:8], "little")
        name, field, first_line = json.loads(data[8:8 + size])
        return name, field, first_line, data[8 + size:]


# what the encoders take: text, end-of-text (None), whole documents, JSON Lines (processes only)
Job = str | None | list[str] | RecordRange


def eot_text(encoding) -> str:
    """The text of an encoding's end-of-text special token ("<|endoftext|>")."""
    return encoding.decode_single_token_bytes(encoding.eot_token).decode("utf-8")


def encode_documents(encoding, docs: list[str], dtype: np.dtype) -> np.ndarray:
    """Ids of documents with end-of-text between them, as encoding each alone would give
    (encode_ordinary) with the end-of-text id between. One tiktoken call for the lot: the
    documents joined by the end-of-text text, which tiktoken, told it is allowed, encodes
    as its special id, encoding the text between special tokens piece by piece. A document
    holding that text itself (where it must stay ordinary text) makes the joined text hold
    more of them than the joins: then one call per document. (Two adjacent documents cannot
    make one across a join: "<|endoftext|>" has no prefix that is also its suffix.)"""
    if not docs:
        return np.zeros(0, dtype=dtype)
    sep = eot_text(encoding)
    joined = sep.join(docs)
    if joined.count(sep) == len(docs) - 1:
        return _encode_array(encoding, joined, {sep}, dtype)
    return _joined([encoding.encode_ordinary(doc) for doc in docs], encoding.eot_token, dtype)


def _encode_array(encoding, text: str, allowed: set[str], dtype: np.dtype) -> np.ndarray:
    """tiktoken's encode straight into numpy (no list of ints), where it has encode_to_numpy."""
    to_numpy = getattr(encoding, "encode_to_numpy", None)
    if to_numpy is None:
        return np.array(encoding.encode(text, allowed_special=allowed, disallowed_special=()), dtype=dtype)
    try:
        ids = to_numpy(text, allowed_special=allowed, disallowed_special=())
    except UnicodeEncodeError:
        # lone surrogates (JSON "\ud800"): replaced, as tiktoken's encode and encode_ordinary do
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        ids = to_numpy(text, allowed_special=allowed, disallowed_special=())
    return ids.astype(dtype)


def _joined(ids: list[list[int]], eot: int, dtype: np.dtype) -> np.ndarray:
    """Documents' ids with end-of-text between them."""
    out: list[int] = []
    for i, doc in enumerate(ids):
        if i:
            out.append(eot)
        out.extend(doc)
    return np.array(out, dtype=dtype)


def _jobs(texts: Iterator[Job]) -> Iterator[Job]:
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
                assert isinstance(text, str), "JSON Lines ranges are for worker processes"
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


def encode_processes(tokenizer: BpeTokenizer, texts: Iterator[Job], dtype: np.dtype):
    # With threads, tiktoken's Python-side work (building int lists) and ours
    # (decoding, cutting, converting to numpy) share one GIL: on 2 cores
    # threads reached 22 MB/s, worker processes 30 MB/s, and the gap grows with
    # cores. At most 2 jobs per worker are in flight: bounded memory, ordered output.
    workers = BpeWorkers(tokenizer.encoding, min(os.cpu_count() or 1, 32), dtype)
    eot = np.array([tokenizer.eot_token], dtype=dtype)
    records_before = False   # whether the record file being written gave a record yet

    def ready(item) -> Iterator[np.ndarray]:
        nonlocal records_before
        if isinstance(item, np.ndarray):
            yield item
        elif isinstance(item, tuple):     # a RecordRange's (first, future)
            first, future = item
            answer = future.result()
            count = int.from_bytes(answer[:8], "little")
            records_before = records_before and not first
            if count:
                if records_before:        # end-of-text between records, not around empty ranges
                    yield eot
                yield np.frombuffer(answer, dtype=dtype, offset=8)
                records_before = True
        else:
            yield np.frombuffer(item.result(), dtype=dtype)

    try:
        pending: deque = deque()
        for job in _jobs(texts):
            if job is None:
                pending.append(eot)
            elif isinstance(job, RecordRange):
                pending.append((job.first, workers.submit(job)))
            else:
                for piece in [job] if isinstance(job, list) else _pieces(job):
                    pending.append(workers.submit(piece))
                    while len(pending) > 2 * workers.count:
                        yield from ready(pending.popleft())
            while len(pending) > 2 * workers.count:
                yield from ready(pending.popleft())
        while pending:
            yield from ready(pending.popleft())
    finally:
        workers.close()


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

    def submit(self, text: str | list[str] | RecordRange) -> Future[bytes]:
        """Ids of a text, or of a list of whole documents with end-of-text between them, or
        of a RecordRange's records (after 8 bytes: how many); a bad record raises DataError."""
        if isinstance(text, RecordRange):
            return self.threads.submit(self._encode, text.pack(), _RANGE)
        if isinstance(text, list):
            return self.threads.submit(self._encode, pack_documents(text), _DOCUMENTS)
        return self.threads.submit(self._encode, text.encode("utf-8"))

    def _encode(self, data: bytes, flags: int = 0) -> bytes:
        worker = self.idle.get()
        try:
            worker.stdin.write((len(data) | flags).to_bytes(8, "little") + data)
            worker.stdin.flush()
            size = int.from_bytes(_read_exact(worker, 8), "little")
            answer = _read_exact(worker, size & ~_FAILED)
            if size & _FAILED:
                raise DataError(answer.decode("utf-8", "replace"))
            return answer
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

        from llmtui.engine.data import records

        encoding, dtype = tiktoken.get_encoding(sys.argv[1]), np.dtype(sys.argv[2])
        inp, out = sys.stdin.buffer, sys.stdout.buffer
        while header := inp.read(8):
            size = int.from_bytes(header, "little")
            data = inp.read(size & ~(_DOCUMENTS | _RANGE))
            if size & _RANGE:        # JSON Lines: decoded here, end-of-text between records
                name, field, first_line, lines = RecordRange.unpack(data)
                try:
                    docs = records.range_texts(lines, first_line, name, field)
                except DataError as exc:   # a bad record: the parent raises it
                    message = str(exc).encode("utf-8")
                    out.write((len(message) | _FAILED).to_bytes(8, "little") + message)
                    out.flush()
                    continue
                ids = len(docs).to_bytes(8, "little") + encode_documents(encoding, docs, dtype).tobytes()
            elif size & _DOCUMENTS:  # documents, end-of-text between them
                ids = encode_documents(encoding, unpack_documents(data), dtype).tobytes()
            else:
                ids = np.array(encoding.encode_ordinary(data.decode("utf-8")), dtype=dtype).tobytes()
            out.write(len(ids).to_bytes(8, "little") + ids)
            out.flush()
    except Exception as exc:  # one line for the parent's error message
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())}\n")
        sys.exit(1)
