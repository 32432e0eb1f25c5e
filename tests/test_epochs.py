"""Real epochs (001): with training.epochs each epoch visits every training window once,
in a shuffled order that resumes exactly; `Epoch i/N` lines, per-epoch checkpoints, and
the epoch in the metrics."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.data.batches import EpochSampler
from llmtui.engine.training.events import TrainEvent
from llmtui.engine.training.trainer import Trainer


@pytest.mark.unit
def test_each_epoch_visits_every_window_once_in_a_new_order_and_at_a_new_offset():
    tokens = np.arange(1001, dtype=np.uint16)
    sampler = EpochSampler(tokens, block_size=10, batch_size=7, seed=3)
    assert sampler.n_windows == 99          # one fewer than fit from token 0: room for the offset
    starts = []
    while len(starts) < 99 * 8:
        x, y = sampler.next_batch()
        assert np.array_equal(y[:, :-1], x[:, 1:])
        starts.extend(int(v) for v in x[:, 0])
    epochs = [starts[i * 99:(i + 1) * 99] for i in range(8)]
    offsets = set()
    for epoch in epochs:
        offset = epoch[0] % 10
        assert sorted(epoch) == list(range(offset, offset + 990, 10))   # every window once
        offsets.add(offset)
    assert len({tuple(e) for e in epochs}) == 8                           # shuffled anew each epoch
    assert len(offsets) > 3                  # the cuts move: no token always starts a window


@pytest.mark.unit
def test_a_split_barely_longer_than_the_context_still_makes_windows():
    tokens = np.arange(12, dtype=np.uint16)       # one window of 10 + 1 fits, with 1 token to spare
    sampler = EpochSampler(tokens, block_size=10, batch_size=4, seed=0)
    for _ in range(5):
        x, y = sampler.next_batch()
        assert x.shape == (4, 10) and int(y.max()) <= 11


@pytest.mark.unit
def test_a_state_saved_before_the_offsets_resumes_with_its_fixed_cuts():
    """Checkpoints of epoch runs written before the offsets existed hold no "offsets": their
    order goes on as it was (windows at multiples of the context, the same permutation)."""
    tokens = np.arange(1001, dtype=np.uint16)
    old = EpochSampler(tokens, block_size=10, batch_size=7, seed=3, offsets=False)
    assert old.n_windows == 100
    state = old.state_dict()
    del state["offsets"]
    first = [int(v) for v in old.next_batch()[0][:, 0]]
    resumed = EpochSampler(tokens, block_size=10, batch_size=7, seed=3)
    resumed.load_state_dict(state)
    assert [int(v) for v in resumed.next_batch()[0][:, 0]] == first
    expected = np.random.Generator(np.random.PCG64([3, 0])).permutation(100)[:7] * 10
    assert first == expected.tolist()


@pytest.mark.unit
def test_every_batch_holds_batch_size_windows_across_epoch_ends():
    tokens = np.arange(1001, dtype=np.uint16)
    sampler = EpochSampler(tokens, block_size=10, batch_size=7, seed=3)
    for _ in range(30):                     # 210 windows: two epoch ends crossed mid-batch
        x, y = sampler.next_batch()
        assert x.shape == y.shape == (7, 10)
    assert sampler.epoch == 2 and sampler.index == 210 - 2 * 99


@pytest.mark.unit
def test_the_ranks_share_each_epoch_without_overlap():
    tokens = np.arange(1001, dtype=np.uint16)
    seen = []
    for rank in range(3):
        sampler = EpochSampler(tokens, block_size=10, batch_size=1, seed=3, rank=rank, world_size=3)
        seen += [int(sampler.next_batch()[0][0, 0]) for _ in range(sampler.windows_per_epoch)]
    offset = seen[0] % 10                    # the ranks cut the epoch at the same offset
    assert sorted(seen) == list(range(offset, offset + 990, 10))


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
def test_a_max_steps_run_shuffles_passes_and_random_windows_stay_on_request(tiny):
    """training.sampling = "shuffle" (the default): a run of max_steps draws every window
    once before any window twice; "random" draws nanoGPT's random windows, with repeats."""
    def windows_of_one_pass(sampling):
        trainer = Trainer(load_config("cpu", tiny + [f'training.sampling="{sampling}"']))
        trainer.setup()
        sampler = trainer.setup_done.sampler
        # the split's positions in place of its tokens: each window's first token is where it starts
        sampler.tokens = np.arange(len(trainer.setup_done.data.train), dtype=np.int64)
        n = (len(sampler.tokens) - 16) // 16       # windows in a pass (context 16)
        starts = []
        while len(starts) < n:
            starts += [int(v) for v in np.asarray(sampler.next_batch()[0][:, 0])]
        return starts[:n], n

    shuffled, n = windows_of_one_pass("shuffle")
    assert len(set(shuffled)) == n and len({s % 16 for s in shuffled}) == 1
    drawn, _ = windows_of_one_pass("random")
    assert len(set(drawn)) < n          # with repeats (and at any offset)
    assert len({s % 16 for s in drawn}) > 1


