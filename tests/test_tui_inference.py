"""The app's generate and evaluate screens and the data step's trained tokenizer, driven
by Pilot on a real tiny checkpoint (no fakes for the engine)."""

from __future__ import annotations

import pytest
from pilot import click_button, make_app, quick_idle, run, set_field, wait_for, wait_screen  # noqa: F401

from conftest import TINY, shakespeare_text
from fakes import done_event, static_text
from llmtui import load_config, train
from llmtui.tui.session import SampleSettings

pytestmark = [pytest.mark.train, pytest.mark.tui]



def corpus_text() -> str:
    return shakespeare_text()[:20_000]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuiinf")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text())
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"',
                                     'run.name="g"', 'run.device="cpu"', f'data.source="{corpus}"',
                                     "training.max_steps=20", "eval.sample_tokens=0"])
    return train(cfg).run_dir


def output_text(screen) -> str:
    return screen.query_one("#gen-output").text


def test_generate_screen_streams_stops_and_remembers_prompts(tmp_path, run_dir):
    from llmtui import generate
    from llmtui.tui.widgets.prompt_input import PromptInput

    app = make_app(tmp_path)
    greedy = generate(run_dir, "ROMEO:", max_tokens=20, temperature=0, device="cpu")

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.open_generate(run_dir, SampleSettings(temperature=0, max_tokens=20, prompt="ROMEO:", device="cpu"))
            await wait_screen(pilot, "GenerateScreen")
            screen = app.screen
            prompt = screen.query_one("#gen-prompt", PromptInput)
            assert prompt.has_focus
            await pilot.press("enter")                        # Enter in the prompt box generates
            await wait_for(pilot, lambda: static_text(screen.query_one("#gen-status")).startswith("done"),
                           what="generation")
            assert output_text(screen) == "ROMEO:" + greedy  # temperature 0: the greedy continuation
            assert "20 tokens" in static_text(screen.query_one("#gen-status"))

            # a long generation, stopped with Esc while the tokens stream in (the UI is not blocked)
            screen.query_one("#gen-tokens").value = "100000"
            screen.query_one("#gen-temperature").value = "1.0"
            prompt.value = "JULIET:"
            await pilot.click("#gen-go")
            await wait_for(pilot, lambda: screen.generating and len(output_text(screen)) > len(greedy) + 40,
                           what="streamed tokens")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not screen.generating, what="stopped")
            assert static_text(screen.query_one("#gen-status")).startswith("stopped")
            assert app.screen is screen                          # Esc stopped; it did not go back
            assert not screen.query_one("#gen-go").disabled

            # the session's prompts: up walks back, down comes forward to what was typed
            prompt.focus()
            prompt.value = "draft"
            await pilot.press("up")
            assert prompt.value == "JULIET:"
            await pilot.press("up")
            assert prompt.value == "ROMEO:"
            await pilot.press("up")
            assert prompt.value == "ROMEO:"
            await pilot.press("down", "down")
            assert prompt.value == "draft"
            assert app.session.prompts == ["ROMEO:", "JULIET:"]

            # bad settings: one line, nothing generated
            screen.query_one("#gen-temperature").value = "-1"
            before = output_text(screen)
            await pilot.click("#gen-go")
            await pilot.pause()
            assert "temperature must be 0..10" in static_text(screen.query_one("#gen-error"))
            assert output_text(screen) == before and not screen.generating
            await pilot.press("escape")                          # nothing running: back
            await pilot.pause()
            assert type(app.screen).__name__ != "GenerateScreen"

    run(drive())


def quit_returns_while_working(app, start_work, seconds: float = 30.0) -> bool:
    """Start long work in the app, quit with Ctrl+Q, and say whether the app's run (and
    so the process: Python waits for worker threads) ended within `seconds`."""
    import threading

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            await start_work(pilot)
            await pilot.press("ctrl+q")

    runner = threading.Thread(target=run, args=(drive(),), daemon=True)
    runner.start()
    runner.join(seconds)
    return not runner.is_alive()


def test_quitting_stops_a_long_generation(tmp_path, run_dir):
    app = make_app(tmp_path)

    async def start(pilot):
        app.open_generate(run_dir, SampleSettings(temperature=1.0, max_tokens=100_000, prompt="ROMEO:", device="cpu"))
        await wait_screen(pilot, "GenerateScreen")
        screen = app.screen
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(output_text(screen)) > 100, what="streamed tokens")

    assert quit_returns_while_working(app, start)      # 100,000 tokens would take minutes


def test_quitting_stops_a_long_evaluation(tmp_path, run_dir):
    import numpy as np

    from llmtui.engine.training.loader import load_checkpoint_model

    vocab = load_checkpoint_model(run_dir, "cpu").model.config.vocab_size
    data = tmp_path / "many.npy"                       # 20M tokens: minutes to score here
    np.save(data, np.random.default_rng(0).integers(0, vocab, 20_000_000, dtype=np.uint16))
    app = make_app(tmp_path)

    async def start(pilot):
        app.open_evaluate(run_dir, "cpu")
        await wait_screen(pilot, "EvaluateScreen")
        screen = app.screen
        screen.query_one("#eval-data").value = str(data)
        await click_button(pilot, "#eval-go")
        await wait_for(pilot, lambda: screen.query_one("#eval-progress").progress > 0, what="evaluating")

    assert quit_returns_while_working(app, start)


