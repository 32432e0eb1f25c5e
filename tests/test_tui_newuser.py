"""The app as a new user meets it (issue 18): the data step, the wizard's derived
panel, the hardware screen's keys, the headless output, layout, the charts and
the figures a user expects. Each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pilot import click_button, make_app, open_config, open_data_step, quick_idle, run, screen_text, wait_for, wait_screen  # noqa: F401

from fakes import fake_hardware_cpu_only, fixed_recommendation, static_text

pytestmark = pytest.mark.tui


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
            data = await open_data_step(pilot, config)
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "Data ready" in static_text(data.query_one("#prepare-status")),
                           what="prepared")
            directory = str(app.session.data.directory)
            assert "prep[b]x" in directory
            # drawn (the two lines of the summary are laid out after the status is set)
            await wait_for(pilot, lambda: f"token files in {directory}" in screen_text(app), what="the summary")
            assert "vocabulary" in screen_text(app)
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


def test_the_derived_panel_gives_the_head_size_model_head_dim_sets():
    from llmtui import load_config
    from llmtui.tui.widgets.derived_panel import derived_rows

    def head_size(*overrides):
        return dict((label, value) for label, value, *_ in derived_rows(load_config("cpu", list(overrides)), None))[
            "head size"]
    assert head_size() == "24"                                           # n_embd / n_head = 96 / 4
    assert head_size("model.n_head=5", "model.head_dim=48") == "48 (head_dim)"


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


# ---------------------------------------------------------------------------
# 19. layout

def fake_runs(root: Path, names: list[str]) -> Path:
    import json

    for name in names:
        run = root / name
        (run / "last").mkdir(parents=True)
        (run / "config.toml").write_text(f'[run]\nname = "{name}"\n')
        (run / "last" / "manifest.json").write_text("{}")
        (run / "last" / "state.json").write_text(json.dumps({"step": 100}))
    return root


def test_the_runs_table_scrolls_a_column_at_a_time_and_names_the_columns_out_of_view(tmp_path):
    runs = fake_runs(tmp_path / "runs", ["shakespeare-char", "builtin-bpe"])
    app = recommended_app(tmp_path, runs_dir=runs)

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("r")
            await wait_screen(pilot, "RunsScreen")
            await wait_for(pilot, lambda: "shakespeare-char" in screen_text(app), 10, "the runs listed")
            await pilot.pause()
            text = screen_text(app)
            header = next(line for line in text.splitlines() if "status" in line)
            assert "tokenizer" not in header
            hint = next(line for line in text.splitlines() if "←/→: " in line)
            assert "tokenizer" in hint
            for _ in range(12):
                await pilot.press("right")
            await pilot.pause()
            header = next(line for line in screen_text(app).splitlines() if "tokenizer" in line
                          and "←/→" not in line)
            assert "model" in header
            app.screen.refresh_runs()                   # the list refreshes every few seconds
            await pilot.pause(0.5)
            assert any("tokenizer" in line and "←/→" not in line for line in screen_text(app).splitlines())
            hint = next(line for line in screen_text(app).splitlines() if "←/→: " in line)
            assert "name" in hint.split(";")[0]
            for _ in range(12):
                await pilot.press("left")
            await pilot.pause()
            assert app.screen.query_one("#runs-table").scroll_x == 0

    run(drive())


def test_at_160x48_the_events_and_the_sample_grow_with_the_terminal(tmp_path):
    from pilot import open_monitor

    from fakes import scripted_factory

    app = make_app(tmp_path, trainer_factory=scripted_factory())

    async def drive():
        async with app.run_test(size=(160, 48)) as pilot:
            await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: app.screen.step == 300, what="events")
            assert app.screen.query_one("#mon-log").region.height >= 13          # was 9 (7 lines)
            assert app.screen.query_one("#mon-sample-box").region.height >= 13
            app.training.stop()

    run(drive())


def chart_lines(size: tuple[int, int], train=(), val=(), total: int | None = None) -> list[str]:
    """What a LossChart of `size` draws for these points."""
    from textual.app import App

    from llmtui.tui.widgets.loss_chart import LossChart

    class One(App):
        def compose(self):
            yield LossChart()

    app = One()
    lines: list[str] = []

    async def drive():
        async with app.run_test(size=size) as pilot:
            chart = app.query_one(LossChart)
            chart.add_points(list(train), list(val))
            if total:
                chart.set_total_steps(total)
            await pilot.pause()
            lines.extend(chart.render().plain.splitlines())

    run(drive())
    return lines


def test_the_chart_labels_round_steps_and_the_loss_every_few_rows():
    from fakes import loss_at

    lines = chart_lines((100, 30), train=[(s, loss_at(s)) for s in range(10, 1001, 10)])
    axis = lines[-1].split()
    assert axis[0] == "10" and axis[-2:] == ["step", "1,000"]
    steps = [int(x.replace(",", "")) for x in axis[1:-2]]
    assert len(steps) >= 4 and all(s % 100 == 0 for s in steps) and steps == sorted(steps)
    labelled = [line for line in lines if "┤" in line]
    assert len(labelled) >= 7                       # was 3: top, middle, bottom
    assert "train" in lines[0] and "┤" not in lines[0] and "│" not in lines[0]   # the legend's own row


def test_val_markers_are_not_joined_by_lines():
    lines = chart_lines((60, 16), val=[(100, 3.0), (1000, 1.0)])
    plot = "\n".join(line.split("│", 1)[-1].split("┤", 1)[-1] for line in lines[1:-1])
    assert plot.count("●") == 2
    assert not any(0x2800 < ord(ch) <= 0x28FF for ch in plot)     # no braille line between them


def test_the_run_header_wraps_between_figures_at_80_columns(tmp_path):
    runs = fake_runs(tmp_path / "runs", ["shakespeare-char-long-name"])
    app = recommended_app(tmp_path, runs_dir=runs)

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.open_run(runs / "shakespeare-char-long-name")
            await wait_screen(pilot, "RunScreen")
            head = app.screen.query_one("#run-head")
            await wait_for(pilot, lambda: "tokens" in static_text(head), 10, "the header")
            await pilot.pause()
            shown = rendered(head)
            for figure in ("step 100", "best val", "time", "tokens", "·"):
                assert figure in shown, figure
            assert not any(line.rstrip().endswith(("step", "best", "val", "time")) for line in shown.splitlines())

    run(drive())


def rendered(widget) -> str:
    """The widget's lines as drawn (no-break spaces read as the spaces they show)."""
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset)).replace("\xa0", " ")


