"""Source document 004's command: token .npy files with no vocabulary beside them, trained on
as bare ids; samples, prompts and evaluation in ids; export refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmtui.cli import main


@pytest.mark.train
def test_004s_command_trains_on_npy_token_files_alone(tiny, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "train.npy", rng.integers(0, 300, 20_000).astype(np.uint16))
    np.save(data / "val.npy", rng.integers(0, 300, 2_000).astype(np.uint16))
    over = sum((["-o", o] for o in tiny), [])
    args = ["--train_data", str(data / "train.npy"), "--val_data", str(data / "val.npy"), "--d_model", "32",
            "--num_heads", "2", "--d_ff", "64", "--num_layers", "1", "--batch_size", "4", "--max_steps", "6",
            "--device", "cpu", "--plain", *over]
    assert main(args) == 0, capsys.readouterr().err
    said = capsys.readouterr()
    assert "has no vocabulary beside it: training on its token ids as they are (vocabulary 300" in said.out + said.err
    run = tmp_path / "runs" / "tiny"
    assert json.loads((run / "last" / "tokenizer.json").read_text()) == {"kind": "ids", "vocab_size": 300}

    assert main(["sample", str(run), "--start", "5 17 299", "--tokens", "4", "--temperature", "0"]) == 0
    words = capsys.readouterr().out.split()
    assert words[:3] == ["5", "17", "299"] and len(words) == 7 and all(0 <= int(w) < 300 for w in words)
    assert main(["sample", str(run), "--start", "hello 5", "--tokens", "2"]) == 0
    assert "dropped 1 word(s) that are not token ids below 300 (first 'hello')" in capsys.readouterr().err

    assert main(["eval", str(run), "--data", str(data / "val.npy"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] > 0 and result["bits_per_byte"] is None and result["loss"] > 0

    for fmt in ("hf", "gguf"):
        assert main(["export", str(run), str(tmp_path / f"out-{fmt}"), "--format", fmt]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "bare token ids" in err
        assert not (tmp_path / f"out-{fmt}").exists()
    assert main(["runs", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "ids"


@pytest.mark.train
def test_004s_vocab_size_on_token_files_is_the_models_vocabulary(tiny, tmp_path, capsys):
    """`--vocab_size 512` with .npy token files: a 512-row embedding (ids up to 299 in it);
    below the largest id it is refused in one line; on text it stays the trained BPE's size."""
    from llmtui.engine.training.checkpoint import load

    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", rng.integers(0, 300, 20_000).astype(np.uint16))
    over = sum((["-o", o] for o in tiny), [])
    args = ["--train_data", str(tmp_path / "train.npy"), "--max_steps", "2", "--plain", *over]
    assert main(args + ["--vocab_size", "512"]) == 0, capsys.readouterr().err
    weights = load(tmp_path / "runs" / "tiny" / "last").model_state
    assert weights["transformer.wte.weight"].shape[0] == 512
    capsys.readouterr()
    assert main(args + ["--vocab_size", "256", "--overwrite"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]    # after the preset's one-line note
    assert error.startswith("llmtui: error: model.vocab_size = 256") and "300" in error

    from llmtui.cli import model_vocab_on_token_files
    text = tmp_path / "corpus.txt"
    text.write_text("some text " * 100)
    flags = [f'data.source="{text}"', "tokenizer.vocab_size=512"]
    assert model_vocab_on_token_files("cpu", [], flags) == flags      # the trained BPE's size
