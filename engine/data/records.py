"""Record formats: JSON Lines, JSON, CSV, Parquet and Hugging Face datasets.

Each record is one document. Its text is the record's `data.text_field`
("text" by default); a record without that field but with a chat-style
`messages` list (each message {"role": ..., "content": ...}) is joined with
CHAT_TEMPLATE: one "role: content" per message, separated by a newline. A
record whose text is empty is skipped. Anything else (a line that is not JSON,
a record without the field, a text that is not a string) stops the preparation
with one line naming the file and the line (or row).

Every reader streams: it holds one range of whole lines (JSON Lines), one
record (JSON, CSV) or one batch of rows (Parquet, datasets) at a time, so a
corpus far larger than RAM prepares in bounded memory. JSON Lines is cut into
ranges of lines (jsonl_ranges) before any JSON is decoded (range_texts), so
the BPE worker processes can decode them (engine.data.bpe_workers). `on_read(n)` is called as input bytes are consumed, for
progress. pyarrow and datasets are optional: a missing one is one line naming
the extra that installs it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from llmtui.engine.errors import DataError

# file suffix -> format
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HUB_PREFIX = "hf:"   # data.source = "hf:ORG/NAME": a dataset on the Hugging Face Hub
CHAT_TEMPLATE = "{role}: {content}"   # one line per message, messages joined with "\n"
# what decides the text of a record beyond its file: part of the prepared data's cache key
FORMAT_VERSION = 1
READ_BYTES = 1 << 20        # JSON/CSV input read per step
ROWS_PER_BATCH = 1024       # Parquet / datasets rows decoded per step
MAX_RECORD_BYTES = 256 << 20  # a JSON array element larger than this is refused (bounded memory)

OnRead = Callable[[int], None]


def file_format(path: Path) -> str | None:
    """The record format of a file, by its suffix; None for plain text."""
    return SUFFIXES.get(path.suffix.lower())


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `datasets`' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").is_file() and (path / "dataset_info.json").is_file()
                              or (path / "dataset_dict.json").is_file())


def require(module: str, extra: str, what: str) -> Any:
    """Import an optional package, or one line naming the extra that installs it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise DataError(f'{what} needs the {module} package: pip install "llmtui[{extra}]" '
                        f"(or pip install {module})") from None


# ---------------------------------------------------------------------------
# one record -> its text

def record_text(record: Any, field: str, where: str) -> str:
    """The document text of one record; `where` names it in errors ("FILE: line N")."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: a record must be an object with a {json.dumps(field)} field "
                        f"(found a JSON {_json_kind(record)}); set data.text_field to the field "
                        "that holds the text")
    value = record.get(field)
    if value is None and "messages" in record and field not in record:
        value = record["messages"]
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return chat_text(value, where)
    if value is None:
        fields = ", ".join(json.dumps(k) for k in list(record)[:8]) or "none"
        raise DataError(f"{where}: the record has no {json.dumps(field)} field (fields: {fields}); "
                        "set data.text_field to the field that holds the text")
    raise DataError(f"{where}: {json.dumps(field)} is a {_json_kind(value)}, not text (a string, or "
                    'a chat "messages" list)')


def chat_text(messages: list, where: str) -> str:
    """A chat as one document: CHAT_TEMPLATE per message, one message per line."""
    lines = []
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise DataError(f"{where}: message {i} must be an object with a \"role\" and a "
                            "\"content\" string")
        lines.append(CHAT_TEMPLATE.format(role=message["role"], content=message["content"]))
    return "\n".join(lines)


def _json_kind(value: Any) -> str:
    for typ, name in ((bool, "boolean"), (str, "string"), (int, "number"), (float, "number"),
                      (list, "list"), (dict, "object")):
        if isinstance(value, typ):
            return name
    return "null"


# ---------------------------------------------------------------------------
# files

def file_texts(path: Path, fmt: str, field: str, on_read: OnRead) -> Iterator[str]:
    """The non-empty document texts of a record file, in file order."""
    reader = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}[fmt]
    for text in reader(path, field, on_read):
        if text:
            yield text


_RAW_DECODE = json.JSONDecoder().raw_decode


def _record(text: str) -> Any:
    """One line's JSON value. The usual line (a value, then its newline) goes through the
    decoder's raw_decode alone: json.loads adds a type check and two whitespace scans per
    line, about a tenth of the main process's time on short records. Anything else (leading
    space, trailing garbage, bad JSON) gets json.loads's own answer and message."""
    try:
        value, end = _RAW_DECODE(text)
    except ValueError:
        return json.loads(text)
    if end != len(text) and text[end:].strip():
        return json.loads(text)          # raises "Extra data" as json.loads would
    return value


def _jsonl(path: Path, field: str, on_read: OnRead) -> Iterator[str]:
    for first_line, data in jsonl_ranges(path, on_read, READ_BYTES):
        yield from range_texts(data, first_line, path, field)


def is_json_lines(path: Path, fmt: str) -> bool:
    """Whether a record file is read line by line: JSON Lines, or a .json file that does not
    start with "[" (how many datasets ship their .json files)."""
    if fmt != "json":
        return fmt == "jsonl"
    with _open(path) as f:
        head = f.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return not head.startswith(b"[")