def test_config_comments_wrap_under_their_hash():
    from llmtui.tui.widgets.config_view import wrap_toml

    text = ('max_steps = 1300 # Optimizer steps to train (--max-iters sets this), or the epochs below '
            'when they are set.\nname = "a # not a comment" # the run name, which names the folder of the '
            'run under out_dir\n')
    lines = wrap_toml(text, 50).splitlines()
    assert all(len(line) <= 50 for line in lines)
    assert lines[0].startswith("max_steps = 1300 # Optimizer")
    assert lines[1].startswith(" " * len("max_steps = 1300 ") + "# ")
    second = next(i for i, line in enumerate(lines) if line.startswith("name"))
    assert lines[second].startswith('name = "a # not a comment" # the')
    assert lines[second + 1].startswith(" " * len('name = "a # not a comment" ') + "# ")
    import tomllib
    assert tomllib.loads(wrap_toml(text, 50)) == tomllib.loads(text)      # still the same TOML


# ---------------------------------------------------------------------------
# 18. the run view's and compare's chart keys

def run_with_metrics(root: Path, name: str, upto: int) -> Path:
    """A run folder whose metrics.jsonl holds the scripted events up to step `upto`."""
    from fakes import scripted_events

    run_dir = fake_runs(root, [name]) / name
    events = [e for e in scripted_events(max_steps=600, upto=upto, run_dir=str(run_dir))
              if type(e).__name__ in ("StartEvent", "TrainEvent", "EvalEvent")]
    (run_dir / "metrics.jsonl").write_text("".join(e.to_line() + "\n" for e in events))
    return run_dir


def test_the_run_view_has_log_scale_and_smoothing_keys(tmp_path):
    run_dir = run_with_metrics(tmp_path / "runs", "alpha", 300)
    app = recommended_app(tmp_path, runs_dir=tmp_path / "runs")

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.open_run(run_dir)
            await wait_screen(pilot, "RunScreen")
            chart = app.screen.query_one("LossChart")
            await wait_for(pilot, lambda: len(chart.train) > 0, 10, "curves")
            assert chart.smoothing and not chart.log_scale
            await pilot.press("l", "m")
            assert chart.log_scale and not chart.smoothing
            assert "(log)" in chart.render().plain

    run(drive())


def test_compare_names_runs_without_an_evaluation_and_draws_train_loss_on_t(tmp_path):
    from llmtui.tui.screens.compare import CompareScreen

    runs = tmp_path / "runs"
    alpha = run_with_metrics(runs, "alpha", 300)
    beta = run_with_metrics(runs, "beta", 60)          # no evaluation yet (every 100 steps)
    app = recommended_app(tmp_path, runs_dir=runs)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.push_screen(CompareScreen([alpha, beta]))
            await wait_screen(pilot, "CompareScreen")
            chart = app.screen.query_one("LossChart")
            await wait_for(pilot, lambda: len(chart.runs) == 1, 10, "val curves")
            head = static_text(app.screen.query_one("#compare-head"))
            assert "val loss" in head and "no evaluation yet: beta" in head
            await pilot.press("t")
            await pilot.pause()
            assert [name for name, _ in chart.runs] == ["alpha", "beta"] and chart.runs_smoothed
            head = static_text(app.screen.query_one("#compare-head"))
            assert head.startswith(" train loss of 2 runs") and "not drawn" not in head
            await pilot.press("m", "l")
            assert not chart.smoothing and chart.log_scale

    run(drive())


def test_the_data_step_tells_when_damaged_token_files_were_prepared_again(tmp_path):
    """The engine's notes on a preparation (here: token files that no longer match their
    hashes, made again) reach the user in the data step, not only in a headless run."""
    source = corpus(tmp_path / "text.txt")
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nsource = "{source}"\nprepared_dir = "{tmp_path / "prepared"}"\n')
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            data = await open_data_step(pilot, config)
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "Data ready" in static_text(data.query_one("#prepare-status")),
                           what="prepared")
            assert "Note:" not in screen_text(app)
            token_files = sorted(app.session.data.directory.glob("*.bin"))
            assert token_files
            token_files[0].write_bytes(bytes(token_files[0].stat().st_size))   # same size, other bytes
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "do not match the hashes" in screen_text(app), what="the note")
            assert "Data ready" in static_text(data.query_one("#prepare-status"))

    run(drive())
