"""What `llmtui --run` prints (issue 18 item 3): units a reader knows, Muon's extra
FLOPs in words, and an ETA on the bar however slow the steps are."""

from __future__ import annotations

import dataclasses
import io
import sys
from types import SimpleNamespace

import pytest

from fakes import T0, scripted_events
from llmtui import load_config
from llmtui.engine.training.events import DoneEvent, PrepareEvent, TrainEvent
from llmtui.headless import PlainReporter, RichReporter, describe

pytestmark = pytest.mark.unit


def slow_run(max_steps: int = 200, upto: int = 60, seconds_per_step: float = 6.0) -> list:
    """A start, then a train event every 10 steps of 6 s: 60 s apart, as on a busy CPU."""
    start = scripted_events(max_steps=max_steps, upto=0)[0]
    events = [start]
    for step in range(10, upto + 1, 10):
        events.append(TrainEvent(step=step, time=T0 + step * seconds_per_step, loss=3.0, lr=1e-3,
                                 grad_norm=0.5, tokens_per_sec=128.0, ms_per_step=seconds_per_step * 1000,
                                 mfu=0.01, tokens_seen=step * 768, max_steps=max_steps, memory_rss_mb=300.0))
    return events


def with_trainer(reporter, cfg):
    reporter.lost.trainer = SimpleNamespace(cfg=cfg)   # as run_headless sets it
    return reporter


def test_the_start_lines_say_what_the_optimizers_flops_are():
    start = scripted_events(upto=0)[0]
    text = describe(dataclasses.replace(start, optimizer_flops_per_step=2_359_296_000))
    assert text.splitlines()[-1] == ("optimizer: Muon orthogonalizes each update (Newton-Schulz), "
                                     "2.36 GFLOP a step that mfu does not count")


def test_plain_data_preparation_names_the_stage_and_counts_bytes():
    out = io.StringIO()
    reporter = PlainReporter(stream=out, errors=io.StringIO())
    reporter(PrepareEvent(step=0, time=T0, stage="split", done=93026, total=93026))
    line = out.getvalue().strip()
    assert line == "preparing data: setting the val tokens apart 100% (90.8 of 90.8 KiB)"


def test_plain_data_preparation_says_a_stages_end_once():
    """A small corpus is hashed in one chunk: its progress and its end both say 100%,
    and the log said "reading the corpus 100%" twice."""
    out = io.StringIO()
    reporter = PlainReporter(stream=out, errors=io.StringIO())
    for stage in ("hash", "hash", "verify", "verify"):
        reporter(PrepareEvent(step=0, time=T0, stage=stage, done=4096, total=4096))
    assert out.getvalue().splitlines() == ["preparing data: reading the corpus 100% (4.0 of 4.0 KiB)",
                                           "preparing data: checking the prepared token files 100% "
                                           "(4.0 of 4.0 KiB)"]


def test_plain_train_lines_carry_the_runs_eta():
    out = io.StringIO()
    reporter = with_trainer(PlainReporter(stream=out, errors=io.StringIO()), load_config("cpu"))
    for e in slow_run():
        reporter(e)
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("step 60/200") and "6000.0 ms/step" in last
    # 140 steps at 6 s, and the evaluations left (none measured yet: they count nothing)
    assert last.endswith("| ETA ~14m00s")


def test_the_bar_shows_an_eta_and_the_step_time_when_steps_are_a_minute_apart(monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    reporter = with_trainer(RichReporter(), load_config("cpu"))
    try:
        for e in slow_run():
            reporter(e)
        rows = {}
        for width in (80, 200):
            table = reporter.progress.make_tasks_table(reporter.progress.tasks)
            console = Console(width=width, record=True, file=io.StringIO())
            console.print(table)
            rows[width] = console.export_text().rstrip("\n")
    finally:
        reporter.close()
    for row in rows.values():
        assert "-:--:--" not in row and "\n" not in row      # one line, even at 80 columns
        assert "ETA ~14m00s" in row or "ETA ~13m59s" in row
        assert "step 60/200" in row and "6,000 ms/step" in row


def test_the_bar_says_nothing_is_left_once_the_run_is_done(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    reporter = with_trainer(RichReporter(), load_config("cpu"))
    events = scripted_events(max_steps=300, upto=300)      # evaluations, then the last step's
    try:
        for e in events:
            reporter(e)
        reporter(DoneEvent(step=300, time=events[-1].time + 1, **DONE))
        task = reporter.progress.tasks[-1]
        assert task.fields["eta"] == 0.0
    finally:
        reporter.close()


DONE = dict(final_train_loss=1.7, final_val_loss=1.8, best_val_loss=1.8, training_time=21.0, steps=300,
            tokens_seen=300 * 768, stop_reason="max_steps", run_dir="r", last_checkpoint="r/last",
            best_checkpoint="r/best", metrics_path="r/metrics.jsonl", n_params=800_640, device="cpu",
            precision="fp32")