def jsonl_ranges(path: Path, on_read: OnRead, size: int) -> Iterator[tuple[int, bytes]]:
    """A JSON Lines file as ranges of whole lines of about `size` bytes (a longer line whole):
    (the number of the range's first line, its bytes). Only newlines are looked at here,
    so the JSON of each range can be decoded anywhere (range_texts), e.g. in the BPE worker
    processes while this process reads on."""
    carry, line = b"", 1
    with _open(path) as f:
        while True:
            block = f.read(size)
            on_read(len(block))
            if not block:
                if carry:
                    yield line, carry
                return
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            if not cut:            # no line end yet: one long line, read on
                carry = data
                continue
            yield line, data[:cut] if cut < len(data) else data
            line += data.count(b"\n", 0, cut)
            carry = data[cut:]


# a blank line (starting with one of the first, holding only the second) is skipped
_BLANK = {str: (" \t\r", " \t\r\n\x0b\x0c"), bytes: (b" \t\r", None)}   # None: bytes.strip()'s


def range_texts(data: bytes, first_line: int, path: Path | str, field: str) -> list[str]:
    """The non-empty document texts of whole JSON Lines (see jsonl_ranges) whose first is
    line `first_line` of `path`; a bad line stops with one line naming the file and line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None            # decoded line by line below, to name the bad one
    lines: list[Any] = text.split("\n") if text is not None else data.split(b"\n")
    blank_start, blank = _BLANK[str if text is not None else bytes]
    if lines and not lines[-1]:
        lines.pop()            # after the last newline
    texts: list[str] = []
    for i, line in enumerate(lines):
        number = first_line + i
        if not line or (line[:1] in blank_start and not line.strip(blank)):
            continue
        try:
            if isinstance(line, bytes):
                line = line.decode("utf-8-sig" if number == 1 else "utf-8")
            elif number == 1:
                line = line.removeprefix("\ufeff")
            record = _record(line)
        except UnicodeDecodeError:
            raise DataError(f"{path}: line {number}: not UTF-8 text") from None
        except ValueError as exc:
            raise DataError(f"{path}: line {number}: not valid JSON ({_json_message(exc)})") from None
        except RecursionError:
            raise DataError(f"{path}: line {number}: JSON nested too deeply") from None
        # the usual record ({"text": "..."}) without record_text's checks and message
        value = record.get(field) if type(record) is dict else None
        if type(value) is not str:
            value = record_text(record, field, f"{path}: line {number}")
        if value:
            texts.append(value)
    return texts


def _json(path: Path, field: str, on_read: OnRead) -> Iterator[str]:
    """A JSON array of records, parsed one element at a time; a .json file that does not
    start with "[" is read as JSON Lines (how many datasets ship their .json files)."""
    if is_json_lines(path, "json"):
        yield from _jsonl(path, field, on_read)
        return
    decoder = json.JSONDecoder()
    with _open(path) as raw:
        text = io.TextIOWrapper(io.BufferedReader(_Counted(raw, on_read), READ_BYTES), encoding="utf-8-sig")
        buf, pos, line_base, eof = "", 0, 1, False

        def more(size: int) -> None:
            nonlocal buf, pos, line_base, eof
            try:
                chunk = text.read(size)
            except UnicodeDecodeError:
                raise DataError(f"{path}: not UTF-8 text (near line {line_base + buf.count(chr(10))})") from None
            eof = not chunk
            line_base += buf.count("\n", 0, pos)   # drop what was consumed
            buf, pos = buf[pos:] + chunk, 0

        def skip_space() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or eof:
                    return
                more(READ_BYTES)

        def line() -> int:
            return line_base + buf.count("\n", 0, pos)

        def bad(what: str) -> DataError:
            return DataError(f"{path}: line {line()}: {what}")

        more(READ_BYTES)
        skip_space()
        pos += 1   # the "["
        skip_space()
        if pos < len(buf) and buf[pos] == "]":
            pos += 1
        else:
            while True:
                skip_space()
                start_line = line()
                while True:
                    try:
                        record, end = decoder.raw_decode(buf, pos)
                        break
                    except RecursionError:
                        raise bad("JSON nested too deeply") from None
                    except ValueError as exc:
                        # maybe only cut off by the end of what was read: read more (the
                        # reads double, so re-parsing a long element stays linear)
                        if eof or len(buf) - pos > MAX_RECORD_BYTES:
                            raise DataError(f"{path}: line {start_line}: not valid JSON "
                                            f"({_json_message(exc)})") from None
                        more(max(READ_BYTES, len(buf) - pos))
                pos = end
                yield record_text(record, field, f"{path}: line {start_line}")
                skip_space()
                if pos < len(buf) and buf[pos] == ",":
                    pos += 1
                    continue
                if pos < len(buf) and buf[pos] == "]":
                    pos += 1
                    break
                raise bad('expected "," or "]" after a record in the JSON array')
        skip_space()
        if pos < len(buf):
            raise bad("text after the end of the JSON array")


def _json_message(exc: ValueError) -> str:
    return getattr(exc, "msg", None) or str(exc).splitlines()[0]


def _csv(path: Path, field: str, on_read: OnRead) -> Iterator[str]:
    # A document may be far longer than csv's default field limit (128 KB).
    csv.field_size_limit(max(csv.field_size_limit(), (1 << 31) - 1))
    with _open(path) as raw:
        counted = _Counted(raw, on_read)
        text = io.TextIOWrapper(io.BufferedReader(counted, READ_BYTES), encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None:
                return
            if field not in header:
                shown = ", ".join(json.dumps(h) for h in header[:8])
                raise DataError(f"{path}: no column {json.dumps(field)} in the header (columns: {shown}); "
                                "set data.text_field to the column that holds the text")
            column = header.index(field)
            for row in reader:
                if not row:
                    continue
                if column >= len(row):
                    raise DataError(f"{path}: line {reader.line_num}: the row has {len(row)} values, "
                                    f"none for the column {json.dumps(field)}")
                yield row[column]
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text (near line {reader.line_num + 1})") from None
        except csv.Error as exc:
            raise DataError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None


class _Counted(io.RawIOBase):
    """A binary file that reports the bytes read through it."""

    def __init__(self, raw, on_read: OnRead):
        self.raw, self.on_read = raw, on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.on_read(n or 0)
        return n


def _parquet(path: Path, field: str, on_read: OnRead) -> Iterator[str]:
    pq = require("pyarrow.parquet", "parquet", f"reading {path.name} (Parquet)")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:   # pyarrow raises ArrowInvalid / OSError with its own message
        raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    column = _column(pf.schema_arrow.names, field, path)
    size, rows = path.stat().st_size, max(pf.metadata.num_rows, 1)
    done = 0
    try:
        for batch in pf.iter_batches(batch_size=ROWS_PER_BATCH, columns=[column]):
            yield from _column_texts(batch.column(0).to_pylist(), column, field, path, done)
            reported = size * done // rows
            done += batch.num_rows
            on_read(size * done // rows - reported)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read the rows after row {done} ({_first_line(exc)})") from None


def _column(names: list[str], field: str, where: Any) -> str:
    if field in names:
        return field
    if "messages" in names:
        return "messages"
    shown = ", ".join(json.dumps(n) for n in names[:8])
    raise DataError(f"{where}: no column {json.dumps(field)} (columns: {shown}); set data.text_field "
                    "to the column that holds the text")


def _column_texts(values: list, column: str, field: str, where: Any, first_row: int) -> Iterator[str]:
    for i, value in enumerate(values):
        if isinstance(value, str):
            yield value
        else:
            # a null, a number, or a messages list: judged as a record holding that value
            yield record_text({column: value} if value is not None else {}, field,
                              f"{where}: row {first_row + i + 1}")


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


# ---------------------------------------------------------------------------
# Hugging Face datasets

def load_dataset(spec: str, split: str, key: str):
    """The Dataset that `spec` names: "hf:ORG/NAME" (the Hub, through datasets' cache) or a
    folder written by save_to_disk; a DatasetDict gives its `split`."""
    shown = f"{key} = {json.dumps(spec)}"
    datasets = require("datasets", "datasets", f"{shown} (a Hugging Face dataset)")
    quiet = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()   # no bars over the app's screen
    try:
        if spec.startswith(HUB_PREFIX):
            name = spec[len(HUB_PREFIX):]
            try:
                ds = datasets.load_dataset(name, split=split)
            except Exception as exc:   # offline miss, unknown id, unknown split: many classes
                raise DataError(f"{shown}: cannot load split {json.dumps(split)} ({_first_line(exc)}); "
                                "with network access it is downloaded into datasets' cache "
                                f'(python -c "import datasets; datasets.load_dataset(\'{name}\')"), '
                                "or give a folder written by save_to_disk") from None
        else:
            try:
                ds = datasets.load_from_disk(spec)
            except Exception as exc:
                raise DataError(f"{shown}: not a dataset folder written by save_to_disk "
                                f"({_first_line(exc)})") from None
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"data.split = {json.dumps(split)}: {spec} has no such split; "
                                    f"expected one of {', '.join(ds)}")
                ds = ds[split]
    finally:
        if not quiet:
            datasets.utils.enable_progress_bars()
    return ds


def dataset_files(ds) -> list[Path]:
    """The Arrow files holding a loaded dataset (hashed to know when it changed)."""
    return [Path(f["filename"]) for f in ds.cache_files]


def dataset_texts(ds, field: str, name: str, on_read: OnRead, size: int) -> Iterator[str]:
    """The non-empty document texts of a dataset, in row order."""
    column = _column(list(ds.column_names), field, name)
    rows = max(len(ds), 1)
    done = 0
    for table in ds.select_columns([column]).with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
        for text in _column_texts(table.column(0).to_pylist(), column, field, name, done):
            if text:
                yield text
        reported = size * done // rows
        done += table.num_rows
        on_read(size * done // rows - reported)
