"""The figures a new user expects (issue 18, "missing figures"): epochs in the wizard,
elapsed time and tokens in the monitor, the CPU load and a busy-machine warning, the
whole sample, the checkpoint `sample` used, the learning-rate jump of a resume,
other runs while one trains. Each test failed before its change."""

from __future__ import annotations

import pytest
from pilot import make_app, open_config, quick_idle, run, screen_text, wait_for, wait_screen  # noqa: F401

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
            await open_config(pilot, config)
            derived = static_text(app.screen.query_one("#wizard-derived"))
            assert row(derived, "epochs") == f"~{estimated:.2f} (est.)"
            await pilot.press("ctrl+n")
            await wait_screen(pilot, "DataScreen")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: app.session.data_is_current(), what="prepared")
            tokens = len(app.session.data.train)
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


# ---------------------------------------------------------------------------
# the CPU load, and a warning when other processes hold the CPU

def machine(monkeypatch, busy_cores: float, own_cores: float, cores: int = 2) -> None:
    """The hardware boundary: the machine's CPU counters, as if all processes used
    `busy_cores` cores and this one `own_cores` of them, on a machine of `cores` CPUs."""
    import time

    monkeypatch.setattr("llmtui.engine.planning.load.cpu_seconds",
                        lambda: (busy_cores * time.monotonic(), own_cores * time.monotonic()))
    monkeypatch.setattr("llmtui.engine.planning.load.cpu_cores", lambda: cores)
    # exact counters: any span tells (real ones tick every 10 ms)
    monkeypatch.setattr("llmtui.engine.planning.load.MIN_SPAN_SECONDS", 0.0)


def train_events(tiny, extra=()):
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    events = []
    Trainer(load_config("cpu", tiny + ["run.threads=2", *extra]),
            listeners=[events.append]).run()
    return events


@pytest.mark.train
def test_training_warns_once_when_other_processes_hold_the_cpu(tiny, monkeypatch):
    machine(monkeypatch, busy_cores=2.0, own_cores=0.4)
    # tiny steps are quick: any step counts as slow here (the rule's 3x the estimate stays)
    monkeypatch.setattr("llmtui.engine.training.cpushare.BUSY_MIN_STEP_SECONDS", 0.0)
    events = train_events(tiny)
    start = next(e for e in events if e.kind == "start")
    assert start.cpu_cores == 2
    trains = [e for e in events if e.kind == "train"]
    assert trains[-1].cpu_busy == pytest.approx(2.0, abs=0.05)
    assert trains[-1].cpu_others == pytest.approx(1.6, abs=0.05)
    busy = [e.message for e in events if e.kind == "warning" and "machine is busy" in e.message]
    assert len(busy) == 1, busy                      # once while it lasts, not every interval
    assert "1.6 of its 2 CPU cores" in busy[0] and "2 threads" in busy[0] and "estimated" in busy[0]


@pytest.mark.train
def test_threads_follow_the_cores_other_processes_leave_free(tiny, monkeypatch):
    """With run.threads = 0 (one per core) a busy machine trains on the cores left free
    (two threads on two cores of which others hold 1.6 wait for each other at every op),
    and on all of them again once they are free for two readings in a row."""
    import time

    import psutil
    import torch

    class Counters:      # the hardware boundary: others hold 1.6 cores for 10 readings, then none
        def __init__(self):
            self.calls, self.last, self.busy, self.own = 0, time.monotonic(), 0.0, 0.0

        def __call__(self):
            now = time.monotonic()
            span, self.last = now - self.last, now
            others, own = (1.6, 0.4) if self.calls < 10 else (0.0, 1.9)
            self.busy += (others + own) * span
            self.own += own * span
            self.calls += 1
            return self.busy, self.own

    machine(monkeypatch, busy_cores=0, own_cores=0)
    monkeypatch.setattr("llmtui.engine.planning.load.cpu_seconds", Counters())
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 2)     # two cores, one thread each
    before = torch.get_num_threads()
    try:
        events = train_events(tiny, ["run.threads=0", "logging.every_n_steps=1"])
    finally:
        torch.set_num_threads(before)
    assert next(e for e in events if e.kind == "start").threads == 2
    said = [e.message for e in events if e.kind == "warning" and "goes on with" in e.message]
    assert len(said) == 2, said
    assert "1.6 of the 2 CPU cores" in said[0] and "goes on with 1 thread instead of 2" in said[0]
    assert "free again" in said[1] and "2 threads" in said[1]
    # nothing changes where the user chose the threads
    monkeypatch.setattr("llmtui.engine.planning.load.cpu_seconds", Counters())
    try:
        events = train_events(tiny, ["run.threads=2", "logging.every_n_steps=1", 'run.name="mine"'])
    finally:
        torch.set_num_threads(before)
    assert not [e for e in events if e.kind == "warning" and "goes on with" in e.message]


