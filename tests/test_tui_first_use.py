"""The app in a new user's first ten minutes (issue 18): each defect met, driven
with Pilot and checked on what the terminal shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from pilot import make_app, quick_idle, run, screen_text, set_field, toast_texts, wait_for, wait_screen  # noqa: F401

pytestmark = pytest.mark.tui


def test_user_text_with_brackets_is_shown_as_typed(tmp_path, monkeypatch):
    """Paths and names are shown as they are, never read as markup: '[modified]',
    '[model]' and a folder 'exp [1]' were eaten."""
    from fakes import done_event
    from llmtui.tui.screens.summary import SummaryScreen

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "exp [1]"
    folder.mkdir()
    (folder / "my [v2].toml").write_text("[model]\nn_layer = 2\n")
    app = make_app(tmp_path, runs_dir=Path("runs [a]"))

    async def drive():
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_file("exp [1]/my [v2].toml")
            await wait_screen(pilot, "WizardScreen")
            await set_field(pilot, app.screen, "model.n_layer", "3")
            text = screen_text(app)
            assert "Config: exp [1]/my [v2].toml  [modified]" in text
            assert "[model]" in text                     # the form's border title
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: not app.screen.doc.dirty, what="saved")
            await wait_for(pilot, lambda: "Saved exp [1]/my [v2].toml" in toast_texts(app), 5, "saved toast")
            app.open_runs()
            await wait_screen(pilot, "RunsScreen")
            await pilot.pause(0.2)
            assert "0 run(s) in runs [a]" in screen_text(app)
            app.open_run(Path("x[1]"))                   # not a run: a toast names it
            await wait_screen(pilot, "RunsScreen")
            await wait_for(pilot, lambda: any("x[1]: not a run made by llmtui" in t for t in toast_texts(app)),
                           5, "toast")
            app.push_screen(SummaryScreen(done_event(run_dir="runs [a]/r", last_checkpoint="runs [a]/r/last")))
            await wait_screen(pilot, "SummaryScreen")
            text = screen_text(app)
            assert "runs [a]/r" in text and "runs [a]/r/last" in text

    run(drive())


def test_saving_a_config_made_from_a_preset_describes_what_it_holds_now(tmp_path):
    """The header the wizard writes ("made from preset cpu and then changed ... N steps")
    is rewritten on every save, also after the file is opened again (it kept
    "1,300 steps" while max_steps was 200)."""
    from llmtui.engine.config.document import ConfigDocument

    config = tmp_path / "mine.toml"
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_preset("cpu")
            await wait_screen(pilot, "WizardScreen")
            await set_field(pilot, app.screen, "model.n_layer", "2")
            # the form applies a typed value once it validates: on a busy machine, a moment later
            await wait_for(pilot, lambda: app.screen.doc.get("model.n_layer") == 2, what="the edit")
            app.screen._saved_as(config)
            assert "Data: builtin; 900 steps." in ConfigDocument.load(config).header()
            await pilot.press("escape")
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_file(str(config))            # opened again: no longer "the preset"
            await wait_screen(pilot, "WizardScreen")
            await set_field(pilot, app.screen, "training.max_steps", "200")
            await wait_for(pilot, lambda: app.screen.doc.get("training.max_steps") == 200, what="the edit")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: not app.screen.doc.dirty, what="saved")

    run(drive())
    header = ConfigDocument.load(config).header()
    assert header[0] == "llmtui config, made from preset cpu and then changed."
    assert "Data: builtin; 200 steps." in header and "2 layers" in header[1]


def fake_run(folder: Path, name: str, **summary) -> Path:
    """A finished run's own files, without training one."""
    import json

    run_dir = folder / name
    run_dir.mkdir(parents=True)
    (run_dir / ".llmtui-run").write_text('{"format": "llmtui-run", "version": 1}\n')
    (run_dir / "config.toml").write_text("[training]\nmax_steps = 100\n")
    (run_dir / "train_log.json").write_text(json.dumps({"stop_reason": "max_steps", "steps": 100, **summary}))
    return run_dir


