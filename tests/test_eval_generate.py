"""`llmtui eval` (loss, perplexity, accuracy, bits per byte on any text or token file),
`llmtui sample --temperature 0` (greedy) and the Python API's evaluate / generate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SHAKESPEARE, TINY, shakespeare_text, shared_file
from llmtui import load_config, train
from llmtui.cli import main
from llmtui.engine.inference.generate import generate, stream
from llmtui.engine.training.loader import load_checkpoint_model

pytestmark = pytest.mark.train



def corpus_text() -> str:
    return shakespeare_text()[:20_000]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny char model trained on a Shakespeare slice (ASCII only)."""
    root = tmp_path_factory.mktemp("evalgen")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text())
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"',
                                     'run.name="e"', 'run.device="cpu"', f'data.source="{corpus}"',
                                     "training.max_steps=20", "eval.sample_tokens=0"])
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalbpe")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text())
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"',
                                     'run.name="b"', 'run.device="cpu"', f'data.source="{corpus}"',
                                     'tokenizer.kind="trained"', "tokenizer.vocab_size=300",
                                     "training.max_steps=10", "eval.sample_tokens=0"])
    return train(cfg).run_dir


def reference(loaded, ids: list[int]) -> tuple[float, int, int]:
    """Total nats and correct guesses, window by window, one window at a time: every
    token but the first predicted once, with the tokens before it in its window."""
    T = loaded.model.config.block_size
    nats, correct, count = 0.0, 0, 0
    for start in range(0, len(ids) - 1, T):
        window = ids[start:start + T + 1]
        x, y = torch.tensor([window[:-1]]), torch.tensor(window[1:])
        with torch.no_grad():
            logits = loaded.model(x, x)[0][0]
        nats += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(-1) == y).sum())
        count += len(y)
    return nats, correct, count


def eval_json(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_on_a_text_file_is_every_token_predicted_once(run_dir, tmp_path, capsys):
    text = shakespeare_text()[50_000:53_001]
    data = tmp_path / "held_out.txt"
    data.write_text(text)
    result = eval_json(capsys, str(run_dir), "--data", str(data))
    loaded = load_checkpoint_model(run_dir, "cpu")
    nats, correct, count = reference(loaded, loaded.tokenizer.encode(text))
    assert result["tokens"] == count == len(text) - 1
    assert result["bytes"] == len(text) - 1                      # ASCII, one byte per character
    assert result["loss"] == pytest.approx(nats / count, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(nats / count), rel=1e-5)
    assert result["accuracy"] == pytest.approx(correct / count)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / (len(text) - 1), rel=1e-5)
    short = eval_json(capsys, str(run_dir), "--data", str(data), "--max-tokens", "100")
    assert short["tokens"] == 99


def test_bits_per_byte_count_the_bytes_of_a_bpe_model_tokens(bpe_run, tmp_path, capsys):
    text = "Naïve café: ☃ " + shakespeare_text()[60_000:62_000]
    data = tmp_path / "held_out.txt"
    data.write_text(text, encoding="utf-8")
    result = eval_json(capsys, str(bpe_run), "--data", str(data))
    loaded = load_checkpoint_model(bpe_run, "cpu")
    ids = loaded.tokenizer.encode(text)
    first = len(loaded.tokenizer.decode(ids[:1]).encode("utf-8"))
    assert result["tokens"] == len(ids) - 1 < len(text) - 1        # fewer tokens than characters
    assert result["bytes"] == len(text.encode("utf-8")) - first
    nats, _, _ = reference(loaded, ids)
    assert result["bits_per_byte"] == pytest.approx(nats / math.log(2) / result["bytes"], rel=1e-5)


def test_eval_on_token_files(run_dir, tmp_path, capsys):
    loaded = load_checkpoint_model(run_dir, "cpu")
    ids = loaded.tokenizer.encode(corpus_text()[:1000])
    np.save(tmp_path / "tokens.npy", np.array(ids, dtype=np.int32))
    np.array(ids, dtype=np.uint16).tofile(tmp_path / "tokens.bin")
    text = tmp_path / "same.txt"
    text.write_text(corpus_text()[:1000])
    from_text = eval_json(capsys, str(run_dir), "--data", str(text))
    for name in ("tokens.npy", "tokens.bin"):
        got = eval_json(capsys, str(run_dir), "--data", str(tmp_path / name))
        assert got["tokens"] == from_text["tokens"] and got["bytes"] == from_text["bytes"]
        assert got["loss"] == pytest.approx(from_text["loss"], rel=1e-6)
    np.save(tmp_path / "bad.npy", np.array([1, 2, 9999], dtype=np.int32))
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err
    assert "token id 9999 is outside the checkpoint's vocabulary" in err and err.count("\n") == 1