@pytest.mark.train
def test_a_machine_that_training_has_to_itself_gives_no_busy_warning(tiny, monkeypatch):
    machine(monkeypatch, busy_cores=2.0, own_cores=1.9)
    monkeypatch.setattr("llmtui.engine.training.cpushare.BUSY_MIN_STEP_SECONDS", 0.0)
    events = train_events(tiny)
    assert not [e for e in events if e.kind == "warning" and "busy" in e.message]
    assert [e for e in events if e.kind == "train"][-1].cpu_others == pytest.approx(0.1, abs=0.05)


@pytest.mark.tui
def test_the_monitor_shows_the_cpu_load_beside_tokens_per_second_and_marks_a_busy_machine(tmp_path):
    import dataclasses

    from pilot import open_monitor

    from fakes import scripted_events, scripted_factory
    from llmtui.engine.training.events import TrainEvent, WarningEvent

    quiet = scripted_events(upto=100)
    start = dataclasses.replace(quiet[0], cpu_cores=2, threads=2)
    busy = [dataclasses.replace(e, step=e.step + 100, time=e.time + 7, cpu_busy=2.0, cpu_others=1.5)
            for e in quiet if isinstance(e, TrainEvent)]
    said = WarningEvent(step=200, message="the machine is busy: other processes use 1.5 of its 2 CPU cores")
    events = [start, *quiet[1:]]      # 2.1 cores busy, 0.2 of them other processes
    app = make_app(tmp_path, trainer_factory=scripted_factory(events=events + busy + [said]))

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: monitor.step == 200, what="events")
            await pilot.pause()
            assert monitor.query_one("#mon-side").border_title == "Now · CPU busy"
            text = screen_text(app)
            assert "tok/s   12,000\ncpu     2.0/2, others 1.5" in "\n".join(
                line.strip("│ ").split("││")[-1] for line in text.splitlines())
            assert "Now · CPU busy" in text
            assert "warning: the machine is busy" in text
            app.training.stop()

    run(drive())


# ---------------------------------------------------------------------------
# the whole sample

@pytest.mark.tui
def test_v_opens_the_whole_latest_sample_in_a_window_that_scrolls(tmp_path):
    from pilot import open_monitor

    from fakes import scripted_events, scripted_factory
    from llmtui.engine.training.events import SampleEvent

    long_text = "".join(f"line {i} of a long sample [b]as written[/b]\n" for i in range(80)) + "THE END"
    events = scripted_events(upto=100) + [SampleEvent(step=100, prompt="ROMEO:", text=long_text)]
    app = make_app(tmp_path, trainer_factory=scripted_factory(events=events))

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: monitor._sample is not None and "THE END" in monitor._sample[1],
                           what="the sample")
            await pilot.pause()
            assert "THE END" not in screen_text(app)          # the panel cuts it
            assert "v: read it all" in screen_text(app)
            await pilot.press("v")
            await wait_screen(pilot, "TextScreen")
            body = app.screen.query_one("#text-body")
            assert static_text(body) == "ROMEO:" + long_text   # whole, brackets as written
            scroll = app.screen.query_one("#text-scroll")
            await pilot.press("end")
            await pilot.pause()
            assert scroll.scroll_y > 0 and "THE END" in screen_text(app)
            await pilot.press("escape")
            await wait_screen(pilot, "MonitorScreen")
            app.training.stop()

    run(drive())


# ---------------------------------------------------------------------------
# the learning-rate jump of a resume

@pytest.mark.train
@pytest.mark.tui
def test_the_resume_dialogs_show_the_learning_rate_jump_a_new_length_causes(tmp_path, shared_data_dir):
    from conftest import TINY
    from llmtui import load_config
    from llmtui.engine.training.schedule import lr_at
    from llmtui.engine.training.trainer import Trainer

    def cfg(*more):
        return load_config("cpu", TINY + [f'run.out_dir="{tmp_path / "runs"}"', 'run.device="cpu"',
                                          f'data.prepared_dir="{shared_data_dir}"', *more])

    done = cfg("training.max_steps=20", "training.save_best=false")
    run_dir = Trainer(done).run().run_dir          # cosine: at step 20 of 20 the rate is at its floor
    floor = lr_at(20, done.scheduler, done.optimizer.learning_rate, 20)
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.open_run(run_dir)
            await wait_screen(pilot, "RunScreen")
            await wait_for(pilot, lambda: app.screen.info is not None, what="run read")
            await pilot.press("r")
            await wait_screen(pilot, "NumberScreen")
            dialog = app.screen
            note = lambda: static_text(dialog.query_one("#ask-note"))  # noqa: E731
            at_40 = lr_at(20, done.scheduler, done.optimizer.learning_rate, 40)
            assert note().startswith(f"Learning rate at step 20: {floor:.3g} -> {at_40:.3g} "
                                     "(the 20-step schedule becomes one of 40 steps)")
            assert 'scheduler.kind = "wsd"' in note()
            dialog.query_one("#ask-input").value = "30"                  # as it is typed
            await pilot.pause()
            assert f"-> {lr_at(20, done.scheduler, done.optimizer.learning_rate, 30):.3g} " in note()
            await pilot.press("escape")
            await wait_screen(pilot, "RunScreen")
            # the same run started again from the wizard with a longer config: the choice says it too
            app.start_training(cfg("training.max_steps=40", "training.save_best=false"))
            await wait_screen(pilot, "ChoiceScreen")
            question = static_text(app.screen.query_one(".dialog-question"))
            assert f"Resuming with this config: Learning rate at step 20: {floor:.3g} -> {at_40:.3g}" in question
            await pilot.press("escape")
            await wait_screen(pilot, "RunScreen")
            app.start_training(done)                                     # the same length: no jump
            await wait_screen(pilot, "ChoiceScreen")
            assert "Learning rate" not in static_text(app.screen.query_one(".dialog-question"))
            await pilot.press("escape")

    run(drive())