def test_destructive_dialogs_focus_the_safe_button(tmp_path):
    """Enter on a 'Delete run?' or 'Unsaved changes' dialog keeps things (it deleted)."""
    run_dir = fake_run(tmp_path / "runs", "alpha")
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("r")
            await wait_screen(pilot, "RunsScreen")
            await wait_for(pilot, lambda: len(app.screen.runs) == 1, what="the run")
            await pilot.press("d")
            await wait_screen(pilot, "ConfirmScreen")
            assert app.focused.id == "choice-no"
            await pilot.press("enter")
            await wait_screen(pilot, "RunsScreen")
            assert run_dir.is_dir()
            await pilot.press("escape")
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_preset("cpu")
            await wait_screen(pilot, "WizardScreen")
            await set_field(pilot, app.screen, "model.n_layer", "2")
            await pilot.press("escape")
            await wait_screen(pilot, "ConfirmScreen")
            await pilot.press("enter")
            await wait_screen(pilot, "WizardScreen")      # the edit is kept
            assert app.screen.doc.get("model.n_layer") == 2

    run(drive())


def test_a_finished_monitor_lists_only_keys_that_act(tmp_path):
    """Pause, Save, Early, Sample and Stop leave the footer (and the palette) once
    the run has ended; the chart's keys stay."""
    from fakes import scripted_factory
    from llmtui import load_config

    app = make_app(tmp_path, trainer_factory=scripted_factory(finish_at_once=True), refresh_rate=0.05)

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"']))
            await wait_screen(pilot, "SummaryScreen")
            monitor = app.screen_stack[-2]
            await pilot.press("escape")                  # "Monitor"
            await wait_screen(pilot, "MonitorScreen")
            footer = screen_text(app).splitlines()[-1]
            assert "Log y" in footer and "Smooth" in footer
            for gone in ("Pause", "Save", "Early", "Sample", "Stop"):
                assert gone not in footer, footer
            titles = [c.title for c in monitor.palette_commands()]
            assert not any(t.startswith(("Pause", "Save", "Toggle early", "Sample", "Stop")) for t in titles)

    run(drive())


def _train(step: int, ms: float = 64.0, max_steps: int = 600):
    from fakes import T0
    from llmtui.engine.training.events import TrainEvent

    return TrainEvent(step=step, time=T0 + step, loss=2.0, lr=1e-3, grad_norm=None, tokens_per_sec=12000.0,
                      ms_per_step=ms, mfu=0.4, tokens_seen=step * 768, max_steps=max_steps, memory_rss_mb=370.0)


def _eval(step: int):
    from fakes import T0
    from llmtui.engine.training.events import EvalEvent

    return EvalEvent(step=step, time=T0 + step, val_loss=2.1, val_perplexity=8.2, val_accuracy=0.3,
                     best_val_loss=2.1, improved=True, evals_without_improvement=0)


def test_the_status_says_sampling_while_a_sample_is_written(tmp_path):
    """After an evaluation (eval.sample_tokens > 0) and after g, the trainer writes a
    sample before the next step: the status said "training" for those 35 s."""
    from pilot import open_monitor

    from fakes import T0, scripted_events, scripted_factory, static_text
    from llmtui.engine.training.events import SampleEvent

    app = make_app(tmp_path, trainer_factory=scripted_factory(events=scripted_events(upto=0)[:1]),
                   refresh_rate=0.05)

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            status = lambda: static_text(monitor.query_one("#mon-status"))  # noqa: E731
            feed = app.training.trainer.events
            feed(_train(10))
            await wait_for(pilot, lambda: monitor.step == 10, what="a step")
            assert "training" in status()
            feed(_eval(20))
            await wait_for(pilot, lambda: "sampling" in status(), 5, "sampling after the eval")
            feed(SampleEvent(step=20, time=T0 + 21, text="ROMEO:", prompt="\n"))
            await wait_for(pilot, lambda: "training" in status(), 5, "training again")
            await pilot.press("g")
            await wait_for(pilot, lambda: "sampling" in status(), 5, "sampling after g")
            feed(_train(30))                              # the step the command waits for
            await wait_for(pilot, lambda: monitor.step == 30, what="step 30")
            assert "sampling" in status()
            feed(SampleEvent(step=30, time=T0 + 31, text="ROMEO:", prompt="\n"))
            await wait_for(pilot, lambda: "training" in status(), 5, "training after the sample")
            app.training.stop()

    run(drive())


def test_the_keys_panel_says_what_ctrl_c_does(tmp_path):
    """Ctrl+C copies a selection and otherwise quits; the keys panel said only
    "^c Copy selected text"."""
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("question_mark")
            await pilot.pause(0.2)
            lines = [line for line in screen_text(app).splitlines() if "^c" in line]
            assert len(lines) == 1 and "quit" in lines[0].lower(), lines
            await pilot.press("question_mark")
            box = app.screen.query_one("#toml-path")
            box.focus()
            box.value = "my.toml"
            box.select_all()
            await pilot.press("ctrl+c")                  # a selection: copied, the app stays
            await pilot.pause()
            assert app.clipboard == "my.toml" and app.is_running
            box.value = ""
            await pilot.press("ctrl+c")                  # nothing selected: quits
            await wait_for(pilot, lambda: not app.is_running, 5, "quit")

    run(drive())


