"""Crafted or damaged checkpoints (issue 16): whatever a checkpoint holds, `sample`, `eval`,
`export` and `--resume` refuse it with one line and exit 2, or (given a run directory) fall
back to the next intact checkpoint with a "skipped damaged checkpoint" line; never a
traceback, a wrong resume, NaN output or an unbounded allocation.

Every case recomputes the manifest after the damage (`rehash`): the attacker's checkpoint
verifies, so what is caught is caught by the checks a manifest cannot replace.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine import fsutil
from llmtui.engine.inference.evaluate import evaluate
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training import loader as sampling
from llmtui.engine.training.trainer import Trainer

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[str]]:
    """A tiny run with checkpoints at steps 10, 20 and 30 (trained once for the module),
    and the overrides that resume it once copied to <root>/runs/t."""
    root = tmp_path_factory.mktemp("damaged")
    data = root / "prepared"
    overrides = TINY + [f'data.prepared_dir="{data}"', 'run.name="t"', 'run.device="cpu"',
                        "checkpoint.every_n_steps=10", "checkpoint.keep_last=5",
                        "training.save_best=false", "eval.sample_tokens=0"]
    cfg = load_config("cpu", overrides + [f'run.out_dir="{root / "runs"}"'])
    return Trainer(cfg).run().run_dir, overrides


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of the trained run whose newest checkpoint is step_30 (`last` removed)."""
    source, _ = trained
    copy = tmp_path / "runs" / "t"
    shutil.copytree(source, copy)
    shutil.rmtree(copy / "last")
    return copy


