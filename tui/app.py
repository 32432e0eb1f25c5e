"""llmtui's Textual app: hardware screen, config wizard, data step, live monitor,
runs view.

Import cost matters (first paint target 1.5 s): this module and the screens
import Textual and the light engine modules (schema, config) only. Anything
that pulls torch (hardware detection, the trainer, sampling) is imported
inside thread workers or handlers.

Screens (tui/screens/): HardwareScreen (default) -> WizardScreen -> DataScreen
-> MonitorScreen -> SummaryScreen; RunsScreen -> RunScreen (one run, live
when another process trains it); GenerateScreen and EvaluateScreen open on a
checkpoint (from the summary and from a run); dialogs are modal screens. Shared
state lives on the app: `hardware`, `recommendation`, `session` (the config
document being edited) and `training` (the TrainingRun, if any).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Callable, Iterable

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from llmtui.engine.training.commands import StopReason
from llmtui.exits import EXIT_HANGUP, EXIT_INTERRUPTED
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.session import SampleSettings, Session
from llmtui.tui.training import TrainingRun

if TYPE_CHECKING:   # the screens load when first shown (start-up time)
    from llmtui.tui.messages import HardwareReady
    from llmtui.tui.screens.monitor import TrainingFinished

CSS_FILES: list[str | PurePath] = ["app.tcss", "hardware.tcss", "wizard.tcss", "data.tcss", "monitor.tcss", "summary.tcss",
             "runs.tcss", "generate.tcss", "evaluate.tcss"]


class LlmtuiApp(LlmtuiAppBase):
    TITLE = "llmtui"
    CSS_PATH = CSS_FILES
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Ctrl+C copies a selection as in any Textual app; with nothing selected it does what
        # it does headless: finish the step, save `last`, quit, exit 130. One binding for
        # both (priority: the screen's copy binding would otherwise be the one the keys
        # panel lists, as "Copy selected text" alone)
        Binding("ctrl+c", "interrupt", "Copy selection, else quit", show=False, priority=True,
                tooltip="(a run being trained saves first)"),
        Binding("question_mark,f1", "toggle_keys", "Keys", key_display="?"),
        # back to the monitor from a screen opened over it while it trains (the top line says
        # so); before a screen's own ctrl+t (the data step's Start training, refused then)
        Binding("ctrl+t", "show_training", "Back to the training run", show=False, priority=True),
        Binding("escape", "hide_keys", "Close keys", show=False, priority=True),
    ]

    def __init__(self, *, hardware: Any = None, recommendation: Any = None,
                 runs_dir: str | Path = "checkpoints", refresh_rate: float = 1.0,
                 memory_probe: Callable[[str], list[tuple]] | None = None,
                 trainer_factory: Callable[..., Any] | None = None,
                 open_run: str | Path | None = None, open_config: str | Path | None = None):
        """`hardware` (engine HardwareInfo) and `recommendation` may be given (tests,
        snapshots); otherwise detection runs in a worker. `refresh_rate` is the
        monitor's polling period in seconds. `open_run` opens the app on that run
        directory (`llmtui watch`), `open_config` on that config in the wizard."""
        super().__init__()
        self.hardware = hardware
        self.recommendation = recommendation
        self.runs_dir = Path(runs_dir)
        self.refresh_rate = float(refresh_rate)
        self.memory_probe = memory_probe or self.probe_memory
        self.trainer_factory = trainer_factory
        self.open_run_at_start = Path(open_run) if open_run is not None else None
        self.open_config_at_start = Path(open_config) if open_config is not None else None
        self.session = Session()
        self.training: TrainingRun | None = None
        self.detection_error: str | None = None
        self._quitting = False
        self._exit_code = 0

    # -- start-up ------------------------------------------------------------------

    def on_mount(self) -> None:
        from llmtui.tui.settings import load_settings

        theme = load_settings().get("theme")
        if isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self._handle_signals(True)
        if self.open_run_at_start is not None:
            self.call_after_refresh(self.open_run, self.open_run_at_start)
        elif self.open_config_at_start is not None:
            self.call_after_refresh(self._open_config_at_start)

    def _handle_signals(self, on: bool) -> None:
        """SIGTERM and SIGHUP (the terminal or SSH session closed) end the app as Ctrl+C
        does: the step finishes, `last` is saved, exit 130 (129 for SIGHUP)."""
        import asyncio
        import signal

        try:
            loop = asyncio.get_running_loop()
            if on:
                loop.add_signal_handler(signal.SIGTERM, self.action_quit_app, EXIT_INTERRUPTED)
                # not through the loop: the terminal is gone, so before Textual's next write
                # blocks or fails on it, the output goes to /dev/null (in the handler itself)
                self._previous_sighup = signal.signal(signal.SIGHUP, self._hung_up)
            else:
                loop.remove_signal_handler(signal.SIGTERM)
                if getattr(self, "_previous_sighup", None) is not None:
                    signal.signal(signal.SIGHUP, self._previous_sighup)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass   # not the main thread, or a platform without these signals

    def _hung_up(self, signum, frame) -> None:
        """The terminal is gone: nothing can be drawn or asked any more, and Textual's
        writer may already have died on it (its next write would block for ever). So
        the output goes to /dev/null, training stops (the step finishes, `last` is
        saved) and the process exits 129 once the run has ended, without Textual's
        orderly shutdown, which would write to the terminal."""
        import os
        import sys
        import threading

        from llmtui.exits import silence

        for stream in (sys.__stderr__, sys.__stdout__):
            silence(stream)
        run = self.training

        def exit_when_saved() -> None:
            if run is not None and run.running:
                run.stop(StopReason.INTERRUPTED)
                run.wait()
            os._exit(EXIT_HANGUP)

        threading.Thread(target=exit_when_saved, name="llmtui-hangup", daemon=True).start()

    def _remember_theme(self, theme) -> None:
        from llmtui.tui.settings import save_setting
        save_setting("theme", theme.name)

    def _open_config_at_start(self) -> None:
        from llmtui.engine.config.document import ConfigDocument
        from llmtui.engine.config.presets import is_preset
        from llmtui.engine.errors import UserError

        if self.open_config_at_start is None:
            return
        try:
            if is_preset(str(self.open_config_at_start)) and not self.open_config_at_start.exists():
                doc = ConfigDocument.from_preset(str(self.open_config_at_start))   # `llmtui cpu`
            else:
                doc = ConfigDocument.load(self.open_config_at_start)
        except UserError as exc:
            self.notify(str(exc), title="Cannot open the config", severity="error", timeout=10, markup=False)
            return
        self.open_wizard(doc)

    def probe_memory(self, device: str) -> list[tuple]:
        """Memory rows measured now: GPU used/total from NVML on CUDA, system RAM on CPU.

        Only called once the trainer has started (torch is loaded by then), and
        cheap: one NVML query or one read of /proc/meminfo."""
        from llmtui.tui.format import fmt_used_total

        rows: list[tuple] = []
        if str(device).startswith("cuda"):
            torch_index = int(device.split(":", 1)[1]) if ":" in str(device) else 0
            nvml_index = torch_index
            for gpu in getattr(self.hardware, "gpus", None) or []:
                if getattr(gpu, "torch_index", None) == torch_index:
                    nvml_index = gpu.index
            try:
                from llmtui.engine.planning.hardware import gpu_memory_used
                used = gpu_memory_used(nvml_index)
            except Exception:  # no NVML: the torch figures of the train events remain
                used = None
            if used is not None:
                used_b, total_b = used
                rows.append(("GPU used", fmt_used_total(used_b, total_b),
                             "warn" if used_b > 0.95 * total_b else ""))
            return rows
        try:
            import psutil
            vm = psutil.virtual_memory()
        except Exception:
            return rows
        used_b = vm.total - vm.available
        rows.append(("RAM", fmt_used_total(used_b, vm.total),
                     "warn" if vm.available < 0.1 * vm.total else ""))
        return rows

    def get_default_screen(self) -> Screen:
        from llmtui.tui.screens.hardware import HardwareScreen
        return HardwareScreen()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Runs", f"Every run in {self.runs_dir}/: open, compare, resume, sample",
                            self.open_runs)
        yield SystemCommand("Open a run…", "Pick a run to see, resume, sample or delete", self.open_runs)
        from llmtui.engine.config.presets import preset_names
        for name in preset_names():
            yield SystemCommand(f"New run from preset {name}", f"Open presets/{name}.toml in the wizard",
                                lambda name=name: self.new_run_from_preset(name))
        commands = getattr(screen, "palette_commands", None)
        if commands is not None:
            yield from commands()

    def on_hardware_ready(self, _: HardwareReady) -> None:
        """Detection finished: screens showing estimates compute them again."""
        for screen in self.screen_stack:
            refresh = getattr(screen, "refresh_derived", None)
            if refresh is not None:
                refresh()

    def reference_curve(self, cfg):
        """The shipped reference curve of this recipe, or None."""
        from llmtui.engine.config.reference import reference_for
        return reference_for(cfg)

    # -- navigation ------------------------------------------------------------------

    def open_wizard(self, doc) -> None:
        from llmtui.tui.screens.wizard import WizardScreen

        if self.session.doc is not doc:
            self.session = Session(doc=doc)
        self.push_screen(WizardScreen(doc))

    def open_data_step(self) -> None:
        from llmtui.tui.screens.data import DataScreen
        self.push_screen(DataScreen(self.session.doc))

    def open_runs(self, folder: Path | None = None) -> None:
        from llmtui.tui.screens.runs import RunsScreen
        self.push_screen(RunsScreen(folder or self.runs_dir))

    def open_run(self, run_dir: Path) -> None:
        from llmtui.tui.screens.run_view import RunScreen
        self.push_screen(RunScreen(Path(run_dir)))

    def open_generate(self, checkpoint: str | Path, settings: SampleSettings | None = None) -> None:
        """The generate screen on a checkpoint or run directory, its fields set from `settings`."""
        from llmtui.tui.screens.generate import GenerateScreen
        self.push_screen(GenerateScreen(checkpoint, settings))

    def open_evaluate(self, checkpoint: str | Path, device: str = "auto") -> None:
        """The evaluation screen on a checkpoint or run directory."""
        from llmtui.tui.screens.evaluate import EvaluateScreen
        self.push_screen(EvaluateScreen(checkpoint, device))

    def new_run_from_preset(self, name: str) -> None:
        from llmtui.tui.screens.hardware import HardwareScreen

        self.go_home()
        if isinstance(self.screen, HardwareScreen):
            self.screen.open_preset(name)

    def background_monitor(self):
        """The monitor of this session's run when another screen (not a dialog) is shown
        over it (browsing while it trains, or after it ended there), else None."""
        from textual.screen import ModalScreen

        from llmtui.tui.screens.monitor import MonitorScreen

        stack = self.screen_stack
        for i, screen in enumerate(stack):
            if isinstance(screen, MonitorScreen):
                if any(not isinstance(above, ModalScreen) for above in stack[i + 1:]):
                    return screen
        return None

    def action_show_training(self) -> None:
        """Back to the monitor: the screens opened over it close (a config with unsaved
        changes among them asks first)."""
        monitor = self.background_monitor()
        if monitor is None:
            return
        above = self.screen_stack[self.screen_stack.index(monitor) + 1:]
        dirty = [s for s in above if getattr(getattr(s, "doc", None), "dirty", False)
                 and type(s).__name__ == "WizardScreen"]

        def back(yes: bool | None = True) -> None:
            if yes:
                while self.screen is not monitor and monitor in self.screen_stack:
                    self.pop_screen()

        if dirty:
            from llmtui.tui.screens.dialogs import ConfirmScreen

            doc = getattr(dirty[-1], "doc")     # a WizardScreen's (imported lazily: no cycle)
            self.push_screen(ConfirmScreen(f"{doc.path or doc.origin} has changes that are not saved. "
                                           "Go back to the training run and discard them?", yes="Discard",
                                           title="Unsaved changes"), back)
            return
        back()

    def go_home(self) -> bool:
        """Back to the hardware screen; False (and a notice) while training runs."""
        from llmtui.tui.screens.hardware import HardwareScreen

        if self.training is not None and self.training.running:
            self.notify("Training is still running.", severity="warning")
            return False
        while len(self.screen_stack) > 1 and not isinstance(self.screen, HardwareScreen):
            self.pop_screen()
        return True

    def new_run(self) -> None:
        from llmtui.tui.screens.hardware import HardwareScreen

        if self.go_home() and isinstance(self.screen, HardwareScreen):
            self.screen.action_rescan()

    # -- training ---------------------------------------------------------------------

    def start_training(self, cfg, resume_from: str | None = None, overwrite: bool = False) -> None:
        from llmtui.engine.training.runs import newest_checkpoint_step, run_dir_of

        if self.training is not None and self.training.running:
            self.notify("A run is already training.", severity="warning")
            return
        run_dir = run_dir_of(cfg)
        step = None if resume_from or overwrite else newest_checkpoint_step(run_dir)
        if step is not None:
            from llmtui.tui.screens.dialogs import ChoiceScreen

            question = (f"{run_dir} already holds checkpoints (up to step {step:,}).\n"
                        "Resume that run, or delete its checkpoints and start over?")
            note = self._resume_lr_note(run_dir, cfg)
            if note:
                question += f"\n\nResuming with this config: {note}"

            def chosen(choice: str | None) -> None:
                if choice == "resume":
                    self.start_training(cfg, resume_from="latest")
                elif choice == "overwrite":
                    self.start_training(cfg, overwrite=True)

            self.push_screen(ChoiceScreen(question, [("resume", "Resume", "primary"),
                                                     ("overwrite", "Start over", "error"),
                                                     ("cancel", "Cancel", "default")],
                                          title="This run exists"), chosen)
            return
        from llmtui.tui.screens.monitor import MonitorScreen

        # the data step's preparation, if it is of these data settings (the trainer checks the files)
        prepared = self.session.data if self.session.data_is_current() else None
        run = TrainingRun(cfg, resume_from=resume_from, overwrite=overwrite, prepared=prepared,
                          factory=self.trainer_factory)
        self.training = run
        self.push_screen(MonitorScreen(run))
        self.run_worker(run.run, thread=True, exit_on_error=False, group="training", name="training")

    def _resume_lr_note(self, run_dir: Path, cfg) -> str | None:
        """What resuming `run_dir` with `cfg` does to the learning rate where it goes on."""
        from llmtui.engine.training.checkpoint import candidates
        from llmtui.engine.training.runs import resume_point

        if cfg.training.epochs > 0:    # the length comes from the data: known once training starts
            return None
        newest = candidates(run_dir)   # not verified here (the resume does it): a note, no hashing
        point = resume_point(newest[0]) if newest else None
        return point.lr_change(cfg.training.max_steps, cfg) if point is not None else None

    def resume_run(self, run_dir: Path, max_steps: int) -> None:
        """Continue a run from its newest intact checkpoint, to `max_steps`."""
        from llmtui.engine.config.document import ConfigDocument
        from llmtui.engine.errors import UserError

        try:
            doc = ConfigDocument.load(run_dir / "config.toml")
            doc.set("run.out_dir", str(run_dir.parent))
            doc.set("run.name", run_dir.name)
            doc.set("training.max_steps", max_steps)
            doc.set("training.epochs", 0.0)
            cfg = doc.to_config()
        except UserError as exc:
            self.notify(str(exc), title="Cannot resume", severity="error", timeout=10, markup=False)
            return
        self.session = Session(doc=doc)
        self.start_training(cfg, resume_from="latest")

    def on_training_finished(self, event: TrainingFinished) -> None:
        """The monitor's run ended and every event of it is shown."""
        if self._quitting:
            self.exit(self._exit_code, return_code=self._exit_code)
            return
        monitor = event.monitor
        run = monitor.run
        if run.result is None:
            if run.error_is_notice and run.error is not None:
                self.notify(run.error, title="Nothing to train", timeout=10, markup=False)
            return  # failed or cancelled: the monitor shows why and stays usable
        summary = monitor.summary_screen()
        if summary is None:
            return
        if monitor not in self.screen_stack:
            return
        from textual.screen import ModalScreen

        while self.background_monitor() is None and self.screen is not monitor \
                and isinstance(self.screen, ModalScreen):
            self.pop_screen()  # e.g. a stop confirmation that is moot now (not a dialog of another screen)
        if self.screen is monitor:
            self.push_screen(summary)
        elif self.background_monitor() is monitor:    # the user is browsing elsewhere
            self.notify(f"{run.cfg.run.name} finished at step {summary.done.steps:,}. "
                        "Ctrl+T shows its monitor (enter: the summary).", title="Training finished",
                        timeout=10, markup=False)

    # -- quitting ---------------------------------------------------------------------

    async def action_quit(self) -> None:
        self.action_quit_app()

    def action_quit_app(self, code: int = 0) -> None:
        """Quit; while training, stop it first (the step finishes, `last` is saved).
        A config with unsaved changes asks first."""
        run = self.training
        if run is None or not run.running:
            doc = self.session.doc
            if code == 0 and doc is not None and doc.dirty:
                from llmtui.tui.screens.dialogs import ConfirmScreen

                self.push_screen(ConfirmScreen(f"{doc.path or doc.origin} has changes that are not saved. "
                                               "Quit and lose them?", yes="Quit", title="Unsaved changes"),
                                 lambda yes: self.exit(0) if yes else None)
                return
            self.exit(code, return_code=code)
            return
        if self._quitting:
            self.notify("Still saving the checkpoint; quitting as soon as it is written.")
            return
        self._quitting = True
        self._exit_code = code
        run.stop(StopReason.INTERRUPTED if code in (EXIT_INTERRUPTED, EXIT_HANGUP) else StopReason.STOPPED)
        from llmtui.tui.screens.monitor import MonitorScreen, TrainingStopping
        for screen in self.screen_stack:
            if isinstance(screen, MonitorScreen) and screen.run is run:
                screen.post_message(TrainingStopping())
        self.notify("Stopping: finishing the step and saving a checkpoint, then quitting…",
                    timeout=60)
        self.set_interval(0.2, self._exit_when_stopped)

    def action_interrupt(self) -> None:
        """Ctrl+C: copy the selected text; with none, like headless: finish the step,
        save, quit with exit code 130."""
        selected = getattr(self.focused, "selected_text", None) or self.screen.get_selected_text()
        if selected:
            self.copy_to_clipboard(selected)
            return
        running = self.training is not None and self.training.running
        self.action_quit_app(EXIT_INTERRUPTED if running else 0)

    def _exit_when_stopped(self) -> None:
        if self.training is None or not self.training.running:
            self.exit(self._exit_code, return_code=self._exit_code)

    # -- the keys panel -------------------------------------------------------------

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_hide_keys(self) -> None:
        self.action_hide_help_panel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_training":
            return self.background_monitor() is not None
        if action == "hide_keys":
            # Esc closes the keys panel when it is open; otherwise it is the screen's
            return bool(self.screen.query("HelpPanel"))
        return True

    # -- workers ------------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's unexpected exception is reported: a notification,
        then WorkerFailed to the worker's screen so it can put its controls back."""
        if event.state != WorkerState.ERROR:
            return
        from llmtui.tui.messages import WorkerFailed, error_text

        error = event.worker.error
        text = error_text(error) if error is not None else f"worker {event.worker.name!r} failed"
        self.notify(text, title="Error", severity="error", timeout=10, markup=False)
        node = event.worker.node
        if node is not self:
            node.post_message(WorkerFailed(event.worker, text))

    def on_unmount(self) -> None:
        self._handle_signals(False)
        # however the app ends, the training thread is stopped (saving a checkpoint)
        # and joined, so no work is lost and the process can exit
        run = self.training
        if run is not None and run.running:
            run.stop()
            run.wait(timeout=120)


def run_app(open_run: str | Path | None = None, open_config: str | Path | None = None) -> int:
    """Run the app on this terminal; the exit code for `llmtui`."""
    refresh = float(os.environ.get("LLMTUI_REFRESH_SECONDS", "1.0") or 1.0)
    app = LlmtuiApp(refresh_rate=max(0.1, refresh), open_run=open_run, open_config=open_config)
    result = app.run()
    return app.return_code or (result if isinstance(result, int) else 0) or 0
