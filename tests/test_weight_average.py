"""training.ema_decay: a run evaluates, samples and saves an average of its weights, and
trains (and resumes) the weights themselves."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import read_jsonl
from llmtui import load_config
from llmtui.engine.training import evaluation
from llmtui.engine.training.snapshot import load_model_state
from llmtui.engine.training.trainer import Trainer
from llmtui.engine.training.weight_average import TRAIN_WEIGHTS, WeightAverage, trained_weights

RUN = ["training.max_steps=40", "logging.every_n_steps=1", "eval.every_n_steps=10",
       "checkpoint.every_n_steps=0", "training.ema_decay=0.9"]


def train_losses(run_dir) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_jsonl(run_dir / "metrics.jsonl") if e["kind"] == "train"}


def stopped_at(cfg, step: int) -> Trainer:
    """A run asked to stop once it logged `step` (like Ctrl-C): its `last` holds that step."""
    holder = {}

    def listener(event):
        if event.kind == "train" and event.step == step:
            holder["trainer"].stop("interrupted")
    trainer = holder["trainer"] = Trainer(cfg, listeners=[listener])
    assert trainer.run().stop_reason == "interrupted"
    return trainer


@pytest.mark.unit
def test_the_average_follows_the_weights_and_the_model_gets_its_weights_back():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update(step=0)       # min(0.5, 1/10): the average moves 90% of the way
    assert torch.allclose(average.average[0], torch.full((1, 2), 2.8))
    average.update(step=100)     # the decay itself from then on: half of the way
    assert torch.allclose(average.average[0], torch.full((1, 2), 2.9))
    with pytest.raises(RuntimeError), average.in_model():
        assert torch.equal(model.weight, torch.full((1, 2), 2.9))
        raise RuntimeError("an evaluation that fails")
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))
    assert torch.equal(average.model_state()["weight"], torch.full((1, 2), 2.9))
    assert torch.equal(average.train_weights()[TRAIN_WEIGHTS + "weight"], torch.full((1, 2), 3.0))


@pytest.mark.train
def test_the_checkpoint_model_is_the_average_the_run_evaluated(tiny):
    evals = []
    cfg = load_config("cpu", tiny + RUN)
    trainer = Trainer(cfg, listeners=[lambda e: evals.append(e) if e.kind == "eval" else None])
    trainer.run()
    last = trainer.run_dir / "last"
    average, state = load_file(last / "model.safetensors"), load_file(last / "state.safetensors")
    trained = trained_weights(state)
    assert trained.keys() == average.keys()
    assert any(not torch.equal(average[k], trained[k]) for k in average)

    # the model file, evaluated on the run's own windows, scores the run's last val loss;
    # the trained weights score something else
    setup = Trainer(load_config("cpu", tiny + RUN + ['run.name="probe"'])).setup()
    load_model_state(setup.raw_model, average, "average")
    assert evaluation.evaluate(setup, lambda d, t: None)["val_loss"] == evals[-1].val_loss
    load_model_state(setup.raw_model, trained, "trained")
    assert evaluation.evaluate(setup, lambda d, t: None)["val_loss"] != evals[-1].val_loss
    # and the best checkpoint holds the average that scored best
    load_model_state(setup.raw_model, load_file(trainer.run_dir / "best" / "model.safetensors"), "best")
    assert evaluation.evaluate(setup, lambda d, t: None)["val_loss"] == min(e.val_loss for e in evals)


@pytest.mark.train
@pytest.mark.parametrize("resumed_with", [0.9, 0.0])
def test_resume_continues_the_trained_weights_and_the_average_exactly(tiny, resumed_with):
    straight = Trainer(load_config("cpu", tiny + RUN + ['run.name="straight"']))
    straight.run()
    broken = load_config("cpu", tiny + RUN + ['run.name="broken"'])
    stopped_at(broken, 17)
    # the average changes nothing about training: resumed without it, the trained weights
    # (not the average the model file holds) go on training, step for step
    broken.training.ema_decay = resumed_with
    resumed = Trainer(broken, resume_from=True)
    resumed.run()
    assert train_losses(straight.run_dir) == train_losses(resumed.run_dir)
    if resumed_with:
        for name in ("model.safetensors", "state.safetensors"):
            assert (straight.run_dir / "last" / name).read_bytes() == \
                (resumed.run_dir / "last" / name).read_bytes(), name
        evals = lambda run: [(e["step"], e["val_loss"]) for e in read_jsonl(run / "metrics.jsonl")  # noqa: E731
                             if e["kind"] == "eval"]
        assert evals(straight.run_dir) == evals(resumed.run_dir)
