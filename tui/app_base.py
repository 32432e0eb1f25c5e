"""The app as its screens and widgets see it: the shared state and what they may ask of it.

Screens type `self.app` as LlmtuiAppBase (`app = getters.app(LlmtuiAppBase)`), and
LlmtuiApp (tui/app.py) is the one implementation. This module imports no screen, so
the screens can import it without an import cycle (app.py imports the screens).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual.app import App

from llmtui.tui.session import SampleSettings, Session
from llmtui.tui.training import TrainingRun

if TYPE_CHECKING:
    from textual.worker import Worker

    from llmtui.engine.planning.hardware import HardwareInfo
    from llmtui.engine.planning.recommend import Recommendation


class LlmtuiAppBase(App[int]):
    """Shared state (set by LlmtuiApp.__init__) and the app's methods screens call."""

    hardware: HardwareInfo | None   # None until detection ends
    recommendation: Recommendation | None
    detection_error: str | None
    runs_dir: Path
    refresh_rate: float             # the monitor's polling period, seconds
    memory_probe: Callable[[str], list[tuple]]
    session: Session                # the config document being edited
    training: TrainingRun | None    # the run being trained, if any

    if TYPE_CHECKING:  # implemented by LlmtuiApp; declared here only for the type checker
        def reference_curve(self, cfg: Any) -> Any: ...
        def open_wizard(self, doc: Any) -> None: ...
        def open_data_step(self) -> None: ...
        def open_runs(self, folder: Path | None = None) -> None: ...
        def open_run(self, run_dir: Path) -> None: ...
        def open_generate(self, checkpoint: str | Path, settings: SampleSettings | None = None) -> None: ...
        def open_evaluate(self, checkpoint: str | Path, device: str = "auto") -> None: ...
        def new_run(self) -> None: ...
        def resume_run(self, run_dir: Path, max_steps: int) -> None: ...
        def start_training(self, cfg: Any, resume_from: str | None = None, overwrite: bool = False) -> None: ...
        def background_monitor(self) -> Any: ...
        def action_show_training(self) -> None: ...
        def action_quit_app(self, code: int = 0) -> None: ...
        def on_worker_state_changed(self, event: Worker.StateChanged) -> None: ...
