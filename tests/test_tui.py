"""The Textual app, driven by Pilot: every screen, real training on a tiny config.

The hardware is injected (tui.testing fakes) except in the one test that runs
real detection; training is the real engine unless a test says otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest
from pilot import make_app, quick_idle, run, set_field, wait_for, wait_screen  # noqa: F401

from conftest import REPO
from fakes import static_text
from llmtui.engine.config.document import ConfigDocument
from llmtui.engine.config.schema import field_spec
from llmtui.engine.errors import ConfigError
from llmtui.tui.fields import field_text, parse_field_text

TINY_FIELDS = {
    "model.n_layer": "1", "model.n_head": "2", "model.n_embd": "32", "model.block_size": "16",
    "training.batch_size": "4", "training.max_steps": "30", "scheduler.warmup_steps": "5",
    "eval.every_n_steps": "10", "eval.max_batches": "2", "logging.every_n_steps": "5",
    "checkpoint.every_n_steps": "0", "eval.sample_tokens": "20",
}


# ---------------------------------------------------------------------------
# pure parts


@pytest.mark.unit
def test_field_text_round_trips_and_errors_are_short():
    spec = field_spec("model.n_layer")
    assert parse_field_text(spec, " 6 ") == 6
    with pytest.raises(ConfigError) as exc:
        parse_field_text(spec, "0")
    assert exc.value.short() == "out of range: expected an integer >= 1 and <= 96"
    assert (exc.value.key, exc.value.value, exc.value.origin) == ("model.n_layer", "0", "form")
    with pytest.raises(ConfigError):
        parse_field_text(spec, "six")
    betas = field_spec("optimizer.betas")
    assert parse_field_text(betas, field_text(betas, [0.9, 0.95])) == [0.9, 0.95]
    lr = field_spec("optimizer.learning_rate")
    assert parse_field_text(lr, "3e-4") == pytest.approx(3e-4)
    prompt = field_spec("eval.sample_prompt")
    assert field_text(prompt, "\nROMEO:") == "\\nROMEO:"
    assert parse_field_text(prompt, "\\nROMEO:") == "\nROMEO:"
    device = field_spec("run.device")
    with pytest.raises(ConfigError):
        parse_field_text(device, "tpu")


@pytest.mark.unit
def test_config_document_edits_keep_comments_and_order(tmp_path):
    doc = ConfigDocument.from_preset("cpu")
    assert doc.path is None and doc.origin == "preset cpu"
    original = doc.dumps()
    doc.set("model.n_layer", 6)
    doc.set("optimizer.betas", [0.9, 0.95])
    doc.set("eval.sample_prompt", "\nHello")
    with pytest.raises(ConfigError, match="model.n_head"):
        doc.set("model.n_head", 0)
    with pytest.raises(ConfigError):
        doc.save()  # a preset has no path of its own
    out = doc.save(tmp_path / "sub" / "mine.toml")
    text = out.read_text()
    comments = [line for line in original.splitlines() if line.startswith("#")]
    assert comments and all(c in text for c in comments)
    assert "n_layer = 6 # Transformer blocks." in text
    assert [line.split("=")[0] for line in text.splitlines() if "=" in line] == \
        [line.split("=")[0] for line in original.splitlines() if "=" in line]
    data = tomllib.loads(text)
    assert data["model"]["n_layer"] == 6 and data["optimizer"]["betas"] == [0.9, 0.95]
    assert data["eval"]["sample_prompt"] == "\nHello"
    # a cross-key rule fails on the whole config, and saving refuses
    doc.set("model.n_head", 5)
    with pytest.raises(ConfigError, match="must divide"):
        doc.to_config()
    with pytest.raises(ConfigError):
        doc.save()
    assert tomllib.loads(out.read_text())["model"]["n_head"] == 4  # untouched on disk
    reloaded = ConfigDocument.load(out)
    assert reloaded.get("model.n_layer") == 6 and reloaded.path == out


@pytest.mark.unit
def test_loss_chart_downsampling_is_bounded():
    from llmtui.tui.widgets.loss_chart import Series, smooth

    series = Series(capacity=64)
    for step in range(1, 100_001):
        series.add(step, 1.0 + 1.0 / step)
    assert len(series) <= 64 and series.count == 100_000
    pts = series.points()
    assert pts[0][0] < pts[-1][0] and pts[-1][0] > 99_000
    assert smooth([1.0, 1.0, 1.0], 0.6) == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.subprocess
def test_tui_modules_do_not_import_torch():
    """Every module of the app (found by walking the package, so a new screen is covered) imports
    without torch, numpy or the trainer: they load when training starts. The heavy names are
    checked to exist, so the guard cannot go on passing over modules that were renamed."""
    code = ("import importlib, importlib.util, pkgutil, sys\n"
            "import llmtui.tui\n"
            "for m in pkgutil.walk_packages(llmtui.tui.__path__, 'llmtui.tui.'):\n"
            "    importlib.import_module(m.name)\n"
            "names = ('torch', 'numpy', 'llmtui.engine.training.trainer', 'llmtui.engine.planning.hardware')\n"
            "missing = [m for m in names if importlib.util.find_spec(m) is None]\n"
            "assert not missing, f'no such module (renamed?): {missing}'\n"
            "heavy = [m for m in names if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------
# the whole journey with the real engine


@pytest.mark.train
@pytest.mark.tui
def test_walk_every_screen_and_train_for_real(tmp_path, shared_data_dir, monkeypatch):
    from textual.widgets import Button, RichLog

    from llmtui.engine.data import prepare
    from llmtui.engine.training import trainer

    # the corpus is prepared (tokenized or hashed) once: by the data step, not again by
    # the trainer, which takes the data step's preparation (the engine's own function,
    # counted where each of them calls it)
    prepared_by: list[str] = []
    for module, who in ((prepare, "data step"), (trainer, "trainer")):
        def counted(*args, real=module.prepare_data, who=who, **kwargs):
            prepared_by.append(who)
            return real(*args, **kwargs)
        monkeypatch.setattr(module, "prepare_data", counted)

    app = make_app(tmp_path)
    saved = tmp_path / "configs" / "tiny.toml"

    async def journey():
        async with app.run_test(size=(100, 32)) as pilot:
            # hardware screen: detection result shown, recommended preset offered
            await wait_for(pilot, lambda: app.recommendation is not None, what="recommendation")
            await pilot.pause()
            await wait_screen(pilot, "HardwareScreen")
            text = static_text(app.screen.query_one("#hw-info"))
            assert "AMD Ryzen 5 7600" in text and "no NVIDIA GPU" in text
            assert app.recommendation.preset == "cpu"
            await pilot.click("#use-recommended")
            await pilot.pause()
            await wait_screen(pilot, "WizardScreen")
            wizard = app.screen

            # an invalid value: inline error, Save disabled; then a valid one
            field = await set_field(pilot, wizard, "model.n_layer", "0")
            assert field.has_class("-invalid")
            assert "out of range" in static_text(field.query_one(".field-error"))
            assert wizard.query_one("#save", Button).disabled
            assert wizard.query_one("#next", Button).disabled
            field = await set_field(pilot, wizard, "model.n_layer", "1")
            assert not field.has_class("-invalid")
            assert not wizard.query_one("#save", Button).disabled
            assert app.session.doc.get("model.n_layer") == 1

            # a cross-key rule: n_head must divide n_embd
            await set_field(pilot, wizard, "model.n_head", "5")
            assert wizard.query_one("#save", Button).disabled
            assert "must divide" in wizard.query_one("#wizard-error").text
            for path, value in TINY_FIELDS.items():
                await set_field(pilot, wizard, path, value)
            assert not wizard.invalid, wizard.invalid
            await set_field(pilot, wizard, "run.out_dir", str(tmp_path / "runs"))
            await set_field(pilot, wizard, "run.name", "tiny")
            await set_field(pilot, wizard, "run.device", "cpu")
            assert wizard.is_valid and not wizard.query_one("#save", Button).disabled
            derived = static_text(wizard.query_one("#wizard-derived"))
            assert "tokens/step" in derived and "64" in derived  # 4 x 16

            # Save (a preset): asks for a file name, writes TOML with the comments kept
            await pilot.press("ctrl+s")
            await pilot.pause()
            await wait_screen(pilot, "PathScreen")
            path_input = app.screen.query_one("#ask-input")
            path_input.value = str(saved)
            await pilot.press("enter")
            await pilot.pause()
            await wait_screen(pilot, "WizardScreen")
            text = saved.read_text()
            # the preset's header described the preset; the file now says what it holds
            assert text.startswith("# llmtui config, made from preset cpu and then changed.")
            assert "Model: 1 layers x 32 wide, context 16" in text and "0.8M parameters" not in text
            assert "n_layer = 1 # Transformer blocks." in text
            assert tomllib.loads(text)["training"]["max_steps"] == 30

            # data step: prepare with a progress bar, then train
            await pilot.click("#next")
            await pilot.pause()
            await wait_screen(pilot, "DataScreen")
            data = app.screen
            data.query_one("#prepared-dir").value = str(shared_data_dir)
            await pilot.pause()
            await pilot.click("#prepare")
            await wait_for(pilot, lambda: app.session.data_is_current(), what="data prepared")
            assert "vocabulary" in static_text(data.query_one("#prepare-result"))
            assert app.session.data.vocab_size > 10
            await pilot.click("#train")
            await pilot.pause()
            await wait_screen(pilot, "MonitorScreen")
            monitor = app.screen
            run_ = app.training
            await wait_for(pilot, lambda: run_.finished.is_set(), what="training")
            assert prepared_by == ["data step"] and monitor.info is not None and monitor.info.data_reused
            await wait_screen(pilot, "SummaryScreen")
            assert monitor.last_eval is not None and monitor.query_one("#mon-chart").train.count >= 6
            summary = static_text(app.screen.query_one("#sum-text"))
            assert "reached max_steps" in summary and "best val loss" in summary
            assert str(tmp_path / "runs" / "tiny" / "best") in summary

            # sample from the trained model (a thread worker)
            app.screen.query_one("#sample-tokens").value = "30"
            await pilot.click("#sample")
            await wait_for(pilot, lambda: not app.screen.query_one("#sample", Button).disabled
                           and static_text(app.screen.query_one("#sample-output")) != "Sampling…",
                           what="sample")
            assert len(static_text(app.screen.query_one("#sample-output"))) >= 20

            # back to the monitor and home; the saved config still has its comments
            await pilot.press("escape")
            await pilot.pause()
            await wait_screen(pilot, "MonitorScreen")
            log_text = "\n".join(str(line.text) for line in monitor.query_one(RichLog).lines)
            assert "eval" in log_text and "saved best checkpoint" in log_text
            await pilot.press("escape")  # training is over: back to the data step
            await pilot.pause()
            await wait_screen(pilot, "DataScreen")

    run(journey())
    assert (tmp_path / "runs" / "tiny" / "last" / "manifest.json").exists()


@pytest.mark.train
@pytest.mark.tui
def test_monitor_keys_pause_save_stop_then_quit_and_resume(tmp_path, shared_data_dir):
    """Pause, save, toggle early stopping and stop (confirmed) on a real run;
    then quit during a second run (it saves a checkpoint) and resume it."""
    from llmtui.engine.config.loading import load_config
    from llmtui.tui.widgets.loss_chart import LossChart

    cfg = load_config("cpu", [f"{k}={v}" for k, v in TINY_FIELDS.items()] + [
        "training.max_steps=100000", f'run.out_dir="{tmp_path / "runs"}"', 'run.name="keys"',
        f'data.prepared_dir="{shared_data_dir}"', 'run.device="cpu"', "eval.every_n_steps=20"])
    app = make_app(tmp_path)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.start_training(cfg)
            await pilot.pause()
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.last_train is not None, what="first train event")
            await pilot.press("space")
            assert monitor.status in ("pausing", "paused")
            await wait_for(pilot, lambda: monitor.status == "paused", what="paused")
            step = app.training.trainer.step
            await pilot.pause(0.3)
            assert app.training.trainer.step == step  # really paused
            await pilot.press("s")  # saved at the next step boundary, after resuming
            await pilot.press("e")
            assert monitor.early_stopping and app.training.trainer.early_stopping
            await pilot.press("e")
            assert not monitor.early_stopping and not app.training.trainer.early_stopping
            await pilot.press("space")
            await wait_for(pilot, lambda: any("manual" in str(line.text) for line in
                                              monitor.query_one("#mon-log").lines), what="manual save")
            await pilot.press("l", "m")
            chart = monitor.query_one(LossChart)
            assert chart.log_scale and not chart.smoothing
            # the palette offers the same commands
            names = [c.title for c in app.get_system_commands(monitor)]
            assert "Pause / resume training" in names and "Stop training" in names
            await pilot.press("x")
            await pilot.pause()
            await wait_screen(pilot, "ConfirmScreen")
            # the dialog says its keys: the monitor's footer stays in view beneath it
            assert static_text(app.screen.query_one("#dialog-keys")).startswith("y  Stop    n or Esc  ")
            await pilot.press("n")  # cancel: still training
            await pilot.pause()
            assert app.training.running
            await pilot.press("x")
            await pilot.pause()
            await pilot.press("y")
            await wait_screen(pilot, "SummaryScreen")
            assert "stopped by you" in static_text(app.screen.query_one("#sum-text"))

    run(drive())
    last = tmp_path / "runs" / "keys" / "last"
    assert (last / "manifest.json").exists()

    # quitting during a run stops the worker, which saves `last`, then the app exits
    app = make_app(tmp_path)

    async def quit_midway():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.start_training(cfg, resume_from="latest")
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.last_train is not None, what="train event")
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: not app.training.running, what="worker to end", timeout=30)
            await pilot.pause(0.5)

    run(quit_midway())
    from llmtui.engine.training.checkpoint import checkpoint_step
    stopped_at = checkpoint_step(last)
    assert stopped_at > 0

    # the hardware screen lists the run; choosing it opens it (never starts it);
    # Resume asks how far to train, then continues from the checkpoint
    app = make_app(tmp_path)

    async def resume():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            options = app.screen.query_one("#run-list")
            await wait_for(pilot, lambda: options.option_count == 1, what="the run listed")
            assert options.get_option_at_index(0).id == "keys"
            assert options.highlighted == 0          # highlighted without pressing Down
            options.focus()
            await pilot.press("enter")
            await wait_screen(pilot, "RunScreen")
            await wait_for(pilot, lambda: app.screen.info is not None, what="the run read")
            assert app.training is None               # opening a run never starts it
            await pilot.press("r")
            await wait_screen(pilot, "NumberScreen")
            await pilot.press("enter")                # the proposed max_steps
            monitor = app.screen
            await wait_screen(pilot, "MonitorScreen")
            await wait_for(pilot, lambda: monitor.info is not None, what="start event")
            assert monitor.info.resumed_from and monitor.info.start_step == stopped_at
            app.training.stop()
            await wait_screen(pilot, "SummaryScreen")

    run(resume())


@pytest.mark.train
@pytest.mark.tui
def test_worker_exception_is_shown_and_app_stays_usable(tmp_path):
    from llmtui.engine.config.loading import load_config

    def broken(cfg, *, resume_from=None, overwrite=False, prepared=None):
        from llmtui.engine.training.events import EventBuffer

        class Broken:
            events = EventBuffer()

            def send(self, command):
                pass

            def run(self):
                raise RuntimeError("the GPU caught fire")
        return Broken()

    app = make_app(tmp_path, trainer_factory=broken)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"']))
            monitor = app.screen
            await wait_for(pilot, lambda: monitor.status == "failed", what="failure shown")
            log = "\n".join(str(line.text) for line in monitor.query_one("#mon-log").lines)
            assert "RuntimeError: the GPU caught fire" in log
            assert app.is_running
            await pilot.press("escape")
            await pilot.pause()
            await wait_screen(pilot, "HardwareScreen")

    run(drive())


@pytest.mark.tui
def test_scripted_monitor_commands_and_summary(tmp_path):
    from fakes import scripted_factory
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.training.commands import Pause, SampleNow, SaveNow, SetEarlyStopping, Stop

    factory = scripted_factory()
    app = make_app(tmp_path, trainer_factory=factory)

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"']))
            monitor = app.screen
            await wait_for(pilot, lambda: factory.made and factory.made[0].emitted.is_set(), what="script")
            await wait_for(pilot, lambda: monitor.step == 300, what="events shown")
            chart = monitor.query_one("#mon-chart")
            stats = monitor.query_one("#mon-stats")
            await pilot.pause(0.3)
            renders, updates = chart.renders, stats.updates
            for _ in range(3):
                monitor.poll()  # nothing new: nothing redrawn
                await pilot.pause()
            assert chart.renders == renders and stats.updates == updates
            await pilot.press("space", "s", "g", "e")
            trainer = factory.made[0]
            assert trainer.commands == [Pause(), SaveNow(), SampleNow(), SetEarlyStopping(True)]
            await pilot.press("x", "y")
            await wait_screen(pilot, "SummaryScreen")
            assert Stop() in trainer.commands

    run(drive())


@pytest.mark.tui
def test_quitting_while_training_says_stopping_until_the_run_has_saved(tmp_path):
    """Ctrl+Q during a run: the monitor says it is stopping (saving) while the trainer
    finishes, and the app exits once the run has ended, not before."""
    import threading

    from fakes import ScriptedTrainer
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.training.commands import Stop

    saved = threading.Event()   # the test lets the "save" end

    class SavesSlowly(ScriptedTrainer):
        def send(self, command):
            if isinstance(command, Stop):   # the stop takes effect once saved is set
                self.commands.append(command)
                threading.Thread(target=lambda: saved.wait(30) and self._stop.set(), daemon=True).start()
            else:
                super().send(command)

    made: list[SavesSlowly] = []
    app = make_app(tmp_path, trainer_factory=lambda cfg, **kw: made.append(SavesSlowly(cfg, **kw)) or made[-1],
                   refresh_rate=0.05)

    async def drive():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            app.start_training(load_config("cpu", [f'run.out_dir="{tmp_path / "runs"}"']))
            monitor = app.screen
            await wait_for(pilot, lambda: made and made[0].emitted.is_set() and monitor.step == 300,
                           what="events shown")
            await pilot.press("ctrl+q")
            status = monitor.query_one("#mon-status")
            await wait_for(pilot, lambda: "stopping: saving a checkpoint" in static_text(status), what="stopping")
            await pilot.pause(0.3)
            assert app.is_running and app.training.running
            saved.set()
            await wait_for(pilot, lambda: not app.is_running, what="the app to exit", timeout=30)

    run(drive())
    assert app.return_code == 0 and Stop() in made[0].commands


@pytest.mark.tui
def test_real_detection_runs_in_a_worker(tmp_path):
    app = make_app(tmp_path, hardware=None)

    async def drive():
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            # first paint happened before detection finished (it imports torch)
            await wait_screen(pilot, "HardwareScreen")
            await wait_for(pilot, lambda: app.recommendation is not None, what="detection", timeout=60)
            await pilot.pause()
            assert "CPU" in static_text(app.screen.query_one("#hw-info"))
            assert not app.screen.query_one("#use-recommended").disabled

    run(drive())


@pytest.mark.tui
def test_the_wizard_shows_the_format_auto_precision_picks(tmp_path):
    """training.precision offers "auto"; the Derived panel's time says the format the run
    will use: on a CPU with AMX, fp32 for the 96-wide cpu preset and bf16 from 192 wide."""
    import dataclasses

    from pilot import open_recommended
    from textual.widgets import Select

    from fakes import fake_hardware_cpu_only
    from llmtui.engine.planning.cpu import AMX_BF16_MIN_WIDTH

    hardware = fake_hardware_cpu_only()
    hardware.cpu = dataclasses.replace(hardware.cpu, bf16_native=True, flags=hardware.cpu.flags + ["amx_bf16"])
    app = make_app(tmp_path, hardware=hardware)

    async def journey():
        async with app.run_test(size=(100, 40)) as pilot:
            wizard = await open_recommended(pilot)
            # a Select refuses a value it does not offer
            field = await set_field(pilot, wizard, "training.precision", "auto")
            assert isinstance(field.control_widget, Select) and app.session.doc.get("training.precision") == "auto"

            def per_step() -> str:
                text = static_text(wizard.query_one("#wizard-derived"))
                return next(line for line in text.splitlines() if "per step" in line)
            await wait_for(pilot, lambda: per_step().endswith("fp32"), what="fp32 at 96 wide")
            await set_field(pilot, wizard, "model.n_embd", str(AMX_BF16_MIN_WIDTH))
            await wait_for(pilot, lambda: per_step().endswith("bf16"), what="bf16 at 192 wide")

    run(journey())


@pytest.mark.tui
def test_at_80x24_the_wizard_shows_time_and_memory_without_scrolling(tmp_path):
    """How long and will it fit come first in the Derived panel: on an 80x24 terminal both
    show as the wizard opens (they were below the fold, after the model and batch)."""
    from pilot import open_recommended, screen_text

    app = make_app(tmp_path)

    async def journey():
        async with app.run_test(size=(80, 24)) as pilot:
            await open_recommended(pilot)
            await wait_for(pilot, lambda: "per step" in screen_text(app), what="the time per step")
            text = screen_text(app)
            assert "whole run" in text and "needs" in text, text

    run(journey())
