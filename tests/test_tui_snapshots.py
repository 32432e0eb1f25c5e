"""Each screen's layout, fixed as an SVG snapshot (pytest-textual-snapshot).

Fake hardware (no GPU; one RTX 4060) and a fixed recommendation, a scripted
trainer with fixed event times and a fixed memory probe: nothing live, no
clock, no temporary paths. Regenerate after a deliberate layout change with
`pytest tests/test_tui_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import pytest
from pilot import wait_for
from textual.widgets import Input

from fakes import (
    fake_hardware_cpu_only,
    fake_hardware_rtx4060,
    fixed_memory_probe,
    fixed_recommendation,
    runs_dir_with_demo,
    scripted_factory,
)
from llmtui.tui.app import LlmtuiApp

pytestmark = pytest.mark.tui

BIG, SMALL, MEDIUM, LARGE = (100, 32), (80, 24), (100, 30), (160, 48)


def make_app(tmp_path, gpu: bool, **kwargs) -> LlmtuiApp:
    hw = fake_hardware_rtx4060() if gpu else fake_hardware_cpu_only()
    kwargs.setdefault("runs_dir", tmp_path / "empty-runs")
    return LlmtuiApp(hardware=hw, recommendation=fixed_recommendation(hw),
                     memory_probe=fixed_memory_probe, **kwargs)


def steady(app) -> None:
    """No blinking cursors in a snapshot."""
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def open_wizard(pilot, preset: str = "cpu"):
    app = pilot.app
    app.screen.open_preset(preset, app.recommendation.settings if preset == app.recommendation.preset
                           else None)
    await pilot.pause()


@pytest.mark.parametrize("gpu,size", [(False, BIG), (True, BIG), (True, SMALL)],
                         ids=["no-gpu-100x32", "rtx4060-100x32", "rtx4060-80x24"])
def test_hardware_screen(snap_compare, tmp_path, gpu, size):
    app = make_app(tmp_path, gpu, runs_dir=runs_dir_with_demo(tmp_path))

    async def before(pilot):
        await pilot.pause()
        steady(app)

    assert snap_compare(app, terminal_size=size, run_before=before)


def test_wizard(snap_compare, tmp_path):
    app = make_app(tmp_path, gpu=False)

    async def before(pilot):
        await open_wizard(pilot)
        steady(app)

    assert snap_compare(app, terminal_size=BIG, run_before=before)


def test_wizard_invalid_fields_80x24(snap_compare, tmp_path):
    app = make_app(tmp_path, gpu=True)

    async def before(pilot):
        await open_wizard(pilot, "rtx4060")
        wizard = app.screen
        wizard.query_one("#field-model-n_layer-control", Input).value = "0"
        await pilot.pause()
        wizard.query_one("#field-model-n_layer").scroll_visible(animate=False)   # below Start from
        await pilot.pause()
        steady(app)

    assert snap_compare(app, terminal_size=SMALL, run_before=before)


def test_data_step(snap_compare, tmp_path):
    app = make_app(tmp_path, gpu=False)

    async def before(pilot):
        await open_wizard(pilot)
        app.open_data_step()
        await pilot.pause()
        steady(app)

    assert snap_compare(app, terminal_size=BIG, run_before=before)


async def start_scripted(pilot, tmp_path):
    from llmtui.engine.config.loading import load_config

    app = pilot.app
    factory = app.trainer_factory
    app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"', 'run.name="demo"']))
    await wait_for(pilot, lambda: factory.made and factory.made[0].emitted.is_set(),
                   what="the scripted trainer's events")
    app.screen.poll()
    await pilot.pause()


@pytest.mark.parametrize("size", [SMALL, MEDIUM, LARGE], ids=["80x24", "100x30", "160x48"])
def test_monitor(snap_compare, tmp_path, size, monkeypatch):
    """Everything the monitor shows fits without scrolling, down to 80x24: every
    figure of the side panel, every key in the footer."""
    from fakes import T0

    monkeypatch.setattr("llmtui.tui.screens.monitor.wall_clock", lambda: T0 + 83.0)   # 1m23s elapsed
    app = make_app(tmp_path, gpu=False, trainer_factory=scripted_factory(), refresh_rate=60)

    async def before(pilot):
        await start_scripted(pilot, tmp_path)
        steady(app)

    assert snap_compare(app, terminal_size=size, run_before=before)


def test_summary(snap_compare, tmp_path):
    app = make_app(tmp_path, gpu=False, trainer_factory=scripted_factory(), refresh_rate=60)

    async def before(pilot):
        await start_scripted(pilot, tmp_path)
        monitor = app.screen
        app.training.stop()
        app.training.wait(10)
        monitor.poll()
        await pilot.pause()
        assert type(app.screen).__name__ == "SummaryScreen"
        steady(app)

    assert snap_compare(app, terminal_size=BIG, run_before=before)