def running_run(folder: Path, name: str = "live", at: int = 460, checkpoint: int = 250):
    """A run another process trains now (its lock held): checkpoint at step
    `checkpoint`, metrics up to step `at`. Returns (run_dir, lock): release the lock."""
    import json

    from fakes import scripted_events
    from llmtui.engine.training.rundir import RunLock

    run_dir = folder / name
    (run_dir / "last").mkdir(parents=True)
    (run_dir / ".llmtui-run").write_text('{"format": "llmtui-run", "version": 1}\n')
    (run_dir / "config.toml").write_text("[training]\nmax_steps = 1300\n")
    (run_dir / "last" / "manifest.json").write_text("{}")
    (run_dir / "last" / "state.json").write_text(json.dumps({"step": checkpoint}))
    events = [e for e in scripted_events(max_steps=1300, upto=at) if e.kind in ("start", "train", "eval")]
    # the line being written when the listing looks: torn, not read
    (run_dir / "metrics.jsonl").write_text("".join(e.to_line() + "\n" for e in events) + '{"kind": "tra')
    lock = RunLock(run_dir)
    lock.acquire()
    return run_dir, lock


def test_a_running_run_shows_its_progress_not_its_checkpoint(tmp_path, capsys):
    """The run's metrics say step 460; its newest checkpoint is at 250: listings,
    `llmtui runs`, the hardware screen and the run view said 250 (or 0 before the
    first checkpoint)."""
    from llmtui.cli import main
    from llmtui.engine.training.runs import list_runs

    run_dir, lock = running_run(tmp_path / "runs")
    fresh, lock2 = running_run(tmp_path / "runs", "fresh", at=30, checkpoint=0)
    import shutil
    shutil.rmtree(fresh / "last")                      # no checkpoint yet
    try:
        infos = {r.name: r for r in list_runs(tmp_path / "runs")}
        assert (infos["live"].status, infos["live"].steps, infos["live"].tokens_seen) == ("running", 460, 460 * 768)
        assert infos["fresh"].steps == 30
        assert main(["runs", str(tmp_path / "runs")]) == 0
        assert "460/1,300" in capsys.readouterr().out
        app = make_app(tmp_path)

        async def drive():
            async with app.run_test(size=(120, 32)) as pilot:
                await wait_screen(pilot, "HardwareScreen")
                await pilot.pause(0.3)
                recent = " | ".join(str(o.prompt) for o in app.screen.query_one("#run-list").options)
                assert "live  running, step 460" in recent and "fresh  running, step 30" in recent, recent
                app.open_run(run_dir)
                await wait_screen(pilot, "RunScreen")
                await wait_for(pilot, lambda: app.screen.info is not None, what="run read")
                await pilot.pause(0.2)
                assert "step 460/1,300" in screen_text(app)

        run(drive())
    finally:
        lock.release()
        lock2.release()


class _EvalCfg:
    def __init__(self, every=250, sample_tokens=150, every_n_epochs=0.0):
        self.every_n_steps, self.sample_tokens, self.every_n_epochs = every, sample_tokens, every_n_epochs


def _at(event_cls, step, time, **fields):
    return event_cls(step=step, time=time, **fields)


def _train_at(step, time, ms):
    from llmtui.engine.training.events import TrainEvent

    return TrainEvent(step=step, time=time, loss=2.0, lr=1e-3, grad_norm=None, tokens_per_sec=1.0,
                      ms_per_step=ms, mfu=0.1, tokens_seen=step, max_steps=1000)


