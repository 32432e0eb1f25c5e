"""The figures a new user expects (issue 18, "missing figures"): epochs in the wizard,
elapsed time and tokens in the monitor, the CPU load and a busy-machine warning, the
whole sample, the checkpoint `sample` used, the learning-rate jump of a resume,
other runs while one trains. Each test failed before its change."""

from __future__ import annotations

from pathlib import Path

import pytest
from pilot import make_app, quick_idle, run, screen_text, wait_for, wait_screen  # noqa: F401

from fakes import fake_hardware_cpu_only, fixed_recommendation, static_text


def recommended_app(tmp_path, **kwargs):
    hw = fake_hardware_cpu_only()
    return make_app(tmp_path, hardware=hw, recommendation=fixed_recommendation(hw), **kwargs)


def row(panel_text: str, label: str) -> str:
    """The value of a `label  value` row of a stat panel."""
    line = next(line for line in panel_text.splitlines() if line.startswith(label + " "))
    return line[len(label):].strip()


# ---------------------------------------------------------------------------
# epochs in the wizard

@pytest.mark.tui
def test_the_wizard_shows_the_epochs_the_steps_make_estimated_then_counted(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i} of a small corpus for the epochs figure\n" for i in range(3000)))
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nsource = "{text}"\nprepared_dir = "{tmp_path / "prep"}"\n'
                      '[tokenizer]\nkind = "char"\n[model]\nblock_size = 32\n'
                      '[training]\nbatch_size = 8\ngrad_accum_steps = 1\nmax_steps = 500\n')
    app = recommended_app(tmp_path)
    estimated = 500 * 8 * 32 / (text.stat().st_size * 0.9)

    async def drive():
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_file(str(config))
            await wait_screen(pilot, "WizardScreen")
            derived = static_text(app.screen.query_one("#wizard-derived"))
            assert row(derived, "epochs") == f"~{estimated:.2f} (est.)"
            await pilot.press("ctrl+n")
            await wait_screen(pilot, "DataScreen")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.session.data_is_current(), what="prepared")
            tokens = app.session.data_summary["train_tokens"]
            await pilot.press("escape")
            await wait_screen(pilot, "WizardScreen")
            derived = static_text(app.screen.query_one("#wizard-derived"))
            assert row(derived, "epochs") == f"{500 * 8 * 32 / tokens:.2f}"
            assert row(derived, "train set").startswith(f"{tokens / 1000:.2f}K tokens")

    run(drive())


# ---------------------------------------------------------------------------
# elapsed time, tokens seen and epochs in the monitor

@pytest.mark.tui
def test_the_monitor_shows_the_elapsed_time_the_tokens_seen_and_the_epochs_beside_the_bar(tmp_path, monkeypatch):
    from pilot import open_monitor

    from fakes import T0, scripted_factory

    monkeypatch.setattr("llmtui.tui.screens.monitor.wall_clock", lambda: T0 + 125.0)
    app = make_app(tmp_path, trainer_factory=scripted_factory())

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: monitor.step == 300, what="events")
            await pilot.pause()
            figures = static_text(monitor.query_one("#mon-figures"))
            # 300 steps x 768 tokens of a 1,003,854-token training split, 2m05s after the start
            assert figures == "2m05s elapsed · 230.40K tokens · epoch 0.23"
            line = next(line for line in screen_text(app).splitlines() if "%" in line)
            assert line.rstrip().endswith(figures)       # all of it shows at 80 columns
            app.training.stop()
            await wait_for(pilot, lambda: type(app.screen).__name__ == "SummaryScreen", what="summary")
            assert static_text(monitor.query_one("#mon-figures")).startswith("22s elapsed")  # stopped at the done record

    run(drive())