@pytest.mark.train
def test_a_resume_goes_on_drawing_batches_as_its_checkpoint_did(tiny, tmp_path, capsys):
    """A run trained with random windows (as every run before training.sampling) and resumed
    with the default "shuffle" goes on with random windows, says so, and lands where the
    uninterrupted run does."""
    base = tiny + ["logging.every_n_steps=1"]
    random = ['training.sampling="random"']
    whole = Trainer(load_config("cpu", base + random + ['run.name="whole"'])).run()
    first = Trainer(load_config("cpu", base + random + ['run.name="split"']))
    first.subscribe(lambda e: isinstance(e, TrainEvent) and e.step == 12 and first.stop())
    assert first.run().stop_reason == "stopped"
    args = ["--run", "cpu", "--plain", "--resume", *sum((["-o", o] for o in base + ['run.name="split"']), [])]
    assert main(args) == 0
    out = capsys.readouterr()
    assert 'training.sampling = "random", and the resume goes on drawing them that way' in out.out + out.err

    def losses(path):
        return [(r["step"], r["loss"]) for r in read_jsonl(path) if r["kind"] == "train"]
    assert losses(whole.metrics_path)[-5:] == losses(tmp_path / "runs" / "split" / "metrics.jsonl")[-5:]


@pytest.mark.unit
def test_random_windows_cannot_count_epochs(capsys):
    code = main(["--run", "cpu", "--epochs", "2", "-o", 'training.sampling="random"'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "training.sampling" in err and "training.epochs" in err and '"shuffle"' in err


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
    # the last step may run a little into a 4th pass (steps are whole batches)
    assert re.search(r"\(3(\.0\d?)? epochs\); final train loss", out), out[-300:]
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


@pytest.mark.tui
def test_the_monitor_and_the_summary_show_the_epoch(tmp_path):
    """A run with training.epochs: the monitor's status line says which epoch it is in, the
    events list each finished epoch, and the summary says how many epochs were trained."""
    from pilot import make_app, run, screen_text, wait_for, wait_screen

    from fakes import ScriptedTrainer
    from llmtui.engine.training.events import EpochEvent, StartEvent, TrainEvent

    def events(run_dir):
        out = [StartEvent(step=0, run_dir=run_dir, device="cpu", precision="fp32", threads=2, n_params=1000,
                          n_params_non_embedding=900, vocab_size=65, max_steps=40, tokens_per_step=768,
                          effective_batch=12, world_size=1, train_tokens=10_000, val_tokens=1_000,
                          data_dir="data/x", data_reused=True, resumed_from=None, start_step=0)]
        for step in (10, 20, 30):
            out.append(TrainEvent(step=step, loss=3.0 - step / 100, lr=1e-3, grad_norm=1.0, tokens_per_sec=1e4,
                                  ms_per_step=10.0, mfu=0.1, tokens_seen=step * 768, max_steps=40,
                                  epoch=step / 20))
        out.append(EpochEvent(step=20, epoch=1, epochs=2.0, train_loss=2.9, val_loss=3.1))
        return out

    def factory(cfg, *, resume_from=None, overwrite=False, prepared=None):
        return ScriptedTrainer(cfg, events=events(str(tmp_path / "runs" / "ep")))

    app = make_app(tmp_path, trainer_factory=factory)

    async def drive():
        from llmtui import load_config
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"', "training.epochs=2"]))
            await wait_screen(pilot, "MonitorScreen")
            await wait_for(pilot, lambda: "epoch 1.50/2" in screen_text(app), what="the epoch")
            text = screen_text(app)
            assert "epoch 1/2" in text and "train loss 2.9000" in text, text

    run(drive())
    from rich.console import Console

    from fakes import done_event
    from llmtui.tui.screens.summary import summary_renderable
    console = Console(width=100, record=True)
    console.print(summary_renderable(done_event(steps=40, epoch=2.0, tokens_seen=1)))
    text = console.export_text()
    assert "epochs" in text and "2.00" in text
