"""A worker's error shows on the screen that ran it, in the CLI's own words.

Textual posts a worker's state changes to the screen that started it and they do
not bubble, so the app's error handler never heard of a screen's failed worker:
the data step sat at "Preparing…" and the evaluate screen at "Evaluating…" for
ever. Each test makes the real error (no fake engine) and compares the screen's
text with the line `llmtui` prints for the same input."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from pilot import click_button, make_app, quick_idle, run, wait_for, wait_screen  # noqa: F401

from conftest import TINY, shakespeare_text
from fakes import static_text
from llmtui import load_config, train
from llmtui.cli import main
from llmtui.tui.session import SampleSettings

CLI_PREFIX = "llmtui: error: "


def cli_error(capsys, argv: list[str]) -> str:
    """The one line `llmtui ARGV` prints for a refused input, without its prefix."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(CLI_PREFIX) and err.count("\n") == 1, err
    return err[len(CLI_PREFIX):-1]


@pytest.fixture
def no_tiktoken_files(tmp_path, monkeypatch):
    """tiktoken with an empty cache and no network: loading an encoding fails at once
    (the download is refused here, so no test can reach the network)."""
    import tiktoken.load
    import tiktoken.registry

    def no_network(*args, **kwargs):
        raise ConnectionError("network unreachable (test)")

    empty = tmp_path / "empty-tiktoken-cache"
    empty.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(empty))
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})   # nothing loaded earlier in this process


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuierr")
    corpus = root / "corpus.txt"
    corpus.write_text(shakespeare_text()[:20_000])
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"',
                                     'run.name="e"', 'run.device="cpu"', f'data.source="{corpus}"',
                                     "training.max_steps=4", "eval.sample_tokens=0"])
    return train(cfg).run_dir


@pytest.mark.train
@pytest.mark.tui
def test_data_step_shows_a_tokenizer_that_cannot_load_as_the_cli_does(tmp_path, no_tiktoken_files, capsys):
    from llmtui.engine.config.document import ConfigDocument

    overrides = ['tokenizer.kind="bpe"', f'data.prepared_dir="{tmp_path / "prepared"}"',
                 f'run.out_dir="{tmp_path / "runs"}"']
    expected = cli_error(capsys, ["--run", "cpu", "--plain", *sum((["-o", o] for o in overrides), [])])
    assert "cannot load its tiktoken files" in expected
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            doc = ConfigDocument.from_preset("cpu")
            for override in overrides:
                key, value = override.split("=", 1)
                doc.set(key, value.strip('"'))
            app.open_wizard(doc)
            await wait_screen(pilot, "WizardScreen")
            app.open_data_step()
            await wait_screen(pilot, "DataScreen")
            screen = app.screen
            await click_button(pilot, "#prepare")
            status = screen.query_one("#prepare-status")
            await wait_for(pilot, lambda: static_text(status) == "Preparation failed.", 30, "the error")
            assert static_text(screen.query_one("#prepare-result")) == expected
            assert not screen.query_one("#prepare").disabled       # can try again
            assert not screen.query_one("#prepare-progress").display

    run(drive())


@pytest.mark.train
@pytest.mark.tui
def test_data_step_prepares_a_trained_tokenizer(tmp_path, monkeypatch):
    """tokenizers pulls the corpus on its own threads, so the progress callback runs
    there; it asked Textual for the current worker, which only the worker's thread
    has (NoActiveWorker), and the step never got past "hash 100%"."""
    from textual.widgets import Input, RadioButton

    from llmtui.engine.config.document import ConfigDocument
    from llmtui.engine.data import prepare

    monkeypatch.setattr(prepare, "PROGRESS_INTERVAL", 0)   # every read reports, as on a large corpus
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text()[:20_000])
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 40)) as pilot:
            await pilot.pause()
            doc = ConfigDocument.from_preset("cpu")
            doc.set("tokenizer.kind", "trained")
            doc.set("tokenizer.vocab_size", 300)
            app.open_wizard(doc)
            await wait_screen(pilot, "WizardScreen")
            app.open_data_step()
            await wait_screen(pilot, "DataScreen")
            screen = app.screen
            screen.query_one("#kind-path", RadioButton).value = True
            await pilot.pause()
            screen.query_one("#source-path", Input).value = str(corpus)
            screen.query_one("#prepared-dir", Input).value = str(tmp_path / "prepared")
            await pilot.pause()
            await click_button(pilot, "#prepare")
            status = screen.query_one("#prepare-status")
            await wait_for(pilot, lambda: static_text(status) in ("Data ready.", "Preparation failed."),
                           60, "the preparation to end")
            assert static_text(status) == "Data ready.", static_text(screen.query_one("#prepare-result"))
            _, events = screen.progress_events.since(0)
            assert "train tokenizer" in {e.stage for e in events}
            assert app.session.data_is_current() and app.session.data.vocab_size == 300

    run(drive())