def rehash(path: Path) -> None:
    """Rewrite the manifest so the edited files verify: the crafted-checkpoint case."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": fsutil.sha256_file(path / name),
                                   "size": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def sampled(err: str, checkpoint: Path) -> str:
    """What `llmtui sample` said on stderr before its last line, which names the
    checkpoint it sampled from (asserted here)."""
    *before, last = err.strip().splitlines()
    assert last.startswith(f"sampling from {checkpoint} (step "), err
    return "\n".join(before)


def edit_state(path: Path, change) -> None:
    state = json.loads((path / "state.json").read_text())
    change(state)
    (path / "state.json").write_text(json.dumps(state))
    rehash(path)


def deeply_nested(path: Path) -> None:
    state = (path / "state.json").read_text().rstrip().removesuffix("}")
    (path / "state.json").write_text(state + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}")
    rehash(path)


def both_samplers(key, value):
    def change(state):
        for sampler in [state["sampler"], *state["samplers"]]:
            sampler[key] = value
    return change


def group(key, value):
    def change(state):
        state["optimizer"]["param_groups"][0][key] = value
    return change


# (damage, what the one line must name)
STATE_DAMAGE = {
    "deeply nested": (deeply_nested, "nested more than"),
    "betas a string": (lambda p: edit_state(p, group("betas", "x")), '"optimizer.param_groups[0].betas"'),
    "step 10**30": (lambda p: edit_state(p, lambda s: s.update(step=10**30, max_steps=10**30)), '"step"'),
    "lr NaN": (lambda p: edit_state(p, group("lr", float("nan"))), '"optimizer.param_groups[0].lr" = nan'),
    "lr 1e300": (lambda p: edit_state(p, group("lr", 1e300)), '"optimizer.param_groups[0].lr" = 1e+300'),
    "sampler state not a number": (lambda p: edit_state(p, both_samplers("state", "notanumber")),
                                   '"samplers[0].state"'),
    "batches_drawn 10**30": (lambda p: edit_state(p, both_samplers("batches_drawn", 10**30)),
                             '"samplers[0].batches_drawn"'),
    "world_size 10**6": (lambda p: edit_state(p, lambda s: s.update(world_size=10**6)), '"world_size"'),
    "sampler missing": (lambda p: edit_state(p, lambda s: s.pop("sampler")), '"sampler" is missing'),
}


@pytest.mark.parametrize("kind", list(STATE_DAMAGE))
def test_a_damaged_state_json_is_refused_naming_the_field_and_skipped(kind, run, capsys):
    damage, named = STATE_DAMAGE[kind]
    damage(run / "step_30")
    code, _, err = cli(capsys, "sample", run / "step_30", "--tokens", "3")
    line = one_line(err)
    assert code == 2 and "step_30/state.json" in line and named in line, line
    code, _, err = cli(capsys, "sample", run, "--tokens", "3")
    line = one_line(sampled(err, run / "step_20"))
    assert code == 0 and line.startswith("llmtui: warning: skipped damaged checkpoint: ")
    assert "step_30/state.json" in line and named in line


# (a sampler state that is not a number failed at restore already, and fell back)
@pytest.mark.parametrize("kind", ["deeply nested", "step 10**30", "lr NaN", "world_size 10**6",
                                  "sampler missing"])
def test_resume_skips_a_damaged_state_json_to_the_next_intact_checkpoint(kind, trained, run, capsys):
    STATE_DAMAGE[kind][0](run / "step_30")
    _, overrides = trained
    flags = sum((["-o", o] for o in overrides + [f'run.out_dir="{run.parent}"']), [])
    code, out, err = cli(capsys, "--run", "cpu", "--plain", *flags, "--max-iters", "40", "--resume")
    assert code == 0 and "Traceback" not in err, err
    assert "skipped damaged checkpoint" in out and "step_30/state.json" in out
    assert re.search(r"resumed from \S*step_20", out), out
    assert json.loads((run / "train_log.json").read_text())["steps"] == 40


def nan_weights(path: Path) -> str:
    weights = load_file(path / "model.safetensors")
    name = sorted(weights)[0]
    weights[name][0] = float("nan")
    save_file(weights, path / "model.safetensors")
    rehash(path)
    return name


def test_non_finite_weights_are_damage_for_sample_eval_and_export(run, tmp_path, capsys):
    name = nan_weights(run / "step_30")
    data = tmp_path / "text.txt"
    data.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    for command in (["sample", run / "step_30"], ["eval", run / "step_30", "--data", data],
                    ["export", run / "step_30", tmp_path / "out"]):
        code, out, err = cli(capsys, *command)
        line = one_line(err)
        assert code == 2 and name in line and "NaN" in line, (command, line)
    assert not (tmp_path / "out").exists()
    # a run directory: the next intact checkpoint, with the line that says so
    code, out, err = cli(capsys, "eval", run, "--data", data, "--json")
    assert code == 0 and "skipped damaged checkpoint" in one_line(err) and name in err
    result = json.loads(out)
    assert result["checkpoint"].endswith("step_20") and math.isfinite(result["loss"])


def wrong_shape(path: Path) -> None:
    weights = load_file(path / "model.safetensors")
    weights[sorted(weights)[0]] = torch.zeros(3)
    save_file(weights, path / "model.safetensors")
    rehash(path)


def broken_header(path: Path) -> None:
    data = bytearray((path / "model.safetensors").read_bytes())
    data[8:16] = b"{{{{{{{{"          # the JSON header right after its 8-byte length
    (path / "model.safetensors").write_bytes(bytes(data))
    rehash(path)


@pytest.mark.parametrize("damage", [wrong_shape, broken_header])
def test_eval_of_a_run_falls_back_past_weights_that_do_not_load(damage, run, tmp_path, capsys):
    damage(run / "step_30")
    data = tmp_path / "text.txt"
    data.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    code, out, err = cli(capsys, "eval", run, "--data", data, "--json")
    line = one_line(err)
    assert code == 0 and line.startswith("llmtui: warning: skipped damaged checkpoint: ")
    assert "step_30" in line and json.loads(out)["checkpoint"].endswith("step_20")
    result = evaluate(run, data)                       # the Python API says the same
    assert result.checkpoint.endswith("step_20") and any("skipped damaged" in w for w in result.warnings)


def test_a_config_claiming_a_huge_model_is_refused_before_allocation(run, monkeypatch, capsys):
    config = run / "step_30" / "config.toml"
    text = config.read_text()
    for key, value in (("n_layer", 96), ("n_embd", 16384), ("n_head", 128), ("vocab_size", 1_000_000)):
        text = re.sub(rf"(?m)^{key} = \d+", f"{key} = {value}", text)
    config.write_text(text)
    rehash(run / "step_30")
    real = sampling.GPT

    def allocate_only_small(config):          # the crafted model must never be built for real
        assert torch.get_default_device().type == "meta" or config.n_embd < 16384, "allocated it"
        return real(config)

    monkeypatch.setattr(sampling, "GPT", allocate_only_small)
    code, _, err = cli(capsys, "sample", run / "step_30", "--tokens", "3")
    line = one_line(err)
    assert code == 2 and "step_30" in line and "do not fit" in line
    code, _, err = cli(capsys, "sample", run, "--tokens", "3")
    assert code == 0 and "skipped damaged checkpoint" in one_line(sampled(err, run / "step_20"))


def test_a_model_far_beyond_free_memory_is_refused_unless_forced(run, monkeypatch, capsys):
    import psutil

    class Little:
        available = 1 << 20         # 1 MiB free: the tiny model's estimate is far beyond it
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Little)
    code, _, err = cli(capsys, "sample", run / "step_30", "--tokens", "3", "--device", "cpu")
    line = one_line(err)
    assert code == 2 and "will not fit" in line and "GiB" in line and "--force" in line
    code, _, err = cli(capsys, "sample", run / "step_30", "--tokens", "3", "--device", "cpu", "--force")
    assert code == 0 and sampled(err, run / "step_30") == ""


def test_a_run_whose_every_checkpoint_is_damaged_is_one_line(run, capsys):
    for path in ckpt.candidates(run):
        nan_weights(path)
    code, _, err = cli(capsys, "sample", run, "--tokens", "3")
    line = one_line(err)
    assert code == 2 and "no intact checkpoint" in line and "3 damaged" in line