@pytest.mark.tui
def test_the_events_panel_keeps_its_place_after_a_visit_to_the_runs_view(tmp_path):
    """Issue 18 item 16: scrolled back in the Events panel, then the runs view and back:
    the panel shows the same lines (the monitor stays mounted under the screens browsed)."""
    from pilot import open_monitor
    from textual.widgets import RichLog

    from fakes import scripted_factory

    app = make_app(tmp_path, trainer_factory=scripted_factory())

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: monitor.step == 300, what="events")   # it waits there
            log = monitor.query_one(RichLog)
            await wait_for(pilot, lambda: log.max_scroll_y > 2, what="more events than the panel shows")
            await pilot.pause(0.5)
            log.scroll_to(y=1, animate=False)
            await pilot.pause()
            place = log.scroll_y
            assert place == 1
            await pilot.press("escape")
            await wait_screen(pilot, "HardwareScreen")
            await pilot.press("r")
            await wait_screen(pilot, "RunsScreen")
            await pilot.press("ctrl+t")
            await wait_screen(pilot, "MonitorScreen")
            assert app.screen is monitor and log.scroll_y == place

    run(drive())


# ---------------------------------------------------------------------------
# other runs while one trains

@pytest.mark.tui
def test_escape_from_a_training_monitor_browses_while_it_trains_and_ctrl_t_comes_back(tmp_path):
    from pilot import open_monitor

    from fakes import scripted_factory

    app = make_app(tmp_path, trainer_factory=scripted_factory())

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            monitor = await open_monitor(pilot, tmp_path)
            await wait_for(pilot, lambda: monitor.step == 300, what="events")
            await pilot.press("escape")                      # was: "stop it first"
            await wait_screen(pilot, "HardwareScreen")
            assert app.training.running and monitor in app.screen_stack
            top = static_text(app.screen.query_one("TitleBar"))
            assert top == "llmtui · hardware   ·   ● cpu training: step 300/600 (ctrl+t)"
            await pilot.press("r")                           # the runs view, over the training run
            await wait_screen(pilot, "RunsScreen")
            await wait_for(pilot, lambda: "● cpu training: step 300/600" in screen_text(app), 5, "top line")
            app.training.stop()                              # it ends while the user is elsewhere
            await wait_for(pilot, lambda: monitor.status == "done", what="the covered monitor's poll")
            assert type(app.screen).__name__ == "RunsScreen"             # not pulled away
            await wait_for(pilot, lambda: "✔ cpu finished at step 300" in screen_text(app), 5, "top line")
            await pilot.press("ctrl+t")
            await wait_screen(pilot, "MonitorScreen")
            assert app.screen is monitor
            await pilot.press("enter")                       # its summary, as after any run
            await wait_screen(pilot, "SummaryScreen")

    run(drive())


@pytest.mark.train
def test_the_busy_warning_compares_with_the_estimate_the_wizard_shows(tiny, monkeypatch):
    """On a CPU the step a free machine would take is the planner's estimate (matmuls and
    elementwise work): the figure `llmtui detect` and the wizard show, not the FLOPs alone,
    which said 33 ms for the cpu preset where the wizard said 62."""
    from llmtui import load_config
    from llmtui.engine.planning.estimate import estimate
    from llmtui.engine.training.build import free_machine_step_seconds
    from llmtui.engine.training.trainer import Trainer

    setup = Trainer(load_config("cpu", [o for o in tiny if not o.startswith("model.")] + ["run.threads=2"])).setup()
    planned = estimate(setup.config, setup.data.vocab_size).step_seconds
    assert planned and free_machine_step_seconds(setup) == pytest.approx(planned)
