"""Generate text from a checkpoint: prompt, length, temperature, and the result.

Sampling loads the model (torch) in a thread worker, which posts the text back
as a SampleReady message; a failure comes back through the app's central
worker-error handler as WorkerFailed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import getters, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.fields import escape_text, unescape_text
from llmtui.tui.messages import SampleReady, WorkerFailed
from llmtui.tui.session import SampleSettings
from llmtui.tui.worker_errors import ReportsWorkerErrors


class SampleBox(ReportsWorkerErrors, Vertical):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    DEFAULT_CSS = """
    SampleBox { height: auto; }
    SampleBox .sample-row { height: 1; margin-top: 1; }
    SampleBox .sample-row Input { width: 1fr; }
    SampleBox .sample-label { width: 13; padding-left: 1; color: $foreground-muted; }
    SampleBox .sample-row Button { margin-left: 2; }
    SampleBox #sample-output { height: auto; margin-top: 1; }
    """

    def __init__(self, checkpoint: Path | None, settings: SampleSettings | None = None, **kwargs):
        super().__init__(**kwargs)
        self.checkpoint = checkpoint
        self.settings = settings or SampleSettings()

    def compose(self) -> ComposeResult:
        d = self.settings
        with Horizontal(classes="sample-row"):
            yield Label("prompt", classes="sample-label")
            yield Input(escape_text(d.prompt), compact=True, id="sample-prompt",
                        placeholder="text to continue (\\n for a new line)")
        with Horizontal(classes="sample-row"):
            yield Label("tokens", classes="sample-label")
            yield Input(str(d.max_tokens), compact=True, id="sample-tokens", type="integer")
            yield Label("temperature", classes="sample-label")
            yield Input(str(d.temperature), compact=True, id="sample-temperature",
                        type="number")
            yield Button("Sample", id="sample", variant="primary", compact=True,
                         disabled=self.checkpoint is None)
        yield Static("" if self.checkpoint else "No checkpoint was saved, so there is nothing to "
                     "sample from.", id="sample-output", markup=False)

    @on(Button.Pressed, "#sample")
    def _sample_pressed(self) -> None:
        self.sample()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.sample()

    def sample(self) -> None:
        button = self.query_one("#sample", Button)
        if button.disabled or self.checkpoint is None:
            return
        output = self.query_one("#sample-output", Static)
        try:
            tokens = int(self.query_one("#sample-tokens", Input).value)
            temperature = float(self.query_one("#sample-temperature", Input).value)
            if not 1 <= tokens <= 100000 or not 0 < temperature <= 10:
                raise ValueError
        except ValueError:
            output.update("tokens must be 1..100000 and temperature > 0 and <= 10")
            return
        prompt = unescape_text(self.query_one("#sample-prompt", Input).value)
        button.disabled = True
        output.update("Sampling…")
        self._generate(self.checkpoint, replace(self.settings, prompt=prompt, max_tokens=tokens,
                                                temperature=temperature))

    @work(thread=True, exclusive=True, group="sample", exit_on_error=False)
    def _generate(self, path: Path, d: SampleSettings) -> None:
        from llmtui.engine.training.loader import sample_from_checkpoint  # torch: off the UI thread

        text = sample_from_checkpoint(path, d.prompt, d.max_tokens, temperature=d.temperature,
                                      top_k=d.top_k, seed=d.seed, device=d.device)
        self.post_message(SampleReady(d.prompt + text))

    @on(SampleReady)
    def _sampled(self, event: SampleReady) -> None:
        self.query_one("#sample-output", Static).update(event.text)
        self.query_one("#sample", Button).disabled = False

    @on(WorkerFailed)
    def _failed(self, event: WorkerFailed) -> None:
        self.query_one("#sample-output", Static).update(event.text)
        self.query_one("#sample", Button).disabled = False