@pytest.mark.train
@pytest.mark.tui
def test_evaluate_screen_shows_an_empty_file_as_the_cli_does(tmp_path, run_dir, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    expected = cli_error(capsys, ["eval", str(run_dir), "--data", str(empty), "--device", "cpu"])
    assert "nothing to evaluate" in expected
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.open_evaluate(run_dir, "cpu")
            await wait_screen(pilot, "EvaluateScreen")
            screen = app.screen
            screen.query_one("#eval-data").value = str(empty)
            await click_button(pilot, "#eval-go")
            result = screen.query_one("#eval-result")
            await wait_for(pilot, lambda: static_text(result) != "Evaluating…", 30, "the error")
            assert static_text(result) == expected
            assert not screen.query_one("#eval-go").disabled

    run(drive())


@pytest.mark.tui
def test_generate_screen_shows_a_missing_checkpoint_as_the_cli_does(tmp_path, capsys):
    gone = tmp_path / "no-such-run"
    expected = cli_error(capsys, ["sample", str(gone), "--device", "cpu"])
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.open_generate(gone, SampleSettings(device="cpu"))
            await wait_screen(pilot, "GenerateScreen")
            screen = app.screen
            await pilot.press("enter")
            status = screen.query_one("#gen-status")
            await wait_for(pilot, lambda: static_text(status) == expected, 30, "the error")
            assert not screen.generating

    run(drive())


@pytest.mark.tui
def test_runs_screen_shows_a_folder_it_cannot_list(tmp_path, monkeypatch):
    from llmtui.engine.training import runs

    denied, real = tmp_path / "denied", runs.list_runs

    def list_runs(folder):          # a folder this user may not read (the tests run as root)
        if Path(folder) == denied:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(runs, "list_runs", list_runs)
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.open_runs(denied)
            await wait_screen(pilot, "RunsScreen")
            shown = lambda: [n.message for n in app._notifications]   # noqa: E731
            await wait_for(pilot, lambda: any("Permission denied" in m for m in shown()), 30, "the error")

    run(drive())


@pytest.mark.tui
def test_hardware_screen_shows_a_failed_detection_as_the_cli_does(tmp_path, monkeypatch, capsys):
    from llmtui.engine.errors import UserError
    from llmtui.engine.planning import hardware

    def detect():
        raise UserError("nvidia-smi: cannot read the GPU table (test)")

    monkeypatch.setattr(hardware, "detect", detect)
    expected = cli_error(capsys, ["detect"])
    app = make_app(tmp_path, hardware=None)

    async def drive():
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            shown = lambda: static_text(app.screen.query_one("#hw-detecting"))   # noqa: E731
            await wait_for(pilot, lambda: expected in shown(), 30, "the error")
            assert shown().startswith("Hardware detection failed: ")

    run(drive())


def _worker_classes() -> list[tuple[str, str]]:
    """(module, class) of every class in tui/ with a method decorated with @work(...)."""
    found = []
    tui = Path(importlib.import_module("llmtui.tui").__file__).parent
    for path in sorted(tui.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(d, ast.Call) and getattr(d.func, "id", None) == "work"
                    for f in node.body if isinstance(f, ast.FunctionDef) for d in f.decorator_list):
                module = ".".join(("llmtui", "tui", *path.relative_to(tui).with_suffix("").parts))
                found.append((module, node.name))
    return found


@pytest.mark.unit
def test_every_class_that_runs_workers_reports_their_errors():
    from llmtui.tui.worker_errors import ReportsWorkerErrors

    classes = _worker_classes()
    assert len(classes) >= 9          # data, evaluate, generate, hardware, runs, run view, monitor, ...
    missing = [f"{m}.{c}" for m, c in classes
               if not issubclass(getattr(importlib.import_module(m), c), ReportsWorkerErrors)]
    assert missing == []
