"""Optional trackers: a one-line error when their package is missing, real logging when present."""

import math
import sys
import types

import pytest

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.training.trainer import Trainer

pytestmark = pytest.mark.train


def test_missing_tracker_package_is_bad_input_before_training(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    code = main(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []),
                 "-o", 'logging.wandb_project="demo"'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "logging.wandb_project" in err and "pip install wandb" in err
    assert "\n" not in err
    assert not (tmp_path / "runs" / "tiny" / "last").exists()


def test_wandb_receives_train_and_eval_figures(tiny, monkeypatch):
    logged, finished = [], []

    class FakeRun:  # the wandb package boundary: what llmtui sends it
        def log(self, figures, step):
            logged.append((step, figures))

        def finish(self):
            finished.append(True)

    fake = types.SimpleNamespace(init=lambda **kw: FakeRun())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    Trainer(load_config("cpu", tiny + ['logging.wandb_project="demo"'])).run()
    steps_with_loss = [s for s, f in logged if "train/loss" in f]
    assert steps_with_loss == [5, 10, 15, 20, 25, 30]
    assert [s for s, f in logged if "eval/val_loss" in f] == [10, 20, 30]
    assert finished == [True]


def test_eval_every_n_epochs(tiny):
    result = Trainer(load_config("cpu", tiny + ["eval.every_n_epochs=0.001",
                                                "training.max_steps=20"])).run()
    events = read_jsonl(result.metrics_path)
    train_tokens = next(e for e in events if e["kind"] == "start")["train_tokens"]
    every = math.ceil(0.001 * math.ceil(train_tokens / 64))  # 64 tokens per step
    steps = [e["step"] for e in events if e["kind"] == "eval"]
    assert steps[0] == every and all(s % every == 0 or s == 20 for s in steps)
