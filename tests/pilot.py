"""Helpers for driving the real app with Textual's Pilot (shared by the TUI tests)."""

from __future__ import annotations

import asyncio
import time

import pytest


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(autouse=True)
def quick_idle(monkeypatch):
    """Pilot waits after each key until the process looks idle (up to 1 s); with a
    training thread busy in the same process it never is, so cap that wait."""
    import textual._wait

    real = textual._wait.wait_for_idle

    async def quick(min_sleep: float = 0.0, max_sleep: float = 1.0) -> None:
        await real(min_sleep, min(max_sleep, 0.05))

    monkeypatch.setattr("textual.pilot.wait_for_idle", quick)
    monkeypatch.setattr("textual.app.wait_for_idle", quick)


async def wait_for(pilot, condition, timeout: float = 60.0, what: str = "condition"):
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def click_button(pilot, selector: str):
    """Click a button as a user would: Textual ignores a click on a button still showing
    its previous press (0.2 s), which two clicks a pilot.pause() apart can hit."""
    button = pilot.app.screen.query_one(selector)
    await wait_for(pilot, lambda: not button.has_class("-active"), 5.0, f"{selector} released")
    await pilot.click(selector)


def screen_name(app) -> str:
    return type(app.screen).__name__


async def wait_screen(pilot, name: str, timeout: float = 60.0):
    """Wait until `name` is the current screen and has been composed."""
    app = pilot.app
    await wait_for(pilot, lambda: screen_name(app) == name and app.screen.is_mounted
                   and len(app.screen.children) > 0, timeout, f"screen {name}")
    await pilot.pause()


async def open_recommended(pilot):
    """From the hardware screen, once detection has answered, Use recommended: the wizard
    on the recommended preset; returns the wizard screen."""
    app = pilot.app
    await wait_for(pilot, lambda: app.recommendation is not None, what="recommendation")
    await pilot.pause()
    await pilot.click("#use-recommended")
    await wait_screen(pilot, "WizardScreen")
    return app.screen


async def open_config(pilot, config) -> None:
    """From the hardware screen, open the config file `config` in the wizard."""
    await wait_screen(pilot, "HardwareScreen")
    pilot.app.screen.open_file(str(config))
    await wait_screen(pilot, "WizardScreen")


async def open_data_step(pilot, config):
    """From the hardware screen, open `config` in the wizard and go on to its data step;
    returns the data screen."""
    await open_config(pilot, config)
    await pilot.press("ctrl+n")
    await wait_screen(pilot, "DataScreen")
    return pilot.app.screen


async def open_monitor(pilot, tmp_path):
    """From the hardware screen, start the cpu preset (runs under tmp_path/runs) and wait
    for the monitor; with a scripted trainer factory no real training runs."""
    from llmtui import load_config

    await wait_screen(pilot, "HardwareScreen")
    pilot.app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"']))
    await wait_screen(pilot, "MonitorScreen")
    return pilot.app.screen


async def set_field(pilot, screen, path: str, text: str):
    """Type into a wizard field the way a user would (clear, then the characters)."""
    from textual.widgets import Input, Select, Switch

    from llmtui.tui.widgets.config_field import ConfigField, field_id

    screen.show_section(path.split(".")[0])
    await pilot.pause()
    field = screen.query_one(f"#{field_id(path)}", ConfigField)
    control = field.control_widget
    if isinstance(control, Input):
        control.focus()
        if len(text) <= 12:  # typed key by key, as a user would
            control.value = ""
            await pilot.press(*list(text))
        else:
            control.value = text
    elif isinstance(control, Switch):
        control.value = text == "true"
    elif isinstance(control, Select):
        control.value = text
    await pilot.pause()
    return field


def make_app(tmp_path, **kwargs):
    from fakes import fake_hardware_cpu_only, fixed_memory_probe
    from llmtui.tui.app import LlmtuiApp

    kwargs.setdefault("hardware", fake_hardware_cpu_only())
    kwargs.setdefault("runs_dir", tmp_path / "runs")
    kwargs.setdefault("refresh_rate", 0.1)
    kwargs.setdefault("memory_probe", fixed_memory_probe)
    return LlmtuiApp(**kwargs)


def screen_text(app) -> str:
    """What the terminal shows now, line by line (the screenshot's text): markup that
    ate user text, border titles and toasts are seen as a user sees them."""
    import html
    import re

    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text[^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), html.unescape(m.group(3))))
    return "\n".join("".join(t for _, t in sorted(row)).replace("\xa0", " ") for _, row in sorted(rows.items()))


def toast_texts(app) -> list[str]:
    """The notifications' messages as their toasts show them (Textual's Toast.render:
    markup read unless the notification was sent with markup=False)."""
    from textual.content import Content

    return [Content.from_markup(n.message).plain if n.markup else n.message for n in app._notifications]
