"""TensorBoard read back with tensorboard's own reader; W&B through a fake `wandb` module (the
package boundary): parameter count, elapsed time, and a resumed run continuing the same W&B run."""

import sys
import types

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import read_jsonl
from llmtui import load_config
from llmtui.engine.training.events import TrainEvent
from llmtui.engine.training.rundir import OWN_FILES
from llmtui.engine.training.trackers import SMOOTHING, WANDB_ID_FILE, TensorBoardLogger
from llmtui.engine.training.trainer import Trainer

pytestmark = pytest.mark.train


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def smoothed(losses: list[float]) -> list[float]:
    out, average = [], 0.0
    for n, loss in enumerate(losses, 1):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        out.append(average / (1 - SMOOTHING ** n))
    return out


def test_tensorboard_event_files_hold_train_eval_and_smoothed_loss(tiny, tmp_path):
    log_dir = tmp_path / "tb"
    result = Trainer(load_config("cpu", tiny + [f'logging.tensorboard_dir="{log_dir}"'])).run()
    found = scalars(log_dir)
    train = [(e["step"], e["loss"]) for e in read_jsonl(result.metrics_path) if e["kind"] == "train"]
    evals = [(e["step"], e["val_loss"]) for e in read_jsonl(result.metrics_path) if e["kind"] == "eval"]
    assert [s for s, _ in found["train/loss"]] == [s for s, _ in train] == [5, 10, 15, 20, 25, 30]
    assert [v for _, v in found["train/loss"]] == pytest.approx([v for _, v in train], rel=1e-6)
    assert [s for s, _ in found["eval/val_loss"]] == [10, 20, 30]
    assert [v for _, v in found["eval/val_loss"]] == pytest.approx([v for _, v in evals], rel=1e-6)
    assert [v for _, v in found["train/loss_smoothed"]] == pytest.approx(smoothed([v for _, v in train]),
                                                                         rel=1e-5)
    assert {"train/lr", "eval/val_perplexity", "eval/val_accuracy"} <= found.keys()


def train_event(step: int) -> TrainEvent:
    return TrainEvent(step=step, loss=5.0 - step / 100, lr=1e-3, grad_norm=1.0, tokens_per_sec=1.0,
                      ms_per_step=1.0, mfu=0.0, tokens_seen=step, max_steps=100)


@pytest.mark.parametrize("every, flushes, visible", [(0, 0, 0), (2, 2, 4), (1, 5, 5)])
def test_tensorboard_flush_every_n_train_records(tmp_path, every, flushes, visible):
    logger = TensorBoardLogger(str(tmp_path / "tb"), flush_every_n=every)
    calls, flush = [], logger.writer.flush
    logger.writer.flush = lambda: (calls.append(True), flush())   # SummaryWriter's flush, counted
    for step in range(1, 6):
        logger(train_event(step))
    try:
        assert len(calls) == flushes
        # before the writer closes, the reader sees at least what the flushes wrote
        # (TensorBoard's own writer thread may write more on its own: not asserted)
        assert len(scalars(tmp_path / "tb").get("train/loss", [])) >= visible
    finally:
        logger.writer.close()


class FakeWandb:
    """The wandb package boundary: what llmtui asks of it."""

    def __init__(self):
        self.inits, self.logged, self.finished = [], [], 0
        outer = self

        class Run:
            def log(self, figures, step):
                outer.logged.append((step, figures))

            def finish(self):
                outer.finished += 1
        self.module = types.SimpleNamespace(init=lambda **kw: (self.inits.append(kw), Run())[1])


def test_wandb_run_gets_parameters_elapsed_time_and_is_continued_on_resume(tiny, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake.module)
    overrides = tiny + ['logging.wandb_project="demo"', "checkpoint.every_n_steps=10"]
    first = Trainer(load_config("cpu", overrides)).run()
    start = next(e for e in read_jsonl(first.metrics_path) if e["kind"] == "start")
    (init,) = fake.inits
    run_id = (first.run_dir / WANDB_ID_FILE).read_text()
    assert init["id"] == run_id and init["resume"] == "allow" and init["project"] == "demo"
    assert init["config"]["n_params"] == start["n_params"] > 0
    assert init["config"]["n_params_non_embedding"] == start["n_params_non_embedding"]
    train_logs = [f for _, f in fake.logged if "train/loss" in f]
    elapsed = [f["train/elapsed_time"] for f in train_logs]
    assert len(elapsed) == 6 and elapsed == sorted(elapsed) and elapsed[0] >= 0
    assert all("train/loss_smoothed" in f for f in train_logs)

    # resumed (with more steps): the same W&B run goes on
    Trainer(load_config("cpu", overrides + ["training.max_steps=40"]), resume_from=True).run()
    assert len(fake.inits) == 2
    assert fake.inits[1]["id"] == run_id and fake.inits[1]["resume"] == "allow"
    assert max(step for step, _ in fake.logged) == 40 and fake.finished == 2

    # a new run started over in the same directory is a new W&B run
    Trainer(load_config("cpu", overrides), overwrite=True).run()
    assert fake.inits[2]["id"] != run_id
    assert (first.run_dir / WANDB_ID_FILE).read_text() == fake.inits[2]["id"]


def test_wandb_id_file_is_llmtui_s_own():
    assert WANDB_ID_FILE in OWN_FILES
