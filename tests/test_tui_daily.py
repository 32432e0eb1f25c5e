"""The app as a daily tool (issue 10): each defect a user met, driven for real with
Pilot, and the runs view, watching a run, the palette, keys and settings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pilot import make_app, open_config, open_data_step, open_monitor, quick_idle, run, set_field, wait_for, wait_screen  # noqa: F401
from textual.widgets import DataTable, ProgressBar

from conftest import TINY, read_jsonl
from fakes import T0, fixed_recommendation, scripted_events, scripted_factory, static_text
from llmtui import load_config
from llmtui.engine.training.events import EvalProgressEvent, PrepareEvent, TrainEvent
from llmtui.engine.training.trainer import Trainer


def tiny_cfg(tmp_path, shared_data_dir, *more):
    return load_config("cpu", TINY + [f'run.out_dir="{tmp_path / "runs"}"', 'run.device="cpu"',
                                      f'data.prepared_dir="{shared_data_dir}"', *more])


def recommended_app(tmp_path, **kwargs):
    from fakes import fake_hardware_cpu_only
    hw = fake_hardware_cpu_only()
    return make_app(tmp_path, hardware=hw, recommendation=fixed_recommendation(hw), **kwargs)


# ---------------------------------------------------------------------------
# 1. no crash, no needless question

@pytest.mark.tui
def test_escape_after_the_recommended_preset_goes_home_without_asking(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            await pilot.press("escape")
            await wait_screen(pilot, "HardwareScreen")   # nothing edited: no "unsaved changes"

    run(drive())


@pytest.mark.tui
def test_discarding_an_edit_returns_to_the_hardware_screen(tmp_path):
    config = tmp_path / "my.toml"
    config.write_text("[model]\nn_layer = 2\n")
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_config(pilot, config)
            await set_field(pilot, app.screen, "model.n_layer", "3")
            await pilot.press("escape")
            await wait_screen(pilot, "ConfirmScreen")
            await pilot.press("y")                    # Discard
            await wait_screen(pilot, "HardwareScreen")
            assert [type(s).__name__ for s in app.screen_stack] == ["HardwareScreen"]
            assert app.is_running

    run(drive())
    assert config.read_text() == "[model]\nn_layer = 2\n"


# ---------------------------------------------------------------------------
# 2. opening a run never starts it; resuming asks how far; records only grow

@pytest.mark.train
@pytest.mark.tui
def test_a_finished_run_opens_and_resumes_to_a_new_max_steps(tmp_path, shared_data_dir):
    cfg = tiny_cfg(tmp_path, shared_data_dir, "training.max_steps=20")
    run_dir = Trainer(cfg).run().run_dir
    before = (run_dir / "train_log.json").read_bytes()
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.open_run(run_dir)
            await wait_screen(pilot, "RunScreen")
            await wait_for(pilot, lambda: app.screen.info is not None, what="run read")
            assert app.screen.info.status == "finished" and app.training is None
            assert (run_dir / "train_log.json").read_bytes() == before   # opening changes nothing
            await pilot.press("r")
            await wait_screen(pilot, "NumberScreen")
            assert app.screen.query_one("#ask-input").value == "40"  # twice as far, proposed
            await pilot.press("enter")
            await wait_screen(pilot, "SummaryScreen", timeout=120)
            text = static_text(app.screen.query_one("#sum-text"))
            assert "this segment" in text and "in all" in text   # both times after extending

    run(drive())
    summary = json.loads((run_dir / "train_log.json").read_text())
    assert summary["steps"] == 40 and summary["total_training_time"] >= summary["training_time"]
    assert summary["last_checkpoint"] and summary["best_checkpoint"]


# ---------------------------------------------------------------------------
# 3. the chart tells train from val

@pytest.mark.tui
def test_train_and_val_differ_in_colour_and_shape_in_every_theme(tmp_path):
    from llmtui.tui.widgets.loss_chart import VAL_MARKER, LossChart

    app = make_app(tmp_path, trainer_factory=scripted_factory())

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: app.screen.step == 300, what="events")
            chart = app.screen.query_one(LossChart)
            from rich.color import ColorSystem
            for theme in sorted(app.available_themes):
                app.theme = theme
                await pilot.pause()
                train = chart.get_component_rich_style("loss-chart--train").color
                val = chart.get_component_rich_style("loss-chart--val").color
                # apart in a 256-colour terminal, in every theme
                assert train.downgrade(ColorSystem.EIGHT_BIT) != val.downgrade(ColorSystem.EIGHT_BIT), theme
                if theme.startswith(("ansi-", "textual-")):
                    # and in 16 colours with the themes made for them (pastel themes fold
                    # to one grey there: the val marker below still tells them apart)
                    assert train.downgrade(ColorSystem.STANDARD) != val.downgrade(ColorSystem.STANDARD), theme
            assert VAL_MARKER in chart.render().plain   # val points carry their own marker
            app.training.stop()

    run(drive())


# ---------------------------------------------------------------------------
# 4. MFU against a stable peak, never above 100%

@pytest.mark.train
def test_mfu_is_never_above_100_percent_even_when_the_peak_was_measured_busy(
        tiny, monkeypatch, tmp_path):
    from llmtui.engine.planning import device

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # the machine was busy at start-up: the measured peak is absurdly low
    monkeypatch.setattr(device, "matmul_peak_flops", lambda *a, **k: 1e6)
    result = Trainer(load_config("cpu", tiny + ["training.max_steps=20"])).run()
    mfus = [e["mfu"] for e in read_jsonl(result.metrics_path) if e["kind"] == "train"]
    assert mfus and max(mfus) <= 1.0
    remembered = json.loads((tmp_path / "cache" / "llmtui" / "matmul_peak.json").read_text())
    assert max(remembered.values()) > 1e6    # training itself proved a higher peak: kept


@pytest.mark.unit
def test_the_remembered_peak_only_grows(monkeypatch, tmp_path):
    from llmtui.engine.planning import device

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(device, "matmul_peak_flops", lambda *a, **k: 5e10)
    assert device.remembered_peak("cpu", "fp32") == 5e10
    monkeypatch.setattr(device, "matmul_peak_flops", lambda *a, **k: 2e10)   # a busy moment
    assert device.remembered_peak("cpu", "fp32") == 5e10


# ---------------------------------------------------------------------------
# 5, 6, 7, 8. the monitor: progress, stop, save toast, phases, ETA

def _monitor_app(tmp_path, events, **kwargs):
    app = make_app(tmp_path, trainer_factory=scripted_factory(events=events, **kwargs), refresh_rate=0.05)
    return app


@pytest.mark.tui
def test_progress_is_indeterminate_until_the_first_step(tmp_path):
    start = scripted_events(upto=0)[:1]   # a start event, no step yet
    app = _monitor_app(tmp_path, start + [PrepareEvent(step=0, time=T0, stage="tokenize", done=4, total=10)])

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.polls > 2, what="polls")
            assert monitor.query_one("#mon-progress", ProgressBar).total is None
            app.training.trainer.events(TrainEvent(step=10, time=T0 + 1, loss=3.0, lr=1e-3, grad_norm=None,
                                                   tokens_per_sec=1e4, ms_per_step=50.0, mfu=0.4,
                                                   tokens_seen=7680, max_steps=600, memory_rss_mb=300.0))
            await wait_for(pilot, lambda: monitor.step == 10, what="first step")
            bar = monitor.query_one("#mon-progress", ProgressBar)
            assert bar.total == 600 and bar.progress == 10
            app.training.stop()

    run(drive())


@pytest.mark.train
@pytest.mark.tui
def test_a_failed_run_shows_its_progress_in_the_error_colour(tmp_path):
    def broken(cfg, *, resume_from=None, overwrite=False, prepared=None):
        from llmtui.engine.training.events import EventBuffer

        class Broken:
            events = EventBuffer()

            def send(self, command):
                pass

            def run(self):
                raise RuntimeError("no")
        return Broken()

    app = make_app(tmp_path, trainer_factory=broken)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.status == "failed", what="failed")
            bar = monitor.query_one("#mon-progress", ProgressBar)
            assert bar.has_class("-failed") and bar.total is None   # never 100% of nothing

    run(drive())


@pytest.mark.tui
def test_stop_shows_the_summary(tmp_path):
    app = _monitor_app(tmp_path, None)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: app.screen.step == 300, what="events")
            await pilot.press("x")
            await wait_screen(pilot, "ConfirmScreen")
            await pilot.press("y")
            await wait_screen(pilot, "SummaryScreen")
            assert app.screen.query_one("#sum-box").border_title == "Training stopped"

    run(drive())


@pytest.mark.train
@pytest.mark.tui
def test_save_while_paused_says_it_saves_now(tmp_path):
    from llmtui.engine.training.events import PausedEvent

    app = _monitor_app(tmp_path, scripted_events() + [PausedEvent(step=300, time=T0 + 30)])

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.status == "paused", what="paused")
            await pilot.press("s")
            await pilot.pause()
            toasts = [n.message for n in app._notifications]
            assert any("now" in t and "paused" in t for t in toasts), toasts
            assert not any("when training resumes" in t for t in toasts)
            app.training.stop()

    run(drive())


@pytest.mark.tui
def test_phases_are_shown_and_the_eta_survives_a_pause(tmp_path):
    from llmtui.engine.training.events import PausedEvent, UnpausedEvent

    events = scripted_events(upto=100)
    app = _monitor_app(tmp_path, events)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.step == 100, what="events")
            status = lambda: static_text(monitor.query_one("#mon-status"))  # noqa: E731
            eta = monitor._eta
            assert eta.startswith("ETA ~") and eta in status()
            feed = app.training.trainer.events
            feed(EvalProgressEvent(step=100, time=T0 + 9, done=12, total=20))
            await wait_for(pilot, lambda: "evaluating 12/20 batches" in status(), what="eval phase")
            # a long pause, then the next interval: the ETA still counts steps x ms/step
            feed(PausedEvent(step=100, time=T0 + 10))
            feed(UnpausedEvent(step=100, time=T0 + 10000))
            feed(TrainEvent(step=110, time=T0 + 10001, loss=2.0, lr=1e-3, grad_norm=None,
                            tokens_per_sec=12000.0, ms_per_step=64.0, mfu=0.4, tokens_seen=1,
                            max_steps=600, memory_rss_mb=370.0))
            await wait_for(pilot, lambda: monitor.step == 110, what="after the pause")
            # 490 steps x 64 ms, not hours, plus the evaluations at 250, 500 and 600 at what
            # the one at step 100 cost (4 s from step 100 to 110 outside the pause, less 10 x 64 ms)
            assert monitor._eta == "ETA ~41s"
            app.training.stop()

    run(drive())


@pytest.mark.tui
def test_the_data_step_shows_its_phase_in_the_monitor(tmp_path):
    start = scripted_events(upto=0)[:1]
    app = _monitor_app(tmp_path, [PrepareEvent(step=0, time=T0, stage="tokenize", done=40, total=100)],
                       finish_at_once=False)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await open_monitor(pilot, tmp_path)
            monitor = app.screen
            await wait_for(pilot, lambda: "preparing data: tokenize 40%"
                           in static_text(monitor.query_one("#mon-status")), what="prepare phase")
            app.training.trainer.events(start[0])
            app.training.stop()

    run(drive())


# ---------------------------------------------------------------------------
# 9. Ctrl+C and Ctrl+Q

@pytest.mark.tui
def test_ctrl_c_during_training_saves_and_exits_130(tmp_path, shared_data_dir):
    cfg = tiny_cfg(tmp_path, shared_data_dir, "training.max_steps=100000")
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.start_training(cfg)
            await wait_screen(pilot, "MonitorScreen")
            await wait_for(pilot, lambda: app.screen.last_train is not None, what="training")
            await pilot.press("ctrl+c")
            await wait_for(pilot, lambda: not app.training.running, what="stopped", timeout=60)
            await pilot.pause(0.5)

    run(drive())
    assert app.return_code == 130
    run_dir = tmp_path / "runs" / "cpu"
    assert json.loads((run_dir / "train_log.json").read_text())["stop_reason"] == "interrupted"
    assert (run_dir / "last" / "manifest.json").exists()


@pytest.mark.tui
def test_ctrl_q_with_an_unsaved_config_asks_first(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            await set_field(pilot, app.screen, "model.n_layer", "3")
            await pilot.press("ctrl+q")
            await wait_screen(pilot, "ConfirmScreen")
            await pilot.press("escape")                 # no: keep editing
            await wait_screen(pilot, "WizardScreen")
            assert app.is_running

    run(drive())


# ---------------------------------------------------------------------------
# 11. focus

@pytest.mark.tui
def test_focus_is_where_the_keys_work(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("o")                       # focus the TOML path box
            assert app.focused.id == "toml-path"
            await pilot.press("escape")
            app.screen.query_one("#use-recommended").focus()
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            await pilot.press("ctrl+n")
            await wait_screen(pilot, "DataScreen")
            assert app.focused is not None               # the data step opens with focus
            await pilot.press("escape")
            await wait_screen(pilot, "WizardScreen")
            await pilot.press("escape")
            await wait_screen(pilot, "HardwareScreen")
            app.screen.query_one("#toml-path").focus()   # left in the text box last time...
            app.open_runs()
            await wait_screen(pilot, "RunsScreen")
            await pilot.press("escape")
            await wait_screen(pilot, "HardwareScreen")
            assert app.focused.id != "toml-path"         # ...so `u` works again here
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")

    run(drive())


# ---------------------------------------------------------------------------
# 12. too little data is caught in the data step

@pytest.mark.tui
def test_too_small_data_is_refused_in_the_data_step(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("just a few words here\n")
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nsource = "{corpus}"\nprepared_dir = "{tmp_path / "prep"}"\n')
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            data = await open_data_step(pilot, config)
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "Not enough data" in static_text(data.query_one("#prepare-status")),
                           what="refusal")
            assert "block_size" in static_text(data.query_one("#prepare-status"))
            assert data.query_one("#train").disabled
            await pilot.press("ctrl+t")
            await pilot.pause()
            assert type(app.screen).__name__ == "DataScreen"   # not started

    run(drive())


# ---------------------------------------------------------------------------
# 13. smaller things

@pytest.mark.tui
def test_a_cross_field_error_marks_every_field_it_names(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            wizard = app.screen
            await set_field(pilot, wizard, "model.n_head", "5")
            marked = {f.spec.path for f in wizard.query("ConfigField") if f.has_class("-invalid")}
            assert {"model.n_head", "model.n_embd"} <= marked
            await set_field(pilot, wizard, "model.n_head", "4")
            marked = {f.spec.path for f in wizard.query("ConfigField") if f.has_class("-invalid")}
            assert not marked

    run(drive())


@pytest.mark.unit
def test_memory_is_shown_in_binary_units():
    from llmtui.tui.format import fmt_bytes, fmt_used_total
    assert fmt_bytes(5 * 2**30) == "5.0 GiB" and fmt_bytes(370 * 2**20) == "370 MiB"
    assert fmt_used_total(5.1 * 2**30, 32 * 2**30) == "5.1/32.0 GiB"


@pytest.mark.tui
def test_the_keys_panel_opens_with_question_mark_and_closes_with_escape(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("u")
            await wait_screen(pilot, "WizardScreen")
            app.screen.query_one("#wizard-sections").focus()
            await pilot.press("question_mark")
            await pilot.pause()
            assert app.screen.query("HelpPanel")
            await pilot.press("escape")
            await pilot.pause()
            assert not app.screen.query("HelpPanel")
            assert type(app.screen).__name__ == "WizardScreen"   # Esc closed the panel only
            await pilot.press("f1")
            await pilot.pause()
            assert app.screen.query("HelpPanel")

    run(drive())


# ---------------------------------------------------------------------------
# the runs view

def _runs(tmp_path, shared_data_dir) -> Path:
    Trainer(tiny_cfg(tmp_path, shared_data_dir, 'run.name="alpha"', "training.max_steps=20")).run()
    holder = {}

    def stop_early(event):
        if event.kind == "train" and event.step == 10:
            holder["t"].stop()
    t = Trainer(tiny_cfg(tmp_path, shared_data_dir, 'run.name="beta"', "training.max_steps=30",
                         "optimizer.learning_rate=1e-3"), listeners=[stop_early])
    holder["t"] = t
    t.run()
    runs = tmp_path / "runs"
    (runs / "notes").mkdir()                 # a folder of the user's: not a run
    (runs / "notes" / "todo.txt").write_text("keep")
    return runs


@pytest.mark.train
@pytest.mark.tui
def test_the_runs_view_lists_sorts_opens_compares_and_deletes(tmp_path, shared_data_dir):
    runs = _runs(tmp_path, shared_data_dir)
    (runs / "beta" / "mine.txt").write_text("keep me")
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(120, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("r")
            await wait_screen(pilot, "RunsScreen")
            screen = app.screen
            await wait_for(pilot, lambda: len(screen.runs) == 2, what="two runs")
            table = screen.query_one(DataTable)
            statuses = {r.name: r.status for r in screen.runs}
            assert statuses == {"alpha": "finished", "beta": "stopped"}
            screen.sort_column, screen.sort_reverse = "name", False
            screen._fill()
            assert [str(table.get_row_at(i)[1]) for i in range(2)] == ["alpha", "beta"]
            screen._header_selected(DataTable.HeaderSelected(table, table.columns["name"].key, 1, "name"))
            assert [str(table.get_row_at(i)[1]) for i in range(2)] == ["beta", "alpha"]
            # compare: select both, c
            table.move_cursor(row=0)
            await pilot.press("space")
            table.move_cursor(row=1)
            await pilot.press("space")
            await pilot.press("c")
            await wait_screen(pilot, "CompareScreen")
            chart = app.screen.query_one("LossChart")
            await wait_for(pilot, lambda: len(chart.runs) == 2, what="two curves")
            await pilot.press("escape")
            await wait_screen(pilot, "RunsScreen")
            # open beta, its config into the wizard
            table.move_cursor(row=0)
            await pilot.press("enter")
            await wait_screen(pilot, "RunScreen")
            await wait_for(pilot, lambda: app.screen.info is not None and app.screen.verified is not None,
                           what="run read")
            run_screen = app.screen
            assert run_screen.info.name == "beta" and len(run_screen.history.train) >= 2
            assert all(problem is None for _, _, problem in run_screen.verified)
            await pilot.press("w")
            await wait_screen(pilot, "WizardScreen")
            assert app.screen.doc.get("run.name") == "beta-copy"
            await pilot.press("escape")
            await wait_screen(pilot, "RunScreen")
            # delete: asks, removes only the run's own files
            await pilot.press("d")
            await wait_screen(pilot, "ConfirmScreen")
            await pilot.press("y")
            await wait_screen(pilot, "RunsScreen")
            await wait_for(pilot, lambda: len(app.screen.runs) == 1, what="one run left")

    run(drive())
    assert sorted(p.name for p in (runs / "beta").iterdir()) == ["mine.txt"]
    assert (runs / "notes" / "todo.txt").read_text() == "keep"


@pytest.mark.train
def test_llmtui_runs_prints_the_table_and_json(tmp_path, shared_data_dir, capsys):
    from llmtui.cli import main
    runs = _runs(tmp_path, shared_data_dir)
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "finished" in out and "beta" in out and "stopped" in out
    assert "notes" not in out
    assert main(["runs", str(runs), "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["alpha"]["status"] == "finished" and listed["alpha"]["steps"] == 20
    assert listed["beta"]["status"] == "stopped" and listed["beta"]["best_val_loss"] is not None
    capsys.readouterr()
    for wrong, words in ((runs / "alpha" / "config.toml", "a file, not a folder of runs"),
                         (tmp_path / "missing", "no such folder")):
        assert main(["runs", str(wrong)]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1


# ---------------------------------------------------------------------------
# watching a run the app did not start

@pytest.mark.subprocess
@pytest.mark.train
@pytest.mark.tui
def test_watching_a_run_trained_by_another_process(tmp_path, tiny):
    args = [sys.executable, "-m", "llmtui", "--run", "cpu", "--plain",
            *sum((["-o", o] for o in tiny), []), "--max-iters", "100000", "-o", "logging.every_n_steps=2"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = tmp_path / "runs" / "tiny"
    app = make_app(tmp_path, open_run=run_dir)
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "metrics.jsonl").exists() or "train" not in (run_dir / "metrics.jsonl").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)

        async def drive():
            async with app.run_test(size=(100, 32)) as pilot:
                await wait_screen(pilot, "RunScreen")       # opened straight on the run
                screen = app.screen
                await wait_for(pilot, lambda: screen.info is not None, what="run read")
                assert screen.info.status == "running" and screen.info.holder.pid == proc.pid
                first = len(screen.history.train)
                await wait_for(pilot, lambda: len(screen.history.train) > first + 2, what="live points")
                assert screen.follows > 0
                await pilot.press("r")                      # running elsewhere: not resumed here
                await pilot.pause()
                assert type(app.screen).__name__ == "RunScreen" and app.training is None

        run(drive())
    finally:
        proc.terminate()
        proc.wait(60)


# ---------------------------------------------------------------------------
# the monitor shows the whole run after a resume

@pytest.mark.train
@pytest.mark.tui
def test_the_monitor_draws_the_earlier_segments_after_a_resume(tmp_path, shared_data_dir):
    cfg = tiny_cfg(tmp_path, shared_data_dir, "training.max_steps=20")
    Trainer(cfg).run()
    app = make_app(tmp_path)
    longer = tiny_cfg(tmp_path, shared_data_dir, "training.max_steps=30")

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.start_training(longer, resume_from="latest")
            await wait_screen(pilot, "SummaryScreen", timeout=120)
            # the monitor stays under the summary (ten quick steps can end before a
            # wait for the monitor sees it as the current screen)
            monitor = next(s for s in app.screen_stack if type(s).__name__ == "MonitorScreen")
            chart = monitor.query_one("LossChart")
            steps = [x for x, _ in chart.train.points()]
            assert min(steps) <= 10 and max(steps) >= 25     # before and after the resume point

    run(drive())


# ---------------------------------------------------------------------------
# palette, settings

@pytest.mark.tui
def test_the_palette_offers_the_apps_commands(tmp_path):
    app = recommended_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert "Runs" in titles and "New run from preset cpu" in titles and "Theme" in titles
            command = next(c for c in app.get_system_commands(app.screen) if c.title == "Runs")
            command.callback()
            await wait_screen(pilot, "RunsScreen")

    run(drive())


@pytest.mark.tui
def test_the_theme_is_remembered_between_launches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first = recommended_app(tmp_path)

    async def choose():
        async with first.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            first.theme = "nord"
            await pilot.pause(0.2)

    run(choose())
    assert 'theme = "nord"' in (tmp_path / "config" / "llmtui" / "settings.toml").read_text()
    second = recommended_app(tmp_path)

    async def check():
        async with second.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            assert second.theme == "nord"

    run(check())


@pytest.mark.train
@pytest.mark.tui
def test_llmtui_opens_on_a_config_or_a_run_given_on_the_command_line(tmp_path, shared_data_dir, capsys):
    from llmtui.cli import main

    config = tmp_path / "my.toml"
    config.write_text("[model]\nn_layer = 3\n")
    app = make_app(tmp_path, open_config=config)

    async def wizard():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "WizardScreen")
            assert app.screen.doc.get("model.n_layer") == 3 and app.screen.doc.path == config

    run(wizard())
    preset = make_app(tmp_path, open_config="rtx4060")            # `llmtui rtx4060`: a shipped preset

    async def preset_wizard():
        async with preset.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "WizardScreen")
            assert preset.screen.doc.origin == "preset rtx4060" and preset.screen.doc.path is None

    run(preset_wizard())
    run_dir = Trainer(tiny_cfg(tmp_path, shared_data_dir, "training.max_steps=5")).run().run_dir
    watch = make_app(tmp_path, open_run=run_dir)

    async def watching():
        async with watch.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "RunScreen")
            await wait_for(pilot, lambda: watch.screen.info is not None, what="run read")
            titles = [c.title for c in watch.get_system_commands(watch.screen)]
            assert f"Resume {run_dir.name}" in titles and f"Sample from {run_dir.name}" in titles

    run(watching())
    # without a terminal the app says what to use instead, in one line
    assert main([str(config)]) == 2 and "needs a terminal" in capsys.readouterr().err
    assert main(["cpu"]) == 2 and "needs a terminal" in capsys.readouterr().err
    assert main(["cpuu"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such config file or preset" in err and "rtx4060" in err
    assert main(["watch", str(run_dir)]) == 2 and "needs a terminal" in capsys.readouterr().err
    assert main(["watch", str(tmp_path)]) == 2 and "not a run directory" in capsys.readouterr().err