def test_eval_reads_the_text_of_records_as_training_does(run_dir, bpe_run, tmp_path, capsys):
    """A JSONL of lines scores what the .txt of the same lines scores (a char vocabulary
    joins records with a newline, as training does): the records' text, not their JSON."""
    lines = [line for line in shakespeare_text()[50_000:53_000].splitlines() if line.strip()]
    txt, jsonl = tmp_path / "lines.txt", tmp_path / "lines.jsonl"
    txt.write_text("\n".join(lines))
    jsonl.write_text("".join(json.dumps({"text": line, "id": i}) + "\n" for i, line in enumerate(lines)))
    from_txt = eval_json(capsys, str(run_dir), "--data", str(txt))
    from_jsonl = eval_json(capsys, str(run_dir), "--data", str(jsonl))
    assert from_jsonl["tokens"] == from_txt["tokens"] and from_jsonl["bytes"] == from_txt["bytes"]
    assert from_jsonl["loss"] == pytest.approx(from_txt["loss"], rel=1e-6)
    assert from_jsonl["skipped_characters"] == 0          # no braces or quotes reached the model
    # another field, named on the command line
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"body": line}) + "\n" for line in lines))
    assert eval_json(capsys, str(run_dir), "--data", str(other), "--text-field", "body") == \
        dict(from_jsonl, data=str(other))
    # a BPE with an end-of-text token: that token between records, as in the prepared data
    result = eval_json(capsys, str(bpe_run), "--data", str(jsonl))
    loaded = load_checkpoint_model(bpe_run, "cpu")
    ids = []
    for i, line in enumerate(lines):
        ids += ([loaded.tokenizer.eot_token] if i else []) + loaded.tokenizer.encode(line)
    nats, _, count = reference(loaded, ids)
    assert result["tokens"] == count and result["loss"] == pytest.approx(nats / count, rel=1e-5)


