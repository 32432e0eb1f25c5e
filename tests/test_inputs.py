"""Input that crashed or was silently changed (issue 16): a temperature too small to sample
with, `--device cuda` on a torch without CUDA, prompt characters a char vocabulary lacks.
Each is refused with one line (exit 2) or said in one warning line, never a traceback."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import SHAKESPEARE, TINY
from llmtui import load_config, train
from llmtui.cli import main
from llmtui.engine.errors import ConfigError, UserError
from llmtui.engine.inference.generate import generate

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny char model trained on an ASCII Shakespeare slice (no 'é', no '€')."""
    root = tmp_path_factory.mktemp("inputs")
    corpus = root / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000])
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"',
                                     'run.name="i"', 'run.device="cpu"', f'data.source="{corpus}"',
                                     "training.max_steps=10", "eval.sample_tokens=0"])
    return train(cfg).run_dir


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def sampled(err: str) -> str:
    """What `llmtui sample` said on stderr before its last line, the checkpoint it used."""
    *before, last = err.strip().splitlines()
    assert last.startswith("sampling from "), err
    return "\n".join(before)


def test_sample_says_which_checkpoint_it_sampled_from(run_dir, capsys):
    code, out, err = cli(capsys, "sample", run_dir, "--tokens", "5", "--prompt", "ROMEO:")
    assert code == 0 and out.startswith("ROMEO:")
    assert err == f"sampling from {run_dir / 'last'} (step 10)\n"     # stdout holds the text alone
    code, out, err = cli(capsys, "sample", run_dir / "best", "--tokens", "5")
    assert code == 0 and err == f"sampling from {run_dir / 'best'} (step 10)\n"


def test_sample_takes_nanogpts_sample_flags(run_dir, tmp_path, capsys):
    """--start (FILE:path too), --max_new_tokens, --num_samples and --top_k, as nanoGPT's
    sample.py names them: the samples follow one another from one seed, between dashes."""
    (tmp_path / "prompt.txt").write_text("ROMEO:", encoding="utf-8")
    code, out, _ = cli(capsys, "sample", run_dir, "--start", f"FILE:{tmp_path / 'prompt.txt'}",
                       "--max_new_tokens", "8", "--num_samples", "3", "--top_k", "5", "--seed", "7")
    samples = out.split("---------------\n")
    assert code == 0 and len(samples) == 3 and all(s.startswith("ROMEO:") for s in samples)
    # the first is the one sample a single draw with the same seed gives
    code, one, _ = cli(capsys, "sample", run_dir, "--prompt", "ROMEO:", "--tokens", "8", "--top-k", "5",
                       "--seed", "7")
    assert code == 0 and one == samples[0]
    code, _, err = cli(capsys, "sample", run_dir, "--start", f"FILE:{tmp_path / 'missing.txt'}")
    assert code == 2 and "missing.txt" in one_line(err) and "Traceback" not in err


def test_a_temperature_too_small_to_sample_with_is_refused(run_dir, capsys):
    code, _, err = cli(capsys, "sample", run_dir, "--tokens", "5", "--temperature", "1e-45")
    line = one_line(err)
    assert code == 2 and "--temperature" in line and "0 (greedy)" in line and "0.01" in line
    assert cli(capsys, "sample", run_dir, "--tokens", "5", "--temperature", "0")[0] == 0   # greedy
    assert cli(capsys, "sample", run_dir, "--tokens", "5", "--temperature", "0.01")[0] == 0
    with pytest.raises(UserError, match="temperature"):
        generate(run_dir, "ROMEO:", max_tokens=5, temperature=1e-45)


def test_eval_temperature_in_a_config_is_bounded_by_the_schema(tiny, capsys):
    with pytest.raises(ConfigError) as caught:
        load_config("cpu", ["eval.temperature=1e-45"])
    assert caught.value.key == "eval.temperature" and "0.01" in str(caught.value)
    flags = sum((["-o", o] for o in tiny + ["eval.temperature=1e-45", "eval.sample_tokens=5"]), [])
    code, _, err = cli(capsys, "--run", "cpu", "--plain", *flags)
    assert code == 2 and "eval.temperature" in one_line(err)


def test_cuda_asked_of_a_torch_without_cuda_warns_and_runs_on_cpu(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out, err = cli(capsys, "sample", run_dir, "--tokens", "5", "--device", "cuda")
    line = one_line(sampled(err))
    assert code == 0 and out and line.startswith("llmtui: warning: ")
    assert "cannot use CUDA" in line and "running on CPU" in line
    data = tmp_path / "text.txt"
    data.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    code, _, err = cli(capsys, "eval", run_dir, "--data", data, "--device", "cuda:0")
    assert code == 0 and "cannot use CUDA" in one_line(err)


def test_prompt_characters_outside_the_char_vocabulary_are_named(run_dir, capsys):
    code, out, err = cli(capsys, "sample", run_dir, "--tokens", "5", "--prompt", "ROMEO: é€é")
    line = one_line(sampled(err))
    assert code == 0 and out.startswith("ROMEO: é€é")
    assert "dropped 3 character(s)" in line and "'é' (U+00E9)" in line and "'€' (U+20AC)" in line
    assert sampled(cli(capsys, "sample", run_dir, "--tokens", "5", "--prompt", "ROMEO:")[2]) == ""
    with pytest.warns(UserWarning, match=r"dropped 1 character\(s\).*'€'"):
        generate(run_dir, "ROMEO: €", max_tokens=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a prompt the vocabulary holds: no warning
        generate(run_dir, "ROMEO:", max_tokens=5)