def test_evaluate_screen_shows_what_llmtui_eval_computes(tmp_path, run_dir):
    from llmtui import evaluate

    data = tmp_path / "held_out.txt"
    data.write_text(shakespeare_text()[40_000:44_000])
    expected = evaluate(run_dir, data, device="cpu")
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.open_evaluate(run_dir, "cpu")
            await wait_screen(pilot, "EvaluateScreen")
            screen = app.screen
            await pilot.click("#eval-go")                        # no file yet: says so
            await pilot.pause()
            assert "Give a data file" in static_text(screen.query_one("#eval-error"))
            screen.query_one("#eval-data").value = str(data)
            await pilot.pause()
            await click_button(pilot, "#eval-go")            # a second click, once the first has ended
            await wait_for(pilot, lambda: screen.result is not None, what="evaluation")
            await pilot.pause()
            shown = static_text(screen.query_one("#eval-result"))
            assert f"{expected.loss:.4f} nats per token" in shown
            assert f"{expected.bits_per_byte:.4f}" in shown and f"{expected.tokens:,}" in shown

    run(drive())


def test_a_run_opens_generate_and_evaluate_on_its_newest_checkpoint(tmp_path, run_dir):
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.open_run(run_dir)
            await wait_screen(pilot, "RunScreen")
            await wait_for(pilot, lambda: app.screen.info is not None, what="run read")
            await pilot.press("g")
            await wait_screen(pilot, "GenerateScreen")
            assert app.screen.checkpoint == run_dir / "last"
            await pilot.press("escape")
            await wait_screen(pilot, "RunScreen")
            await pilot.press("e")
            await wait_screen(pilot, "EvaluateScreen")
            assert app.screen.checkpoint == run_dir / "last"
            await pilot.press("escape")
            await wait_screen(pilot, "RunScreen")
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert f"Evaluate {run_dir.name}" in titles

    run(drive())


def test_summary_opens_generate_and_evaluate_on_its_checkpoint(tmp_path, run_dir):
    from llmtui.tui.screens.summary import SummaryScreen

    app = make_app(tmp_path)
    summary = done_event(steps=20, last_checkpoint=str(run_dir / "last"), best_checkpoint=str(run_dir / "best"),
                         run_dir=str(run_dir))

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.push_screen(SummaryScreen(summary, SampleSettings(device="cpu")))
            await wait_screen(pilot, "SummaryScreen")
            await pilot.click("#generate")
            await wait_screen(pilot, "GenerateScreen")
            assert app.screen.checkpoint == run_dir / "best"
            await pilot.press("escape")
            await wait_screen(pilot, "SummaryScreen")
            await pilot.click("#evaluate")
            await wait_screen(pilot, "EvaluateScreen")
            assert app.screen.checkpoint == run_dir / "best"

    run(drive())


def test_data_step_trains_a_tokenizer_and_the_wizard_estimates_with_its_size(tmp_path):
    from textual.widgets import Input, RadioButton, Select

    from llmtui.engine.config.document import ConfigDocument
    from llmtui.engine.planning.sizing import count_params
    from llmtui.tui.format import fmt_count

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus_text())
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            doc = ConfigDocument.from_preset("cpu")
            app.open_wizard(doc)
            await wait_screen(pilot, "WizardScreen")
            wizard = app.screen
            await set_field(pilot, wizard, "tokenizer.kind", "trained")
            await set_field(pilot, wizard, "tokenizer.vocab_size", "16384")
            params = count_params(app.session.doc.to_config().model, 16384)[0]
            derived = static_text(wizard.query_one("#wizard-derived"))
            assert f"{fmt_count(params)} (est.)" in derived      # the chosen vocab size, before any data
            await set_field(pilot, wizard, "tokenizer.vocab_size", "300")
            app.open_data_step()
            await wait_screen(pilot, "DataScreen")
            data = app.screen
            assert data.query_one("#tokenizer-kind", Select).value == "trained"
            assert not data.query_one("#tokenizer-vocab", Input).disabled
            assert not data.query_one("#tokenizer-special", Input).disabled
            data.query_one("#kind-path", RadioButton).value = True
            await pilot.pause()
            data.query_one("#source-path", Input).value = str(corpus)
            data.query_one("#prepared-dir", Input).value = str(tmp_path / "prepared")
            data.query_one("#tokenizer-vocab", Input).value = "256"   # no room for the special token
            await pilot.pause()
            assert "smaller than the 256 byte tokens" in static_text(data.query_one("#tokenizer-error"))
            data.query_one("#tokenizer-vocab", Input).value = "300"
            await pilot.pause()
            assert static_text(data.query_one("#tokenizer-error")) == ""
            await pilot.click("#prepare")
            await wait_for(pilot, lambda: app.session.data_is_current(), what="data prepared")
            _, events = data.progress_events.since(0)
            assert "train tokenizer" in {e.stage for e in events}
            assert "vocabulary 300" in static_text(data.query_one("#prepare-result"))
            assert (tmp_path / "prepared").is_dir() and app.session.data.vocab_size == 300
            # a char tokenizer has no tokenizer.json: choosing it clears and disables the path
            data.query_one("#tokenizer-path", Input).value = "x.json"
            await pilot.pause()
            assert data.query_one("#tokenizer-vocab", Input).disabled    # a file has its own size
            data.query_one("#tokenizer-kind", Select).value = "char"
            await pilot.pause()
            assert app.session.doc.get("tokenizer.path") == ""
            assert data.query_one("#tokenizer-path", Input).disabled
            app.session.doc.to_config()                                  # valid

    run(drive())
