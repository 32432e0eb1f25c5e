"""tokenizer.kind = "trained": a byte-level BPE trained on the corpus (HF tokenizers), or
loaded from tokenizer.path; stored beside the data and in checkpoints; reused until
the corpus or the settings change; streamed, with progress, stoppable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shakespeare_text
from llmtui.engine.config.loading import load_config
from llmtui.engine.data import bpe_training, prepare
from llmtui.engine.data.prepare import prepare_data
from llmtui.engine.data.tokenizers import TrainedTokenizer, tokenizer_from_json
from llmtui.engine.errors import ConfigError, DataError, Interrupted


def corpus_text() -> str:
    return shakespeare_text()[:120_000]


def trained_cfg(tmp_path, source, *more):
    return load_config(None, [f'data.source="{source}"', f'data.prepared_dir="{tmp_path / "data"}"',
                              'tokenizer.kind="trained"', "tokenizer.vocab_size=400", *more])


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text() + "\nNaïve café, ☃ and 日本語 too.\n", encoding="utf-8")
    return path


# --- config --------------------------------------------------------------

@pytest.mark.train
def test_vocab_size_must_hold_the_bytes_and_the_special_tokens():
    with pytest.raises(ConfigError) as err:
        load_config(None, ['tokenizer.kind="trained"', "tokenizer.vocab_size=256"])
    e = err.value
    assert e.key == "tokenizer.vocab_size" and "tokenizer.special_tokens" in e.keys
    assert "256 byte tokens plus 1 special token(s); use at least 257" in str(e)
    load_config(None, ['tokenizer.kind="trained"', "tokenizer.vocab_size=256", "tokenizer.special_tokens=[]"])
    with pytest.raises(ConfigError, match="out of range"):
        load_config(None, ["tokenizer.vocab_size=255"])


@pytest.mark.train
@pytest.mark.parametrize("override, words", [
    ('tokenizer.special_tokens=["<a>", "<a>"]', "only once"),
    ('tokenizer.special_tokens=[" "]', "visible characters"),
])
def test_special_tokens_are_checked(override, words):
    with pytest.raises(ConfigError, match=words) as err:
        load_config(None, ['tokenizer.kind="trained"', override])
    assert err.value.key == "tokenizer.special_tokens"


@pytest.mark.unit
def test_a_tokenizer_path_needs_a_kind_that_reads_one():
    """trained reads a tokenizer.json, char an llmtui checkpoint's vocabulary; bpe names a
    tiktoken encoding and has no file."""
    with pytest.raises(ConfigError) as err:
        load_config(None, ['tokenizer.kind="bpe"', 'tokenizer.path="tok.json"'])
    assert err.value.keys == ("tokenizer.path", "tokenizer.kind")
    assert load_config(None, ['tokenizer.path="tok.json"']).tokenizer.kind == "char"


# --- training -------------------------------------------------------------

@pytest.mark.train
def test_train_on_the_corpus_round_trips_and_is_stored_beside_the_data(tmp_path, corpus):
    events = []
    data = prepare_data(trained_cfg(tmp_path, corpus), progress=lambda *e: events.append(e))
    tok = data.tokenizer
    assert isinstance(tok, TrainedTokenizer) and tok.kind == "trained"
    assert data.vocab_size == tok.vocab_size == 400
    assert tok.eot_token == 0 and tok.decode([0]) == "<|endoftext|>"
    sample = "ROMEO: Naïve café ☃ 日本語\n\n  spaces\tand tabs"
    assert tok.decode(tok.encode(sample)) == sample               # byte-level: nothing is unknown
    assert len(tok.encode("ROMEO: what")) < len("ROMEO: what")    # merges were learned
    assert "train tokenizer" in [stage for stage, _, _ in events]
    # the whole corpus, tokenized with the trained tokenizer, in the token files
    joined = np.concatenate([np.asarray(data.train), np.asarray(data.val)])
    assert tok.decode(joined.tolist()) == corpus.read_text(encoding="utf-8")
    # beside the data: the HF tokenizer.json itself, and in meta.json
    beside = json.loads((data.directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert beside == tok.hf_json
    meta = json.loads((data.directory / "meta.json").read_text())
    assert meta["trained"] == {"vocab_size": 400, "special_tokens": ["<|endoftext|>"]}
    assert tokenizer_from_json(meta["tokenizer"]).fingerprint() == tok.fingerprint()


@pytest.mark.unit
def test_the_end_of_text_token_separates_documents(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text(corpus_text()[:30_000])
    (folder / "b.txt").write_text(corpus_text()[30_000:60_000])
    data = prepare_data(trained_cfg(tmp_path, folder, "data.val_fraction=0.01"))
    tokens = np.asarray(data.train)
    eot = data.tokenizer.eot_token
    assert int((tokens == eot).sum()) == 1
    cut = int(np.flatnonzero(tokens == eot)[0])
    assert data.tokenizer.decode(tokens[:cut].tolist()) == corpus_text()[:30_000]


@pytest.mark.unit
def test_reused_until_the_corpus_or_the_settings_change(tmp_path, corpus):
    first = prepare_data(trained_cfg(tmp_path, corpus))
    again = prepare_data(trained_cfg(tmp_path, corpus))
    assert again.reused and again.directory == first.directory
    assert again.tokenizer.fingerprint() == first.tokenizer.fingerprint()
    bigger = prepare_data(trained_cfg(tmp_path, corpus, "tokenizer.vocab_size=500"))
    assert not bigger.reused and bigger.directory != first.directory and bigger.vocab_size == 500
    special = prepare_data(trained_cfg(tmp_path, corpus, 'tokenizer.special_tokens=["<|eot|>", "<|pad|>"]'))
    assert not special.reused and special.tokenizer.decode([0, 1]) == "<|eot|><|pad|>"
    # switching back to earlier settings reuses their folder (the settings are part of its name)
    assert prepare_data(trained_cfg(tmp_path, corpus, "tokenizer.vocab_size=500")).reused
    corpus.write_text(corpus_text()[::-1], encoding="utf-8")
    changed = prepare_data(trained_cfg(tmp_path, corpus))
    assert not changed.reused and changed.tokenizer.fingerprint() != first.tokenizer.fingerprint()


@pytest.mark.unit
def test_training_streams_the_corpus_in_small_pieces(tmp_path, corpus, monkeypatch):
    """The trainer never sees the corpus as one string: pieces of PIECE_CHARS at most,
    read TRAIN_READ_BYTES at a time, with a progress report per read."""
    seen = []
    real = bpe_training._pieces

    def spy(texts):
        for piece in real(texts):
            seen.append(len(piece))
            yield piece

    monkeypatch.setattr(bpe_training, "_pieces", spy)
    monkeypatch.setattr(prepare, "TRAIN_READ_BYTES", 8 << 10)
    monkeypatch.setattr(prepare, "PROGRESS_INTERVAL", 0.0)   # every report, not a few a second
    reports = []
    prepare_data(trained_cfg(tmp_path, corpus), progress=lambda s, d, t: reports.append((s, d)))
    assert max(seen) <= bpe_training.PIECE_CHARS
    assert sum(seen) == len(corpus.read_text(encoding="utf-8"))
    training = [d for s, d in reports if s == "train tokenizer"]
    assert len(training) >= corpus.stat().st_size // (8 << 10)


@pytest.mark.unit
def test_a_stop_during_training_ends_preparation_and_leaves_nothing(tmp_path, corpus):
    calls = []

    def progress(stage, done, total):
        calls.append(stage)
        if stage == "train tokenizer":
            raise Interrupted("stopped during data preparation")

    with pytest.raises(Interrupted):
        prepare_data(trained_cfg(tmp_path, corpus), progress=progress)
    assert calls.count("train tokenizer") == 1
    assert not (tmp_path / "data").exists()   # no temp folder, no dataset, not the folder it made


# --- a given tokenizer.json -----------------------------------------------------

@pytest.mark.train
def test_tokenizer_path_loads_that_file_instead_of_training(tmp_path, corpus):
    trained = prepare_data(trained_cfg(tmp_path, corpus))
    given = trained.directory / "tokenizer.json"
    other = tmp_path / "other.txt"
    other.write_text(corpus_text()[5000:40_000])
    data = prepare_data(trained_cfg(tmp_path, other, f'tokenizer.path="{given}"', "tokenizer.vocab_size=9999"))
    assert data.tokenizer.hf_json == trained.tokenizer.hf_json
    assert data.vocab_size == 400 and data.directory != trained.directory
    assert data.tokenizer.decode(np.asarray(data.train).tolist()).startswith(corpus_text()[5000:5100])


@pytest.mark.train
def test_bad_tokenizer_files_are_one_line_errors(tmp_path, corpus):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError) as err:
        prepare_data(trained_cfg(tmp_path, corpus, f'tokenizer.path="{bad}"'))
    assert str(err.value).startswith(f'tokenizer.path = "{bad}": not valid JSON')
    bad.write_text('{"model": {"type": "NoSuchModel"}}')
    with pytest.raises(DataError, match="not a valid tokenizer.json"):
        prepare_data(trained_cfg(tmp_path, corpus, f'tokenizer.path="{bad}"'))
    trained = prepare_data(trained_cfg(tmp_path, corpus))
    with pytest.raises(DataError) as err:
        prepare_data(trained_cfg(tmp_path, corpus, f'tokenizer.path="{trained.directory / "tokenizer.json"}"',
                                 'tokenizer.special_tokens=["</s>"]'))
    assert str(err.value).startswith('tokenizer.special_tokens: "</s>" is not in the vocabulary')
    assert '"<|endoftext|>"' in str(err.value)


@pytest.mark.train
def test_headless_run_with_a_broken_tokenizer_json_exits_2_and_writes_nothing(tmp_path, corpus, capsys):
    from llmtui.cli import main

    bad = tmp_path / "tok.json"
    bad.write_text("[1, 2")
    code = main(["--run", "cpu", "--plain", "-o", f'data.source="{corpus}"',
                 "-o", f'run.out_dir="{tmp_path / "runs"}"', "-o", f'data.prepared_dir="{tmp_path / "data"}"',
                 "-o", 'tokenizer.kind="trained"', "-o", f'tokenizer.path="{bad}"'])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not valid JSON" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.train
def test_missing_tokenizer_path_is_refused_before_anything_is_written(tmp_path, corpus):
    from llmtui.engine.training.trainer import Trainer

    cfg = trained_cfg(tmp_path, corpus, f'tokenizer.path="{tmp_path / "nope.json"}"',
                      f'run.out_dir="{tmp_path / "runs"}"')
    with pytest.raises(DataError, match="no such file"):
        Trainer(cfg).run()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


# --- training with it, checkpoints, front ends ---------------------------------------

@pytest.mark.train
def test_checkpoints_carry_the_trained_tokenizer(tiny, tmp_path, corpus, capsys):
    from llmtui import train
    from llmtui.cli import main
    from llmtui.engine.errors import ResumeMismatch
    from llmtui.engine.training import checkpoint as ckpt

    over = tiny + [f'data.source="{corpus}"', 'tokenizer.kind="trained"', "tokenizer.vocab_size=300",
                   "training.max_steps=10", "eval.sample_tokens=0"]
    result = train(load_config("cpu", over))
    saved = ckpt.load(result.last_checkpoint).tokenizer
    tok = tokenizer_from_json(saved)
    assert isinstance(tok, TrainedTokenizer) and tok.vocab_size == 300
    assert main(["sample", str(result.run_dir), "--prompt", "ROMEO:", "--tokens", "5",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("ROMEO:")
    with pytest.raises(ResumeMismatch, match="tokenizer"):
        train(load_config("cpu", over + ["tokenizer.vocab_size=320", "training.max_steps=20"]),
              resume_from=True)


@pytest.mark.train
def test_headless_progress_shows_the_tokenizer_training(tiny, tmp_path, corpus, capsys):
    from llmtui.cli import main

    code = main(["--run", "cpu", "--plain", "--max-iters", "2", *[a for o in tiny for a in ("-o", o)],
                 "-o", f'data.source="{corpus}"', "-o", f'data.prepared_dir="{tmp_path / "fresh"}"',
                 "-o", 'tokenizer.kind="trained"', "-o", "tokenizer.vocab_size=300", "-o", "eval.sample_tokens=0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "preparing data: training the tokenizer 100%" in out
    assert "vocab 300" in out


@pytest.mark.train
def test_estimates_use_the_trained_vocabulary(tmp_path, corpus, capsys):
    from llmtui.cli import main
    from llmtui.engine.planning.sizing import vocab_for

    assert vocab_for(load_config(None, ['tokenizer.kind="trained"', "tokenizer.vocab_size=12345"])) == 12345
    trained = prepare_data(trained_cfg(tmp_path, corpus))
    given = load_config(None, ['tokenizer.kind="trained"', f'tokenizer.path="{trained.directory / "tokenizer.json"}"'])
    assert vocab_for(given) == 400
    # llmtui detect plans with the user's tokenizer on top of the preset
    assert main(["detect", "--json", "-o", 'tokenizer.kind="trained"', "-o", "tokenizer.vocab_size=16384"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate"]["vocab_size"] == 16384
    assert "tokenizer.vocab_size=16384" in " ".join(out["reasons"])
    assert main(["detect", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    tables = 1 if load_config("cpu").model.tie_embeddings else 2      # embedding, and an untied head
    width = load_config("cpu").model.n_embd
    assert out["estimate"]["n_params"] - plain["estimate"]["n_params"] == (16384 - 100) * width * tables
