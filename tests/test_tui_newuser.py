"""The app as a new user meets it (issue 18): the data step, the wizard's derived
panel, the hardware screen's keys, the headless output, layout, the charts and
the figures a user expects. Each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

from pilot import click_button, make_app, quick_idle, run, screen_text, wait_for, wait_screen  # noqa: F401

from fakes import fake_hardware_cpu_only, fixed_recommendation, static_text


def recommended_app(tmp_path, **kwargs):
    hw = fake_hardware_cpu_only()
    return make_app(tmp_path, hardware=hw, recommendation=fixed_recommendation(hw), **kwargs)


def rendered_lines(widget) -> list[str]:
    """The lines a bordered panel with a padding of 1 draws inside its border and padding."""
    return [strip.text[2:-2] for strip in widget.render_lines(widget.region.reset_offset)][1:-1]


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


# ---------------------------------------------------------------------------
# 9. the wizard's derived panel

def test_the_derived_panel_wraps_messages_under_themselves_and_names_flop_units(tmp_path):
    from fakes import fake_hardware_rtx4060

    hw = fake_hardware_rtx4060()
    app = make_app(tmp_path, hardware=hw, recommendation=fixed_recommendation(hw))

    async def drive():
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_preset("rtx4060", {"training.batch_size": 256})
            await wait_screen(pilot, "WizardScreen")
            panel = app.screen.query_one("#wizard-derived")
            lines = rendered_lines(panel)
            start = next(i for i, line in enumerate(lines) if "will not fit" in line)
            end = next(i for i, line in enumerate(lines) if "logits" in line)   # the next row
            # one sentence, in lines of the panel's width (not a 16-column strip)
            assert " ".join(" ".join(line.split()) for line in lines[start:end]) == (
                "will not fit: lower batch_size or block_size, or use grad_accum_steps")
            assert end - start == 3, lines[start:end]
            text = "\n".join(lines)
            assert "301 GFLOP/step" in text and "331 MFLOP" in text      # not "300.98B"
            panel.set_rows([("note", "a long note that wraps under itself past the label column", "warn wrap")])
            await pilot.pause()
            lines = [line for line in rendered_lines(panel) if line.strip()]
            assert lines[0].startswith("note ") and len(lines) > 1
            assert all(line[:12].isspace() for line in lines[1:])     # a hanging indent

    run(drive())


def test_flops_read_in_decimal_units():
    from llmtui.tui.format import fmt_flops

    assert fmt_flops(2_359_296_000) == "2.36 GFLOP"
    assert fmt_flops(4_815_730_000_000) == "4.82 TFLOP"
    assert fmt_flops(300_983_255_040) == "301 GFLOP"
    assert fmt_flops(5_221_632) == "5.22 MFLOP"
    assert fmt_flops(12) == "12 FLOP"


# ---------------------------------------------------------------------------
# 10. the hardware screen's text box, the file browser

def test_escape_leaves_the_toml_path_box_so_the_keys_work_again(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("o", "a", "b")
            box = app.screen.query_one("#toml-path")
            assert box.value == "ab"
            await pilot.press("escape")
            assert app.focused is not box
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            assert box.value == "ab"            # no `u` typed into it

    run(drive())


def test_the_file_browser_goes_up_a_folder(tmp_path):
    from llmtui.tui.screens.dialogs import BrowseScreen

    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "corpus.txt").write_text("hello\n")
    app = recommended_app(tmp_path)
    chosen = []

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.push_screen(BrowseScreen(inner), chosen.append)
            await wait_screen(pilot, "BrowseScreen")
            browser = app.screen
            await pilot.press("backspace")
            assert browser.folder == tmp_path / "a"
            await pilot.click("#browse-up")
            await pilot.pause()
            assert browser.folder == tmp_path
            assert static_text(browser.query_one("#browse-folder")) == str(tmp_path)   # where it is
            tree = browser.query_one("#browse-tree")
            await wait_for(pilot, lambda: any(str(getattr(n.data, "path", "")).endswith("corpus.txt")
                                              for n in tree.root.children), 10, "the folder listed")
            node = next(n for n in tree.root.children if str(n.data.path).endswith("corpus.txt"))
            tree.focus()
            tree.move_cursor(node)
            await pilot.press("enter")
            await wait_for(pilot, lambda: browser.selected is not None, 5, "a file selected")
            await click_button(pilot, "#browse-ok")
            await pilot.pause()
            assert chosen == [tmp_path / "corpus.txt"]

    run(drive())
