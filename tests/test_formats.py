"""Record formats (issue 19 item 6): JSON Lines, JSON, CSV, Parquet and Hugging Face datasets,
each record one document with the first special token between documents."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SHAKESPEARE, TIKTOKEN_CACHE
from llmtui.cli import main
from llmtui.engine.config.loading import load_config
from llmtui.engine.data import bpe_workers, records
from llmtui.engine.data import prepare as data
from llmtui.engine.data.prepare import check_sources, prepare_data
from llmtui.engine.data.tokenizers import BpeTokenizer, load_encoding
from llmtui.engine.errors import DataError

pytestmark = pytest.mark.train

DOCS = ["First Citizen:\nBefore we proceed any further, hear me speak.",
        "All:\nSpeak, speak.", "Ünïcödé ✓ 日本語", "x" * 50]


@pytest.fixture(autouse=True)
def gpt2_cache(monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))


def cfg(tmp_path, source, **settings):
    return load_config(None, data__source=str(source), data__prepared_dir=str(tmp_path / "prepared"),
                       **settings)


def all_ids(d) -> list[int]:
    return np.concatenate([d.train, d.val]).tolist()


def bpe_expected(tok, docs) -> list[int]:
    out = []
    for i, doc in enumerate(docs):
        out += ([tok.eot_token] if i else []) + tok.encode(doc)
    return out


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --- char vocabularies get the text, not the JSON ---------------------------

def test_jsonl_of_shakespeare_lines_has_the_vocabulary_of_the_txt(tmp_path):
    lines = SHAKESPEARE.read_text(encoding="utf-8").split("\n")
    src = write_jsonl(tmp_path / "shakespeare.jsonl", [{"text": line} for line in lines])
    from_jsonl = prepare_data(cfg(tmp_path, src))
    from_txt = prepare_data(cfg(tmp_path, SHAKESPEARE))
    assert from_jsonl.tokenizer.chars == from_txt.tokenizer.chars   # no { } " from the JSON syntax
    # records are joined with a newline (char has no end-of-text token); empty ones are skipped
    text = from_jsonl.tokenizer.decode(all_ids(from_jsonl))
    assert text == "\n".join(line for line in lines if line)


# --- each record a document, end-of-text between them -----------------------

def test_jsonl_records_are_documents_with_eot_between(tmp_path):
    src = write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "id": i} for i, t in enumerate(DOCS)])
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS)
    assert d.meta["records"] == {"version": records.FORMAT_VERSION, "text_field": "text",
                                 "template": records.CHAT_TEMPLATE}
    assert prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe")).reused
    # another text field is another preparation
    write_jsonl(src, [{"body": t} for t in DOCS[::-1]])
    other = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe", data__text_field="body"))
    assert not other.reused and all_ids(other) == bpe_expected(d.tokenizer, DOCS[::-1])


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_worker_processes_group_records_and_cut_long_ones(tmp_path, monkeypatch, suffix):
    # many short records grouped per job, a long record cut into pieces (CSV: records read
    # here; JSON Lines: ranges of lines decoded in the workers), batches of records split
    # across CHUNK_BYTES: the ids equal encoding each document alone
    base = (SHAKESPEARE.read_text(encoding="utf-8")[:20_000])
    docs = [base[i:i + 300] for i in range(0, 6000, 300)] + [base] + ["tail", base[:999]]
    if suffix == "csv":
        import csv
        with open(tmp_path / "many.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([["text"]] + [[t] for t in docs])
        src = tmp_path / "many.csv"
    else:
        src = write_jsonl(tmp_path / "many.jsonl", [{"text": t} for t in docs])
    monkeypatch.setattr(data, "BPE_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(data, "CHUNK_BYTES", 4000)
    monkeypatch.setattr(bpe_workers, "BPE_PIECE_CHARS", 1500)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, docs)


AWKWARD = ["", " ", "\n\n", "  leading", "trailing  ", "a\r\nb", "Ünïcödé ✓ 日本語 🙂", "\ud800 lone",
           "<|endoftext", "|>", "x" * 3000, "'s 's", " 123 456", "\t"]


@pytest.mark.parametrize("docs", [AWKWARD, AWKWARD + ["a <|endoftext|> b"], ["<|endoftext|>"], ["solo"], []],
                         ids=["awkward", "with-eot-text", "only-eot-text", "one", "none"])
def test_one_tiktoken_call_equals_encoding_each_record_alone(docs):
    # the workers encode a batch of records joined by "<|endoftext|>" in one call: the ids
    # must be those of each record alone (its text ordinary, even "<|endoftext|>") with eot between
    got = bpe_workers.encode_documents(load_encoding("gpt2"), docs, np.dtype(np.uint16))
    assert got.dtype == np.uint16 and got.tolist() == bpe_expected(BpeTokenizer("gpt2"), docs)


def test_json_lines_decoded_in_worker_processes_in_ranges(tmp_path, monkeypatch):
    # the worker processes decode ranges of whole lines: blank lines, a byte order mark,
    # CRLF ends, empty records (whole ranges of them), chats, a last line without newline,
    # and the end-of-text text inside a record give the ids of each document alone
    docs = DOCS + AWKWARD[3:] + ["a <|endoftext|> b"]
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    lines = [json.dumps({"text": t}) for t in docs[:4]] + ["", "  \t"]
    lines += [json.dumps({"text": ""})] * 40 + [json.dumps({"messages": chat})]
    lines += [json.dumps({"id": i, "text": t}, ensure_ascii=i % 2 == 0 or "\ud800" in t) for i, t in enumerate(docs[4:])]
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    monkeypatch.setattr(data, "BPE_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(data, "CHUNK_BYTES", 100)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    expected = docs[:4] + ["user: Hi\nassistant: Hello!"] + docs[4:]
    assert all_ids(d) == bpe_expected(d.tokenizer, expected)


def test_bad_record_in_a_worker_process_names_file_and_line(tmp_path, monkeypatch):
    # the worker's error comes back as the parent's one line (the messages themselves:
    # test_bad_jsonl_record_names_file_and_line, the same records.range_texts)
    bad, words = '{"text": "b"', "not valid JSON (Expecting ',' delimiter)"
    src = tmp_path / "bad.jsonl"
    src.write_text("".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(300)) + bad + "\n"
                   + json.dumps({"text": "after"}) + "\n", encoding="utf-8")
    monkeypatch.setattr(data, "BPE_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(data, "CHUNK_BYTES", 1000)      # line 301 is in the 7th range or so
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    with pytest.raises(DataError) as err:
        prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert str(err.value) == f"{src}: line 301: {words}"
    assert not (tmp_path / "prepared").exists()


def test_json_lines_ranges_keep_line_numbers_across_long_lines(tmp_path, monkeypatch):
    long = json.dumps({"text": "y" * 5000})
    src = tmp_path / "r.jsonl"
    src.write_bytes(("\n".join(['{"text": "a"}', long, "", '{"text": "b"}', long, '{"text": "c"}'])).encode())
    read: list[int] = []
    ranges = list(records.jsonl_ranges(src, read.append, 64))
    assert len(ranges) > 2 and sum(read) == src.stat().st_size
    assert b"".join(d for _, d in ranges) == src.read_bytes()
    assert [first for first, _ in ranges] == [1 + b"".join(d for _, d in ranges[:i]).count(b"\n")
                                              for i in range(len(ranges))]
    texts = [t for first, d in ranges for t in records.range_texts(d, first, src, "text")]
    assert texts == ["a", "y" * 5000, "b", "y" * 5000, "c"]
    with pytest.raises(DataError, match="r.jsonl: line 5: not UTF-8 text"):
        records.range_texts(b'{"text": "b"}\n\xff\n', 4, src, "text")
    monkeypatch.setattr(records, "READ_BYTES", 64)
    src.write_bytes(src.read_bytes() + b'\n{"text": 1}\n')
    with pytest.raises(DataError, match='r.jsonl: line 7: "text" is a number'):
        list(records.file_texts(src, "jsonl", "text", lambda n: None))


def test_trained_tokenizer_puts_its_first_special_token_between_records(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in DOCS * 20])
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="trained", tokenizer__vocab_size=300,
                         tokenizer__special_tokens=["<|eot|>", "<|pad|>"]))
    ids, eot = all_ids(d), d.tokenizer.eot_token
    assert eot == d.tokenizer.vocabulary()["<|eot|>"] and ids.count(eot) == len(DOCS) * 20 - 1
    assert d.tokenizer.decode(ids).split("<|eot|>") == DOCS * 20


# --- formats -----------------------------------------------------------------

def test_chat_messages_are_joined_with_the_template(tmp_path):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!\nHow can I help?"}]
    src = write_jsonl(tmp_path / "chat.jsonl", [{"messages": chat}, {"text": "plain"}])
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, ["user: Hi\nassistant: Hello!\nHow can I help?", "plain"])


def test_json_array_streams_across_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "READ_BYTES", 16)   # every record spans several reads
    src = tmp_path / "docs.json"
    src.write_text("\ufeff[\n" + ",\n".join(json.dumps({"text": t}, indent=2) for t in DOCS) + "\n]\n",
                   encoding="utf-8")
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS)


def test_json_file_of_lines_is_read_as_json_lines(tmp_path):
    src = write_jsonl(tmp_path / "docs.json", [{"text": t} for t in DOCS])
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS)


def test_csv_text_column(tmp_path):
    import csv
    src = tmp_path / "docs.csv"
    with open(src, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([i, t] for i, t in enumerate(DOCS + ["long, quoted \"text\"\n" * 20_000]))
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS + ["long, quoted \"text\"\n" * 20_000])


def test_parquet_text_and_messages_columns(tmp_path):
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": DOCS, "n": list(range(len(DOCS)))}), src, row_group_size=2)
    d = prepare_data(cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS)
    chats = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"messages": [[{"role": "user", "content": "a b"}],
                                          [{"role": "user", "content": "c"}, {"role": "bot", "content": "d"}]]}),
                   chats)
    c = prepare_data(cfg(tmp_path, chats, tokenizer__kind="bpe"))
    assert all_ids(c) == bpe_expected(c.tokenizer, ["user: a b", "user: c\nbot: d"])


def saved_dataset(path: Path, splits: dict[str, list[str]] | None = None, rows=DOCS) -> Path:
    import datasets
    if splits:
        datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": v}) for k, v in splits.items()}
                             ).save_to_disk(str(path))
    else:
        datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(path))
    return path


def test_dataset_folder_written_by_save_to_disk(tmp_path, capfd):
    folder = saved_dataset(tmp_path / "ds")
    capfd.readouterr()
    d = prepare_data(cfg(tmp_path, folder, tokenizer__kind="bpe"))
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS)
    assert capfd.readouterr().err == ""            # no progress bars of datasets' own
    assert prepare_data(cfg(tmp_path, folder, tokenizer__kind="bpe")).reused
    saved_dataset(folder, rows=DOCS[:2])               # saved again with other rows: prepared again
    again = prepare_data(cfg(tmp_path, folder, tokenizer__kind="bpe"))
    assert not again.reused and all_ids(again) == bpe_expected(d.tokenizer, DOCS[:2])


def test_dataset_dict_folder_takes_data_split(tmp_path):
    folder = saved_dataset(tmp_path / "dd", {"train": DOCS, "test": ["held out"]})
    d = prepare_data(cfg(tmp_path, folder, tokenizer__kind="bpe", data__split="test"))
    assert all_ids(d) == d.tokenizer.encode("held out")
    with pytest.raises(DataError, match='data.split = "dev": .* expected one of train, test'):
        prepare_data(cfg(tmp_path, folder, data__split="dev"))


def test_hub_dataset_through_datasets_load_dataset(tmp_path, monkeypatch):
    import datasets
    folder = saved_dataset(tmp_path / "cache", rows=DOCS)
    calls = []

    def load_dataset(name, split):   # the datasets package boundary: what llmtui asks of it
        calls.append((name, split))
        return datasets.load_from_disk(str(folder))   # a dataset backed by Arrow files, as the Hub's are
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    d = prepare_data(cfg(tmp_path, "hf:someone/tiny-docs", tokenizer__kind="bpe", data__split="validation"))
    assert calls == [("someone/tiny-docs", "validation")]
    assert all_ids(d) == bpe_expected(d.tokenizer, DOCS)
    assert d.directory.name.startswith("tiny-docs-gpt2-") and d.meta["sources"][0]["source"] == "hf:someone/tiny-docs"
    check_sources(cfg(tmp_path, "hf:someone/tiny-docs"))   # the cheap check loads nothing
    assert len(calls) == 1


def test_hub_dataset_not_in_cache_offline_is_one_line(tmp_path, monkeypatch):
    import datasets

    def offline(name, split):
        raise ConnectionError("Couldn't reach 'someone/missing' on the Hub (LocalEntryNotFoundError)\nmore")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        prepare_data(cfg(tmp_path, "hf:someone/missing"))
    message = str(err.value)
    assert message.startswith('data.source = "hf:someone/missing": cannot load split "train"')
    assert "datasets.load_dataset('someone/missing')" in message and "\n" not in message
    assert not (tmp_path / "prepared").exists()


# --- bad records and missing packages: one line, exit 2 ---------------------

@pytest.mark.parametrize("lines, words", [
    (['{"text": "a"}', '{"text": "b"', '{"text": "c"}'], "line 2: not valid JSON"),
    (['{"text": "a"}', '', '{"body": "b"}'], 'line 3: the record has no "text" field (fields: "body")'),
    (['{"text": 5}'], 'line 1: "text" is a number, not text'),
    (['["text"]'], "line 1: a record must be an object"),
    (['{"messages": [{"role": "user"}]}'], 'line 1: message 0 must be an object with a "role" and a "content"'),
])
def test_bad_jsonl_record_names_file_and_line(tmp_path, lines, words):
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        prepare_data(cfg(tmp_path, src))
    assert str(err.value).startswith(f"{src}: {words}")
    assert not (tmp_path / "prepared").exists()


def test_bad_records_in_json_csv_and_parquet(tmp_path):
    arr = tmp_path / "bad.json"
    arr.write_text('[\n{"text": "a"},\n{"text": "b"}\n{"text": "c"}\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json: line 4: expected \",\" or \"\]\""):
        prepare_data(cfg(tmp_path, arr))
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("id,body\n1,a\n", encoding="utf-8")
    with pytest.raises(DataError, match='bad.csv: no column "text" in the header'):
        prepare_data(cfg(tmp_path, csv_file))
    parquet = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["a", None]}), parquet)
    with pytest.raises(DataError, match='bad.parquet: row 2: the record has no "text" field'):
        prepare_data(cfg(tmp_path, parquet))


def test_bad_record_exits_2_with_one_line(tmp_path, capsys, tiny):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "a"}\n{"text": "b"\n', encoding="utf-8")
    code = main(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []),
                 "-o", f'data.source="{src}"', "-o", f'data.prepared_dir="{tmp_path / "p"}"'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith(f"{src}: line 2: not valid JSON (Expecting ',' delimiter)")
    assert "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("module, extra, source", [
    ("pyarrow.parquet", "parquet", "x.parquet"), ("datasets", "datasets", "hf:a/b")])
def test_missing_optional_package_names_the_extra(tmp_path, monkeypatch, module, extra, source):
    (tmp_path / "x.parquet").write_bytes(b"")
    monkeypatch.setitem(sys.modules, module, None)   # import -> ImportError
    for check in (check_sources, prepare_data):
        with pytest.raises(DataError) as err:
            check(cfg(tmp_path, tmp_path / source if source.endswith(".parquet") else source))
        assert f'pip install "llmtui[{extra}]"' in str(err.value) and "\n" not in str(err.value)
