"""The loop's interval bookkeeping (engine.training.meter): what a train log line
reports from the steps since the previous one. A scripted clock stands in for time."""

from __future__ import annotations

import pytest
import torch

from llmtui.engine.planning.load import CpuLoad
from llmtui.engine.training.meter import Interval, IntervalMeter, LossSum, mfu

CPU = torch.device("cpu")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FixedLoad:
    cores = 8

    def read(self) -> CpuLoad:
        return CpuLoad(busy=3.0, others=1.5, cores=8)


@pytest.mark.unit
def test_an_interval_reports_mean_loss_tokens_per_second_and_ms_per_step():
    clock = Clock()
    meter = IntervalMeter(CPU, clock=clock)
    meter.add(torch.tensor(6.0), micro_batches=2, tokens=1000)    # two micro-batches of loss 3
    meter.add(torch.tensor(2.0), micro_batches=2, tokens=1000)    # two of loss 1
    clock.now += 4.0
    interval = meter.read()
    assert interval.steps == 2 and interval.tokens == 2000
    assert interval.loss == pytest.approx(2.0)
    assert interval.seconds == pytest.approx(4.0)
    assert interval.tokens_per_sec == pytest.approx(500.0)
    assert interval.ms_per_step == pytest.approx(2000.0) and interval.step_seconds == pytest.approx(2.0)
    assert interval.load is None                    # no load meter: no figure


@pytest.mark.unit
def test_evaluations_checkpoints_and_pauses_are_not_training_time():
    clock = Clock()
    meter = IntervalMeter(CPU, clock=clock)
    meter.add(torch.tensor(1.0), micro_batches=1, tokens=100)
    clock.now += 10.0
    meter.exclude(6.0)       # an evaluation
    meter.exclude(3.0)       # a pause
    interval = meter.read()
    assert interval.seconds == pytest.approx(1.0) and interval.tokens_per_sec == pytest.approx(100.0)


@pytest.mark.unit
def test_restart_begins_a_new_interval_with_nothing_carried_over():
    clock = Clock()
    meter = IntervalMeter(CPU, clock=clock, load=FixedLoad())
    meter.add(torch.tensor(9.0), micro_batches=1, tokens=100)
    meter.exclude(1.0)
    clock.now += 5.0
    meter.read()
    meter.restart()
    meter.add(torch.tensor(4.0), micro_batches=4, tokens=300)
    clock.now += 2.0
    interval = meter.read()
    assert (interval.steps, interval.tokens, interval.loss) == (1, 300, pytest.approx(1.0))
    assert interval.seconds == pytest.approx(2.0)
    assert interval.load == CpuLoad(busy=3.0, others=1.5, cores=8)


@pytest.mark.unit
def test_a_step_after_an_out_of_memory_halving_counts_its_own_micro_batches():
    """A halving doubles the accumulation mid-interval: the mean is per micro-batch, so the
    loss reported stays the loss, not twice it."""
    meter = IntervalMeter(CPU, clock=Clock())
    meter.add(torch.tensor(2.0 * 1), micro_batches=1, tokens=64)   # before: 1 micro-batch of 2.0
    meter.add(torch.tensor(2.0 * 2), micro_batches=2, tokens=64)   # after: 2 of 2.0 each
    assert meter.read().loss == pytest.approx(2.0)


@pytest.mark.unit
def test_the_loss_is_reduced_across_processes_before_the_mean():
    total = LossSum(CPU)
    assert total.mean() is None                     # nothing added: no figure (an epoch of no steps)
    total.add(torch.tensor(6.0), 3)
    assert total.mean(lambda t: t / 2) == pytest.approx(1.0)
    assert total.mean() == pytest.approx(2.0)


@pytest.mark.unit
def test_reading_an_empty_interval_is_refused():
    with pytest.raises(ValueError):
        IntervalMeter(CPU, clock=Clock()).read()


@pytest.mark.unit
def test_mfu_is_the_share_of_the_peak_and_never_over_one():
    assert mfu(6e6, 1000.0, 1.2e10) == pytest.approx(0.5)
    assert mfu(6e6, 1000.0, 1e9) == 1.0
    assert Interval(steps=1, seconds=0.0, loss=1.0, tokens=10).tokens_per_sec == pytest.approx(1e10)
