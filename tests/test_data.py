import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from llmtui.engine.config.loading import load_config
from llmtui.engine.data import bpe_workers, corpus
from llmtui.engine.data import prepare as data
from llmtui.engine.data.batches import (
    BatchSampler,
    epoch_steps,
    eval_offsets,
    iter_eval_batches,
)
from llmtui.engine.data.prepare import prepare_data
from llmtui.engine.data.tokenizers import BpeTokenizer, CharTokenizer
from llmtui.engine.errors import DataError

pytestmark = pytest.mark.unit


TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


def make_cfg(tmp_path, source, **settings):
    cfg = load_config(None, data__source=str(source), data__prepared_dir=str(tmp_path / "prepared"),
                      **settings)
    return cfg


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- text sources ---------------------------------------------------------

def test_text_file_char(tmp_path):
    src = write(tmp_path / "corpus.md", TEXT)
    d = prepare_data(make_cfg(tmp_path, src))
    assert not d.reused
    assert isinstance(d.tokenizer, CharTokenizer) and d.vocab_size == len(set(TEXT))
    assert d.train.dtype == np.uint16 and isinstance(d.train, np.memmap)
    n = len(TEXT)
    assert len(d.train) == int(n * 0.9) and len(d.train) + len(d.val) == n
    assert d.tokenizer.decode(d.train.tolist()) + d.tokenizer.decode(d.val.tolist()) == TEXT
    meta = json.loads((d.directory / "meta.json").read_text())
    assert meta["train_tokens"] == len(d.train) and meta["dtype"] == "uint16"
    assert meta["tokenizer"]["kind"] == "char" and meta["vocab_size"] == d.vocab_size
    assert meta["sources"][0]["source"] == str(src.resolve())
    assert d.directory.parent == tmp_path / "prepared" and d.directory.name.startswith("corpus-char-")
    assert not [p for p in d.directory.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_builtin_source(tmp_path):
    d = prepare_data(make_cfg(tmp_path, "builtin"))
    assert len(d.train) + len(d.val) == len(corpus.builtin_text())
    assert d.directory.name.startswith("builtin-char-")


def test_folder_of_txt_files(tmp_path):
    write(tmp_path / "books" / "b.txt", "second\n")
    write(tmp_path / "books" / "a" / "z.txt", "first\n")
    write(tmp_path / "books" / "c.txt", "third\n")
    write(tmp_path / "books" / "notes.md", "ignored\n")
    d = prepare_data(make_cfg(tmp_path, tmp_path / "books", data__val_fraction=0.2))
    text = d.tokenizer.decode(np.concatenate([d.train, d.val]).tolist())
    assert text == "first\nsecond\nthird\n"  # sorted path order: a/z.txt, b.txt, c.txt


def test_source_and_sources_concatenate(tmp_path):
    a, b = write(tmp_path / "a.txt", "aaaa\n" * 10), write(tmp_path / "b.txt", "bbbb\n" * 10)
    cfg = make_cfg(tmp_path, a, data__sources=[str(b)])
    d = prepare_data(cfg)
    assert d.tokenizer.decode(np.concatenate([d.train, d.val]).tolist()) == "aaaa\n" * 10 + "bbbb\n" * 10


def test_bpe_documents_separated_by_eot(tmp_path, gpt2_cache):
    a, b = write(tmp_path / "a.txt", "Hello world"), write(tmp_path / "b.txt", "Goodbye world")
    d = prepare_data(make_cfg(tmp_path, a, data__sources=[str(b)], tokenizer__kind="bpe"))
    assert isinstance(d.tokenizer, BpeTokenizer) and d.vocab_size == 50257
    tok = d.tokenizer
    ids = np.concatenate([d.train, d.val]).tolist()
    assert ids == tok.encode("Hello world") + [tok.eot_token] + tok.encode("Goodbye world")


def test_uint32_when_vocab_exceeds_uint16(tmp_path):
    # 70,000 distinct characters: a char vocabulary too big for uint16 ids.
    chars = [chr(c) for c in range(0x4E00, 0x4E00 + 20_000)] + \
            [chr(c) for c in range(0x20000, 0x20000 + 50_000)]
    src = write(tmp_path / "wide.txt", "".join(chars) * 2)
    d = prepare_data(make_cfg(tmp_path, src))
    assert d.vocab_size == 70_000
    assert d.train.dtype == np.uint32
    assert d.tokenizer.decode(d.train[:5].tolist()) == "".join(chars[:5])


def test_reuse_when_unchanged_and_redo_when_changed(tmp_path):
    src = write(tmp_path / "c.txt", TEXT)
    cfg = make_cfg(tmp_path, src)
    first = prepare_data(cfg)
    stamp = (first.directory / "train.bin").stat().st_mtime_ns
    second = prepare_data(cfg)
    assert second.reused and second.directory == first.directory
    assert (second.directory / "train.bin").stat().st_mtime_ns == stamp
    assert second.fingerprint == first.fingerprint

    write(src, TEXT + "Zebra!\n")
    third = prepare_data(cfg)
    assert not third.reused and third.directory == first.directory
    assert len(third.train) + len(third.val) == len(TEXT) + 7
    assert "Z" in third.tokenizer.chars and third.fingerprint != first.fingerprint
    assert prepare_data(cfg).reused


def test_a_preparation_is_taken_again_without_hashing_until_something_changed(tmp_path, monkeypatch):
    """reuse_prepared (the app's data step hands its preparation to the trainer): the
    same data while the settings and files are the same, with no byte hashed again;
    None (prepare again) once a corpus file, a token file or a data setting changed."""
    from dataclasses import replace

    folder = tmp_path / "corpus"
    write(folder / "a.txt", TEXT)
    cfg = make_cfg(tmp_path, folder)
    first = prepare_data(cfg)
    hashed: list[str] = []
    real_hash = data._hash_doc
    monkeypatch.setattr(data, "_hash_doc", lambda doc, report: hashed.append(doc.name) or real_hash(doc, report))

    again = data.reuse_prepared(first, make_cfg(tmp_path, folder))
    assert again is not None and again.reused and again.train is first.train and not again.notes
    assert hashed == []
    assert data.reuse_prepared(first, make_cfg(tmp_path, folder, data__val_fraction=0.2)) is None
    assert data.reuse_prepared(first, make_cfg(tmp_path, folder, tokenizer__retrain=True)) is None
    write(folder / "b.txt", "another file\n")                  # a file more in the folder
    assert data.reuse_prepared(first, cfg) is None
    (folder / "b.txt").unlink()
    assert data.reuse_prepared(first, cfg) is not None
    os.utime(first.directory / "val.bin", ns=(0, 0))            # the token files were touched
    assert data.reuse_prepared(first, cfg) is None
    write(folder / "a.txt", TEXT)                               # the same text, written again
    assert data.reuse_prepared(prepare_data(cfg), cfg) is not None
    write(folder / "a.txt", TEXT.upper())                       # changed in place
    assert data.reuse_prepared(first, cfg) is None
    assert data.reuse_prepared(replace(first, stamp=None), cfg) is None   # no stamp: prepare


def test_redo_when_tokenizer_changes(tmp_path, gpt2_cache):
    src = write(tmp_path / "c.txt", TEXT)
    char = prepare_data(make_cfg(tmp_path, src))
    bpe = prepare_data(make_cfg(tmp_path, src, tokenizer__kind="bpe"))
    assert not bpe.reused and bpe.directory != char.directory
    assert len(bpe.train) + len(bpe.val) == len(bpe.tokenizer.encode(TEXT))
    assert prepare_data(make_cfg(tmp_path, src, tokenizer__kind="bpe")).reused
    assert prepare_data(make_cfg(tmp_path, src)).reused
    refrac = prepare_data(make_cfg(tmp_path, src, data__val_fraction=0.2))
    assert not refrac.reused and len(refrac.train) == int(len(TEXT) * 0.8)


def test_val_source(tmp_path):
    train_src = write(tmp_path / "train.txt", TEXT)
    val_src = write(tmp_path / "val.txt", "Speak! Zounds.\n" * 20)
    d = prepare_data(make_cfg(tmp_path, train_src, data__val_source=str(val_src)))
    assert len(d.train) == len(TEXT)  # no fraction held out
    assert d.tokenizer.decode(d.val.tolist()) == "Speak! Zounds.\n" * 20  # vocab covers val text
    assert d.meta["val_source"]["source"] == str(val_src.resolve())
    assert prepare_data(make_cfg(tmp_path, train_src, data__val_source=str(val_src))).reused


def test_progress_is_reported_and_rate_limited(tmp_path):
    src = write(tmp_path / "c.txt", TEXT)
    calls = []
    prepare_data(make_cfg(tmp_path, src), progress=lambda *a: calls.append(a))
    stages = [c[0] for c in calls]
    assert {"hash", "scan", "tokenize", "split"} <= set(stages)
    assert all(done <= total for _, done, total in calls)
    assert len(calls) < 20
    calls.clear()
    prepare_data(make_cfg(tmp_path, src), progress=lambda *a: calls.append(a))
    assert {c[0] for c in calls} == {"hash", "verify"}  # reused: only the checks


def test_crash_leaves_nothing_reusable(tmp_path, monkeypatch):
    src = write(tmp_path / "c.txt", TEXT)
    cfg = make_cfg(tmp_path, src)

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "_split_tail", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(cfg)
    assert not (tmp_path / "prepared").exists()       # not even the folder it made
    monkeypatch.undo()
    d = prepare_data(cfg)
    assert not d.reused and len(d.train) + len(d.val) == len(TEXT)


def test_truncated_prepared_file_is_not_reused(tmp_path):
    src = write(tmp_path / "c.txt", TEXT)
    cfg = make_cfg(tmp_path, src)
    d = prepare_data(cfg)
    with open(d.directory / "train.bin", "r+b") as f:
        f.truncate(10)
    again = prepare_data(cfg)
    assert not again.reused and len(again.train) == len(d.train)


# --- streaming ------------------------------------------------------------

def test_streaming_char_matches_direct_encode(tmp_path, monkeypatch):
    base = corpus.builtin_text() + "\nÜnïcödé ✓ 日本語\n"
    text = base * (30_000_000 // len(base.encode()) + 1)  # ~30 MB
    src = tmp_path / "big.txt"
    src.write_bytes(text.encode())
    monkeypatch.setattr(data, "CHUNK_BYTES", 1 << 20)  # ~30 chunks, cuts inside multi-byte text
    d = prepare_data(make_cfg(tmp_path, src, data__val_fraction=0.01))
    direct = d.tokenizer.encode_array(text)
    assert len(d.train) + len(d.val) == len(direct) == len(text)
    assert np.array_equal(d.train, direct[:len(d.train)])
    assert np.array_equal(d.val, direct[len(d.train):])


def test_streaming_bpe_matches_direct_encode(tmp_path, monkeypatch, gpt2_cache):
    base = corpus.builtin_text() + "\nÜnïcödé ✓ 日本語  spaces\n\n\n"
    text = base * 4  # ~1.9 MB
    src = write(tmp_path / "big.txt", text)
    monkeypatch.setattr(data, "CHUNK_BYTES", 100_000)
    monkeypatch.setattr(bpe_workers, "BPE_PIECE_CHARS", 7_000)
    d = prepare_data(make_cfg(tmp_path, src, tokenizer__kind="bpe"))
    direct = d.tokenizer.encode(text)
    assert np.concatenate([d.train, d.val]).tolist() == direct


def test_bpe_worker_processes_keep_order(tmp_path, monkeypatch, gpt2_cache):
    # Big corpora are encoded by a pool of processes; force it on a small one.
    base = corpus.builtin_text()
    write(tmp_path / "docs" / "a.txt", base)
    write(tmp_path / "docs" / "b.txt", base[::-1])
    monkeypatch.setattr(data, "BPE_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(data, "CHUNK_BYTES", 50_000)
    monkeypatch.setattr(bpe_workers, "BPE_PIECE_CHARS", 5_000)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    d = prepare_data(make_cfg(tmp_path, tmp_path / "docs", tokenizer__kind="bpe"))
    tok = d.tokenizer
    expected = tok.encode(base) + [tok.eot_token] + tok.encode(base[::-1])
    assert np.concatenate([d.train, d.val]).tolist() == expected


def test_bpe_worker_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    workers = bpe_workers.BpeWorkers("no_such_encoding", 1, np.dtype(np.uint16))
    try:
        with pytest.raises(RuntimeError, match="BPE worker process failed.*no_such_encoding"):
            workers.submit("hello").result()
    finally:
        workers.close()


def test_cut_points_never_split_words():
    # After "word\n" before a letter, or before " letter" that follows a word;
    # never inside whitespace runs, whose BPE split depends on what follows.
    text = "alpha beta\ngamma  delta\n\n epsilon"
    assert [m.start() for m in bpe_workers._CUT.finditer(text)] == [5, 11]
    assert bpe_workers.cut_point(text, 0, len(text)) == 11
    assert bpe_workers.cut_point("x" * 100, 10, 100) == 100  # no safe point: cut at the end


# --- pre-tokenized sources ------------------------------------------------

def test_bin_with_meta_json(tmp_path):
    tokens = np.arange(1000, dtype=np.uint32) % 300
    tokens.tofile(tmp_path / "tokens.bin")
    chars = [chr(0x100 + i) for i in range(300)]
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint32", "vocab_size": 320, "chars": chars}))
    d = prepare_data(make_cfg(tmp_path, tmp_path / "tokens.bin"))
    assert d.train.dtype == np.uint32 and isinstance(d.train, np.memmap)
    assert d.vocab_size == 320 and d.tokenizer.vocab_size == 300  # meta may pad the vocabulary
    assert len(d.train) == 900 and np.array_equal(np.concatenate([d.train, d.val]), tokens)
    assert d.directory == tmp_path and d.reused
    assert not (tmp_path / "prepared").exists()  # nothing copied
    with pytest.raises(DataError, match="data.bin_dtype"):
        prepare_data(make_cfg(tmp_path, tmp_path / "tokens.bin", data__bin_dtype="uint16"))


def test_bin_dtype_default_and_char_vocab_meta(tmp_path):
    np.array([0, 1, 2, 1, 0] * 100, dtype=np.uint16).tofile(tmp_path / "x.bin")
    (tmp_path / "meta.json").write_text(json.dumps({"chars": ["a", "b", "c"]}))
    d = prepare_data(make_cfg(tmp_path, tmp_path / "x.bin"))
    assert d.train.dtype == np.uint16 and d.vocab_size == 3
    assert d.tokenizer.decode(d.train[:5].tolist()) == "abcba"


def test_our_prepared_dir_is_a_valid_bin_source(tmp_path):
    src = write(tmp_path / "c.txt", TEXT)
    first = prepare_data(make_cfg(tmp_path, src))
    d = prepare_data(make_cfg(tmp_path, first.directory / "train.bin"))  # train.bin + val.bin layout
    assert np.array_equal(d.train, first.train) and np.array_equal(d.val, first.val)
    assert d.tokenizer.chars == first.tokenizer.chars


def test_bin_without_a_vocabulary_is_read_as_bare_ids(tmp_path):
    """004 trains on token files alone: with nothing beside them to say what the ids spell,
    they are trained on as ids (the vocabulary their largest id + 1, or meta.json's
    vocab_size), and the front end is told so."""
    from llmtui.engine.data.tokenizers import IdTokenizer

    np.array([0, 3, 7, 2] * 50, dtype=np.uint16).tofile(tmp_path / "x.bin")
    with pytest.raises(DataError, match="meta.json") as err:   # a raw .bin alone: its dtype is a guess
        prepare_data(make_cfg(tmp_path, tmp_path / "x.bin"))
    assert str(tmp_path / "x.bin") in str(err.value)
    np.save(tmp_path / "x.npy", np.array([0, 3, 7, 2] * 50, dtype=np.uint16))
    d = prepare_data(make_cfg(tmp_path, tmp_path / "x.npy"))
    assert isinstance(d.tokenizer, IdTokenizer) and d.vocab_size == 8
    assert d.tokenizer.decode([7, 3]) == " 7 3" and d.tokenizer.encode("7 3") == [7, 3]
    assert any(str(tmp_path / "x.npy") in note and "no vocabulary" in note for note in d.notes)
    (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": 10}))
    assert prepare_data(make_cfg(tmp_path, tmp_path / "x.bin")).vocab_size == 10
    (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": 5}))
    with pytest.raises(DataError, match="token id 7"):
        prepare_data(make_cfg(tmp_path, tmp_path / "x.bin"))
    (tmp_path / "meta.json").write_text(json.dumps({"vocab_size": "many"}))
    with pytest.raises(DataError, match="vocab_size"):
        prepare_data(make_cfg(tmp_path, tmp_path / "x.bin"))


def test_npy_source_with_bpe_vocab(tmp_path, gpt2_cache):
    np.save(tmp_path / "train.npy", np.arange(2000, dtype=np.int32))
    np.save(tmp_path / "val.npy", np.arange(300, dtype=np.int32))
    d = prepare_data(make_cfg(tmp_path, tmp_path / "train.npy", tokenizer__kind="bpe"))
    assert len(d.train) == 2000 and len(d.val) == 300  # val.npy beside train.npy is used
    assert d.vocab_size == 50257 and isinstance(d.tokenizer, BpeTokenizer)
    assert isinstance(d.train, np.memmap)


def test_token_ids_outside_vocab(tmp_path):
    np.array([0, 5, 9], dtype=np.uint16).tofile(tmp_path / "x.bin")
    (tmp_path / "meta.json").write_text(json.dumps({"chars": "abcdef"}))
    with pytest.raises(DataError, match="token id 9"):
        prepare_data(make_cfg(tmp_path, tmp_path / "x.bin"))


def test_pretokenized_fingerprint_is_content_based(tmp_path):
    np.arange(500, dtype=np.uint16).tofile(tmp_path / "x.bin")
    (tmp_path / "meta.json").write_text(json.dumps({"chars": [chr(0x100 + i) for i in range(1000)]}))
    cfg = make_cfg(tmp_path, tmp_path / "x.bin")
    f1 = prepare_data(cfg).fingerprint
    assert prepare_data(cfg).fingerprint == f1
    np.arange(1, 501, dtype=np.uint16).tofile(tmp_path / "x.bin")
    assert prepare_data(cfg).fingerprint != f1


# --- errors ---------------------------------------------------------------

def test_missing_source(tmp_path):
    with pytest.raises(DataError, match=r'data.source = ".*nope.txt": no such file'):
        prepare_data(make_cfg(tmp_path, tmp_path / "nope.txt"))
    cfg = make_cfg(tmp_path, "builtin", data__sources=[str(tmp_path / "gone")])
    with pytest.raises(DataError, match=r"data.sources\[0\]"):
        prepare_data(cfg)
    with pytest.raises(DataError, match="data.val_source"):
        prepare_data(make_cfg(tmp_path, "builtin", data__val_source=str(tmp_path / "v.txt")))


def test_empty_folder_and_empty_file(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty" / "x.md", "not a txt")
    with pytest.raises(DataError, match="no .txt files") as err:
        prepare_data(make_cfg(tmp_path, tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(err.value)
    write(tmp_path / "blank.txt", "")
    with pytest.raises(DataError, match="empty"):
        prepare_data(make_cfg(tmp_path, tmp_path / "blank.txt"))


def test_mixing_text_and_tokens(tmp_path):
    np.zeros(10, dtype=np.uint16).tofile(tmp_path / "x.bin")
    with pytest.raises(DataError, match="cannot mix"):
        prepare_data(make_cfg(tmp_path, "builtin", data__sources=[str(tmp_path / "x.bin")]))


def test_not_utf8(tmp_path):
    (tmp_path / "bin.dat").write_bytes(b"hello\n\xff\xfe\x00 world")
    with pytest.raises(DataError, match="bin.dat: not UTF-8"):
        prepare_data(make_cfg(tmp_path, tmp_path / "bin.dat"))


def test_too_short_val_split(tmp_path):
    src = write(tmp_path / "tiny.txt", "abcdefghij" * 10)
    d = prepare_data(make_cfg(tmp_path, src))
    assert len(d.val) == 10
    with pytest.raises(DataError) as err:
        BatchSampler(d.val, block_size=64, batch_size=4, seed=0, split="val")
    msg = str(err.value)
    assert "val split has 10 tokens" in msg and "model.block_size = 64" in msg
    assert "data.val_fraction" in msg
    with pytest.raises(DataError, match="val split"):
        eval_offsets(len(d.val), 64, 4, 2)


# --- batches --------------------------------------------------------------

def tokens_1d(n=5000):
    return (np.arange(n) % 251).astype(np.uint16)


def test_batch_sampler_shapes_and_targets():
    toks = tokens_1d()
    x, y = BatchSampler(toks, block_size=16, batch_size=8, seed=1).next_batch()
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert x.is_contiguous() and y.is_contiguous()


def test_batch_sampler_offsets_cover_whole_range():
    toks = np.arange(11, dtype=np.uint16)  # block 10: the only window is offset 0
    x, y = BatchSampler(toks, block_size=10, batch_size=4, seed=3).next_batch()
    assert (x[:, 0] == 0).all() and (y[:, -1] == 10).all()
    toks = np.arange(40, dtype=np.uint16)
    s = BatchSampler(toks, block_size=8, batch_size=64, seed=0)
    firsts = {int(v) for _ in range(20) for v in s.next_batch()[0][:, 0]}
    assert firsts == set(range(0, 40 - 8))  # every start in [0, len - block - 1]


def test_batch_sampler_deterministic_and_independent_of_torch():
    toks = tokens_1d()
    a = BatchSampler(toks, 16, 4, seed=7)
    b = BatchSampler(toks, 16, 4, seed=7)
    torch.manual_seed(0)
    xa = [a.next_batch()[0] for _ in range(3)]
    torch.manual_seed(123)
    torch.rand(100)
    xb = [b.next_batch()[0] for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(xa, xb))
    c = BatchSampler(toks, 16, 4, seed=8)
    assert not torch.equal(c.next_batch()[0], xa[0])


def test_batch_sampler_state_dict_resume():
    toks = tokens_1d()
    s = BatchSampler(toks, 16, 4, seed=42)
    for _ in range(3):
        s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))  # must survive JSON
    expected = [s.next_batch() for _ in range(3)]
    r = BatchSampler(toks, 16, 4, seed=999)
    r.load_state_dict(state)
    assert r.batches_drawn == 3
    for (ex, ey), (gx, gy) in zip(expected, [r.next_batch() for _ in range(3)]):
        assert torch.equal(ex, gx) and torch.equal(ey, gy)
    with pytest.raises(DataError, match="data changed"):
        BatchSampler(tokens_1d(4000), 16, 4, seed=1).load_state_dict(state)


def test_eval_offsets_fixed_and_spread():
    offs = eval_offsets(10_000, block_size=32, batch_size=8, max_batches=5)
    again = eval_offsets(10_000, block_size=32, batch_size=8, max_batches=5)
    assert len(offs) == 5 and all(len(o) == 8 for o in offs)
    assert all(np.array_equal(a, b) for a, b in zip(offs, again))
    flat = np.concatenate(offs)
    assert flat[0] == 0 and flat[-1] == 10_000 - 33
    assert len(set(flat.tolist())) == 40
    gaps = np.diff(flat)
    assert gaps.min() >= gaps.max() - 1  # evenly spread
    # small split: fewer windows, all distinct, full batches
    small = eval_offsets(50, block_size=32, batch_size=4, max_batches=10)
    assert sum(len(o) for o in small) == 16 and all(len(o) == 4 for o in small)
    toks = tokens_1d(10_000)
    batches = list(iter_eval_batches(toks, offs, 32))
    assert len(batches) == 5
    x, y = batches[0]
    assert x.shape == (8, 32) and torch.equal(x[0], torch.from_numpy(toks[:32].astype(np.int64)))


def test_epoch_steps():
    cfg = load_config(None, training__batch_size=4, model__block_size=10, training__grad_accum_steps=2)
    # an epoch is every window of block_size (+1 target token) once, with room for an offset of
    # up to 9 tokens: (n - 10) // 10 windows
    assert epoch_steps(90, cfg) == 1          # 8 windows, 8 a step
    assert epoch_steps(100, cfg) == 2         # 9 windows
    assert epoch_steps(810, cfg) == 10
    assert epoch_steps(810, cfg, world_size=2) == 5
    assert epoch_steps(0, cfg) == 1