def test_characters_a_char_vocabulary_lacks_are_skipped_or_refused(run_dir, tmp_path, capsys):
    data = tmp_path / "accents.txt"
    data.write_text("To be, or not to bé: that is the quéstion ☃", encoding="utf-8")
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(data), "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["skipped_characters"] == 3 and result["tokens"] == len(data.read_text()) - 3 - 1
    assert "skipped 3 character(s)" in err and "'é' (U+00E9)" in err
    assert main(["eval", str(run_dir), "--data", str(data), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 character(s) are not in the char vocabulary" in err


def test_eval_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, capsys):
    for argv, words in ((["--data", str(tmp_path / "missing.txt")], "no such file"),
                        (["--data", str(tmp_path)], "a folder; give one text or token file"),
                        (["--data", str(SHAKESPEARE), "--max-tokens", "1"], "--max-tokens"),
                        (["--data", str(SHAKESPEARE), "--max-tokens", "lots"], "--max-tokens")):
        capsys.readouterr()
        assert main(["eval", str(run_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["eval", str(tmp_path), "--data", str(SHAKESPEARE)]) == 2
    assert "no intact checkpoint" in capsys.readouterr().err


def test_eval_text_output_and_progress(run_dir, capsys, tmp_path):
    from llmtui import evaluate

    seen = []
    result = evaluate(run_dir, shared_file(SHAKESPEARE), max_tokens=3000, progress=lambda d, t: seen.append((d, t)))
    assert result.tokens == 2999 and seen and seen[-1][0] == seen[-1][1]
    # a file of a few hundred KB moves the progress bar several times on its way
    data = tmp_path / "part.txt"
    data.write_text(shakespeare_text()[:300_000])
    seen = []
    evaluate(run_dir, data, progress=lambda d, t: seen.append(d / t))
    assert len([f for f in seen if 0 < f < 1]) >= 3 and seen == sorted(seen) and seen[-1] == 1
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--data", str(SHAKESPEARE), "--max-tokens", "3000"]) == 0
    out = capsys.readouterr().out
    assert "2,999 tokens predicted" in out and f"bits per byte  {result.bits_per_byte:.4f}" in out


# --- generation -----------------------------------------------------------------

def test_temperature_zero_is_greedy(run_dir, capsys):
    loaded = load_checkpoint_model(run_dir, "cpu")
    ids = loaded.tokenizer.encode("ROMEO:")
    for _ in range(12):                       # the argmax continuation, by hand
        with torch.no_grad():
            logits, _ = loaded.model(torch.tensor([ids[-16:]]))
        ids.append(int(logits[0, -1].argmax()))
    expected = loaded.tokenizer.decode(ids)
    outs = set()
    for seed in ("1", "2"):                   # greedy does not depend on the seed
        capsys.readouterr()
        assert main(["sample", str(run_dir), "--prompt", "ROMEO:", "--tokens", "12",
                     "--temperature", "0", "--seed", seed]) == 0
        outs.add(capsys.readouterr().out)
    assert outs == {expected + "\n"}
    assert main(["sample", str(run_dir), "--temperature", "-1"]) == 2
    assert "--temperature" in capsys.readouterr().err


def test_generate_api_and_streaming_give_the_same_text(run_dir, capsys):
    from llmtui import generate

    text = generate(run_dir, "ROMEO:", max_tokens=30, temperature=0.8, seed=3)
    capsys.readouterr()
    assert main(["sample", str(run_dir), "--prompt", "ROMEO:", "--tokens", "30", "--seed", "3"]) == 0
    assert capsys.readouterr().out == "ROMEO:" + text + "\n"
    loaded = load_checkpoint_model(run_dir, "cpu")
    pieces = list(stream(loaded, "ROMEO:", max_tokens=30, temperature=0.8, seed=3))
    assert len(pieces) == 30 and "".join(pieces) == text       # one piece per token
    asked = []
    stopped = list(stream(loaded, "ROMEO:", max_tokens=1000, temperature=0,
                          stop=lambda: asked.append(1) or len(asked) >= 5))
    assert len(stopped) == 5


def test_streaming_decodes_only_the_new_tokens(run_dir):
    """Each token's text is decoded once, not the whole continuation again after every
    token (that made a long generation in the app quadratic)."""
    loaded = load_checkpoint_model(run_dir, "cpu")
    decoded = []
    real_decode = loaded.tokenizer.decode
    loaded.tokenizer.decode = lambda ids: decoded.append(len(ids)) or real_decode(ids)
    pieces = list(stream(loaded, "ROMEO:", max_tokens=300, temperature=1.0, seed=5))
    loaded.tokenizer.decode = real_decode
    assert len(pieces) == 300 and sum(decoded) <= 2 * 300
    assert "".join(pieces) == generate(run_dir, "ROMEO:", max_tokens=300, temperature=1.0, seed=5)


def test_streaming_holds_back_half_characters(bpe_run):
    """A byte-level BPE can split a character over tokens: no piece ends in U+FFFD
    while the character is completed by a later token, and the pieces join to the text."""
    loaded = load_checkpoint_model(bpe_run, "cpu")
    tok = loaded.tokenizer
    ids = tok.encode("☃")                      # three bytes: no merge covers them here
    assert len(ids) > 1

    class Scripted:
        config = loaded.model.config

        def parameters(self):
            return iter([torch.zeros(1)])

        def generate_tokens(self, idx, n, *args):
            for i in ids[:n]:
                yield torch.tensor([[i]])

    loaded.model = Scripted()
    pieces = list(stream(loaded, "x", max_tokens=len(ids)))
    assert pieces[:-1] == [""] * (len(ids) - 1) and pieces[-1] == "☃"

    # bytes that never make a character (a model may emit any) are shown after 4 tokens
    # as U+FFFD, not held back to the end of the generation
    ids = [tok.encode("☃")[0]] * 6 + tok.encode("☃")
    pieces = list(stream(loaded, "x", max_tokens=len(ids)))
    assert pieces[:3] == ["", "", ""] and pieces[3] == "\ufffd"
    assert "".join(pieces) == tok.decode(ids) and pieces[-1].endswith("☃")
