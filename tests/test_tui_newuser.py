"""The app as a new user meets it (issue 18): the data step, the wizard's derived
panel, the hardware screen's keys, the headless output, layout, the charts and
the figures a user expects. Each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

from pilot import make_app, quick_idle, run, screen_text, wait_for, wait_screen  # noqa: F401

from fakes import fake_hardware_cpu_only, fixed_recommendation, static_text


def recommended_app(tmp_path, **kwargs):
    hw = fake_hardware_cpu_only()
    return make_app(tmp_path, hardware=hw, recommendation=fixed_recommendation(hw), **kwargs)


def corpus(path: Path, words: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(" ".join(f"word{i % 97} and [b]more[/b]" for i in range(words)) + "\n")
    return path


# ---------------------------------------------------------------------------
# 8. the data step

def test_the_data_step_forgets_a_summary_once_the_corpus_changes_and_shows_where_the_tokens_are(tmp_path):
    first = corpus(tmp_path / "first.txt")
    second = corpus(tmp_path / "second.txt", 3000)
    prepared = tmp_path / "prep[b]x"       # user text with brackets shows as typed
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nsource = "{first}"\nprepared_dir = "{prepared}"\n')
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_file(str(config))
            await wait_screen(pilot, "WizardScreen")
            await pilot.press("ctrl+n")
            await wait_screen(pilot, "DataScreen")
            data = app.screen
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "Data ready" in static_text(data.query_one("#prepare-status")),
                           what="prepared")
            text = screen_text(app)
            assert "vocabulary" in text
            directory = app.session.data_summary["directory"]
            assert "prep[b]x" in directory
            assert f"token files in {directory}" in text
            # another corpus: the summary of the first one is not this data
            data.query_one("#source-path").value = str(second)
            await pilot.pause()
            text = screen_text(app)
            assert "Data ready" not in text and "vocabulary" not in text
            assert "changed since the data was prepared" in text
            # back to the first corpus: its preparation is still valid
            data.query_one("#source-path").value = str(first)
            await pilot.pause()
            assert "Data ready" in screen_text(app)
            # a tokenizer change too
            data.query_one("#tokenizer-vocab").value = "300"
            await pilot.pause()
            assert "Data ready" not in screen_text(app)

    run(drive())


def test_only_the_chosen_corpus_radio_button_shows_a_dot(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            await pilot.press("ctrl+n")
            await wait_screen(pilot, "DataScreen")
            lines = screen_text(app).splitlines()
            builtin = next(line for line in lines if "Built-in corpus" in line)
            path = next(line for line in lines if "A text file, a folder" in line)
            assert "●" in builtin and "●" not in path
            app.screen.query_one("#kind-path").value = True
            await pilot.pause()
            lines = screen_text(app).splitlines()
            builtin = next(line for line in lines if "Built-in corpus" in line)
            path = next(line for line in lines if "A text file, a folder" in line)
            assert "●" not in builtin and "●" in path

    run(drive())


def test_evaluation_warnings_show_file_names_as_typed():
    from types import SimpleNamespace

    from rich.console import Console

    from llmtui.tui.screens.evaluate import result_table

    result = SimpleNamespace(tokens=10, bytes=12, loss=1.0, perplexity=2.7, accuracy=0.5, bits_per_byte=1.2,
                             warnings=["notes[b]1.txt: skipped 3 character(s)"])
    console = Console(width=120, record=True, file=open("/dev/null", "w"))
    console.print(result_table(result))
    assert "notes[b]1.txt" in console.export_text()