def test_the_eta_counts_evaluations_and_samples():
    """An evaluation with its sample took 20 s: the ETA counts one for each evaluation
    left, and the one of the last step (it said ~0 s with 45 s to go)."""
    from llmtui.engine.training.events import EvalEvent, SampleEvent
    from llmtui.eta import Eta

    clock = Eta(_EvalCfg(every=250), 1000)
    t = 0.0
    for step in range(10, 251, 10):                  # 100 ms a step
        t += 1.0
        clock.add(_train_at(step, t, 100.0))
    clock.add(_at(EvalEvent, 250, t + 15, val_loss=2, val_perplexity=7, val_accuracy=0.3, best_val_loss=2,
                  improved=True, evals_without_improvement=0))
    assert clock.seconds_left() == pytest.approx(750 * 0.1)   # no evaluation measured yet
    clock.add(_at(SampleEvent, 250, t + 20, text="x", prompt=""))
    clock.add(_train_at(260, t + 21, 100.0))         # 21 s for 10 steps of 100 ms: 20 s of evaluation
    assert clock.eval_seconds == pytest.approx(20.0)
    # 740 steps, evaluations at 500, 750 and 1000
    assert clock.seconds_left() == pytest.approx(740 * 0.1 + 3 * 20)
    t += 21
    for step in range(270, 1001, 10):
        t += 1.0
        clock.add(_train_at(step, t, 100.0))
        if step in (500, 750):
            clock.add(_at(SampleEvent, step, t, text="x", prompt=""))
    assert clock.seconds_left() == pytest.approx(20.0)     # all steps done: the last evaluation is left
    clock.add(_at(EvalEvent, 1000, t + 12, val_loss=2, val_perplexity=7, val_accuracy=0.3, best_val_loss=2,
                  improved=True, evals_without_improvement=0))
    assert clock.seconds_left() == pytest.approx(8.0)      # 12 s of it have passed
    assert clock.seconds_left(now=t + 18) == pytest.approx(2.0)   # counted down without events


def test_the_eta_follows_a_change_of_speed_at_once():
    """88 ms a step, then 4 s a step (another process took the CPU): one slow interval
    moves the ETA (a median of 5 intervals needed three)."""
    from llmtui.eta import Eta

    clock = Eta(_EvalCfg(every=10_000), 1000)
    t = 0.0
    for step in range(10, 301, 10):
        t += 0.88
        clock.add(_train_at(step, t, 88.0))
    assert clock.seconds_left() == pytest.approx(700 * 0.088)
    clock.add(_train_at(310, t + 40, 4000.0))
    assert clock.seconds_left() == pytest.approx(690 * 4.0)


def test_a_pause_is_no_evaluation_cost():
    from llmtui.engine.training.events import PausedEvent, UnpausedEvent
    from llmtui.eta import Eta

    clock = Eta(_EvalCfg(every=10_000), 1000)
    clock.add(_train_at(10, 1.0, 100.0))
    clock.add(_at(PausedEvent, 10, 2.0))
    clock.add(_at(UnpausedEvent, 10, 500.0))
    clock.add(_train_at(20, 501.0, 100.0))
    assert clock.eval_seconds is None and clock.seconds_left() == pytest.approx(980 * 0.1)


def test_the_summary_after_a_stop_says_where_each_figure_is_from(tmp_path):
    """Stopped at step 250 with the last evaluation at 200: the val loss is labelled
    with its step; a resumed run's two times stand on rows of their own; Ctrl+E
    evaluates; the monitor reached from the summary leads back to it."""
    from pilot import open_monitor

    from fakes import scripted_events, scripted_factory

    app = make_app(tmp_path, trainer_factory=scripted_factory(events=scripted_events(upto=250)),
                   refresh_rate=0.05)

    async def drive():
        async with app.run_test(size=(100, 30)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: monitor.step == 250, what="events")
            await pilot.press("x")
            await wait_screen(pilot, "ConfirmScreen")
            await pilot.press("y")
            await wait_screen(pilot, "SummaryScreen")
            text = screen_text(app)
            assert "val loss (step 200)" in text and "final val loss" not in text
            assert "Evaluate" in text.splitlines()[-1]          # the key is in the footer
            await pilot.press("escape")                        # "◂ Monitor"
            await wait_screen(pilot, "MonitorScreen")
            assert "Summary" in screen_text(app).splitlines()[-1]
            await pilot.press("enter")
            await wait_screen(pilot, "SummaryScreen")
            await pilot.press("ctrl+e")
            await wait_screen(pilot, "EvaluateScreen")

    run(drive())


def test_a_resumed_runs_times_do_not_run_into_the_next_column():
    from rich.console import Console

    from fakes import done_event
    from llmtui.tui.screens.summary import summary_renderable

    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    console.print(summary_renderable(done_event(stop_reason="stopped", steps=300, training_time=30.0,
                                                total_training_time=1346.0, device="cpu", precision="fp32")))
    lines = console.export_text().splitlines()
    time_line = next(line for line in lines if line.startswith("training time"))
    assert time_line.split() == ["training", "time", "30s", "this", "segment", "device", "cpu", "(fp32)"]
    assert any(line.split()[:3] == ["in", "all", "22m26s"] for line in lines)
