"""Real epochs (001): with training.epochs each epoch visits every training window once,
in a shuffled order that resumes exactly; `Epoch i/N` lines, per-epoch checkpoints, and
the epoch in the metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.data.batches import EpochSampler
from llmtui.engine.training.events import TrainEvent
from llmtui.engine.training.trainer import Trainer


@pytest.mark.unit
def test_each_epoch_visits_every_window_once_in_a_new_order():
    tokens = np.arange(1001, dtype=np.uint16)
    sampler = EpochSampler(tokens, block_size=10, batch_size=7, seed=3)
    assert sampler.n_windows == 100
    starts = []
    while len(starts) < 300:
        x, _ = sampler.next_batch()
        starts.extend(int(v) for v in x[:, 0])
    epochs = [starts[i * 100:(i + 1) * 100] for i in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(0, 1000, 10))      # every window once
    assert epochs[0] != epochs[1] != epochs[2]                  # shuffled anew each epoch


@pytest.mark.unit
def test_the_ranks_share_each_epoch_without_overlap():
    tokens = np.arange(1001, dtype=np.uint16)
    seen = []
    for rank in range(3):
        sampler = EpochSampler(tokens, block_size=10, batch_size=1, seed=3, rank=rank, world_size=3)
        seen += [int(sampler.next_batch()[0][0, 0]) for _ in range(sampler.windows_per_epoch)]
    assert sorted(seen) == list(range(0, 1000, 10))


@pytest.mark.unit
def test_the_epoch_order_resumes_exactly():
    tokens = np.arange(5001, dtype=np.uint16)
    a = EpochSampler(tokens, block_size=10, batch_size=32, seed=1)
    for _ in range(20):                     # past the end of the first epoch (500 windows)
        a.next_batch()
    b = EpochSampler(tokens, block_size=10, batch_size=32, seed=1)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for _ in range(30):
        assert np.array_equal(a.next_batch()[0], b.next_batch()[0])


@pytest.mark.train
def test_epochs_print_epoch_lines_save_per_epoch_and_record_the_epoch(tiny, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(120)))
    args = ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), "--train-data", str(corpus),
            "-o", f'data.prepared_dir="{tmp_path / "prepared"}"', "--epochs", "3",
            "-o", "checkpoint.every_n_epochs=1", "-o", "eval.every_n_steps=1000"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for i in (1, 2, 3):
        assert f"Epoch {i}/3\nTrain loss: " in out
    run = tmp_path / "runs" / "tiny"
    records = read_jsonl(run / "metrics.jsonl")
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(e["val_loss"] is not None for e in epochs)      # evaluated at each epoch's end
    assert epochs[2]["train_loss"] < epochs[0]["train_loss"]
    trains = [r for r in records if r["kind"] == "train"]
    assert trains[-1]["epoch"] >= 3.0 and all("epoch" in r for r in trains)
    assert {"epoch_1", "epoch_2", "epoch_3"} <= {p.name for p in run.iterdir()}


@pytest.mark.train
def test_an_epoch_run_resumes_on_the_same_trajectory(tiny, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(120)))
    base = tiny + [f'data.source="{corpus}"', f'data.prepared_dir="{tmp_path / "prepared"}"',
                   "training.epochs=2", "logging.every_n_steps=1"]
    whole = Trainer(load_config("cpu", base + ['run.name="whole"'])).run()
    first = Trainer(load_config("cpu", base + ['run.name="split"']))
    stop_at = whole.steps * 3 // 4                 # in the second epoch
    first.subscribe(lambda e: isinstance(e, TrainEvent) and e.step == stop_at and first.stop())
    assert first.run().stop_reason == "stopped"
    split = Trainer(load_config("cpu", base + ['run.name="split"']), resume_from=True).run()

    def losses(path):
        return [(r["step"], r["loss"]) for r in read_jsonl(path) if r["kind"] == "train"]
    assert split.steps == whole.steps
    assert losses(whole.metrics_path)[-3:] == losses(split.metrics_path)[-3:]
