"""The reference curve shipped with the cpu preset: it is found for the preset's recipe only,
it is what the preset really does on this machine, and the monitor draws it behind a run.

(The GPU presets ship none: a reference is measured on the hardware a preset is made for,
and this machine has no GPU.)"""

from __future__ import annotations

import asyncio

import pytest

from llmtui import load_config
from llmtui.engine.config.reference import recipe_fingerprint, reference_for
from llmtui.engine.training.events import EvalEvent
from llmtui.engine.training.trainer import Trainer

CHECKED_STEPS = (50, 100)


@pytest.mark.unit
def test_the_cpu_preset_ships_a_whole_run_as_its_reference():
    cfg = load_config("cpu")
    curve = reference_for(cfg)
    assert curve is not None and curve.preset == "cpu"
    steps = [step for step, _ in curve.points]
    assert steps == sorted(steps) and steps[-1] == cfg.training.max_steps
    assert all(step in steps for step in CHECKED_STEPS)
    losses = [loss for _, loss in curve.points]
    # it learned: from its first point (step 50, already well below the start's ~4.3) the char
    # loss falls by most of a nat more
    assert losses[-1] < losses[0] - 0.8
    assert "cores" in curve.machine and "torch" in curve.versions


@pytest.mark.unit
def test_only_the_same_recipe_gets_the_reference():
    """Where and how a run trains does not change its curve; what it trains does."""
    shipped = load_config("cpu")
    same = load_config("cpu", ['run.out_dir="elsewhere"', "run.threads=1", "eval.every_n_steps=10",
                               "checkpoint.every_n_steps=0", 'run.device="cpu"', "tokenizer.retrain=true"])
    assert recipe_fingerprint(same) == recipe_fingerprint(shipped) and reference_for(same) is not None
    for change in ("optimizer.learning_rate=1e-3", "model.n_layer=2", "training.max_steps=100",
                   'data.source="other.txt"', "run.seed=1"):
        assert reference_for(load_config("cpu", [change])) is None, change


@pytest.mark.train
def test_the_reference_is_what_the_preset_does_for_its_first_steps(tmp_path, shared_data_dir):
    """Train the preset as shipped (its own schedule: the run is stopped, not shortened) and
    compare its val loss at the first evaluations with the shipped curve: the same within
    noise (threads and kernels may round differently; a changed recipe is far off)."""
    cfg = load_config("cpu", [f'run.out_dir="{tmp_path}"', f'data.prepared_dir="{shared_data_dir}"',
                              "eval.every_n_steps=50", "checkpoint.every_n_steps=0", "training.save_best=false",
                              "eval.sample_tokens=0", 'run.device="cpu"'])
    shipped = dict(reference_for(cfg).points)
    measured: dict[int, float] = {}

    def listen(event):
        if isinstance(event, EvalEvent):
            measured[event.step] = event.val_loss
            if event.step >= CHECKED_STEPS[-1]:
                trainer.stop("enough")
    trainer = Trainer(cfg, listeners=[listen])
    trainer.run()
    for step in CHECKED_STEPS:
        assert abs(measured[step] - shipped[step]) <= 0.02 * shipped[step], (step, measured[step], shipped[step])


@pytest.mark.tui
def test_the_monitor_draws_the_reference_behind_the_run(tmp_path):
    from pilot import make_app, open_monitor, wait_for

    from fakes import scripted_factory
    from llmtui.tui.widgets.loss_chart import LossChart

    app = make_app(tmp_path, trainer_factory=scripted_factory())

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            chart = app.screen.query_one(LossChart)
            await wait_for(pilot, lambda: len(chart.reference) > 0, what="reference drawn")
            assert "cpu reference" in chart.reference_label
            edited = load_config("cpu", [f'run.out_dir="{tmp_path / "runs2"}"', "model.n_layer=2"])
            assert app.reference_curve(edited) is None

    asyncio.run(drive())
