"""Generate text from a checkpoint, streamed as it is generated.

Opened with a checkpoint (or run) directory: from the summary after training,
and from anywhere that has one (the runs view). A prompt box with the
session's history (up/down), temperature (0 = greedy), top-k and max tokens;
Enter generates, Esc stops a generation (and goes back when none runs).

The model loads and generates in a thread worker, which posts the text in
pieces (at most every GENERATION_POST_SECONDS, so a fast model does not
flood the UI) and never touches a widget; the UI stays responsive.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static, TextArea
from textual.worker import get_current_worker

from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.fields import escape_text, unescape_text
from llmtui.tui.messages import GenerationEnded, TextGenerated, WorkerFailed
from llmtui.tui.session import SampleSettings
from llmtui.tui.widgets.error_text import ErrorText
from llmtui.tui.widgets.prompt_input import PromptInput
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from llmtui.engine.training.loader import LoadedModel  # torch: only in the worker

GENERATION_POST_SECONDS = 0.1


class GenerateScreen(ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "generate"
    BINDINGS = [Binding("escape", "stop_or_back", "Stop / Back")]

    def __init__(self, checkpoint: str | Path, settings: SampleSettings | None = None):
        super().__init__()
        self.checkpoint = Path(checkpoint)
        self.settings = settings or SampleSettings()   # what the fields start with
        self.loaded: LoadedModel | None = None   # the model, loaded by the worker on first use
        self._stop = threading.Event()
        self._streaming = False               # the status says "Generating…" since the first text
        self.generating = False

    def compose(self) -> ComposeResult:
        d = self.settings
        yield TitleBar()
        with Vertical(id="gen-body"):
            yield Static(f"checkpoint {self.checkpoint}", id="gen-checkpoint", markup=False)
            with Horizontal(classes="gen-row"):
                yield Label("temperature", classes="gen-label")
                yield Input(str(d.temperature), compact=True, type="number", id="gen-temperature",
                            tooltip="0 = greedy: always the most likely token")
                yield Label("top-k", classes="gen-label")
                yield Input(str(d.top_k), compact=True, type="integer", id="gen-top-k",
                            tooltip="sample among the k most likely tokens (0 = all)")
                yield Label("max tokens", classes="gen-label")
                yield Input(str(d.max_tokens), compact=True, type="integer", id="gen-tokens")
            with Horizontal(classes="gen-row"):
                yield Label("prompt", classes="gen-label")
                yield PromptInput(escape_text(d.prompt), history=self.app.session.prompts,
                                  compact=True, id="gen-prompt",
                                  placeholder="text to continue (\\n for a new line; up/down: earlier prompts)")
                yield Button("Generate", id="gen-go", variant="primary", compact=True)
                yield Button("Stop", id="gen-stop", variant="error", compact=True, disabled=True)
            yield ErrorText(id="gen-error")
            yield TextArea("", read_only=True, soft_wrap=True, show_line_numbers=False, id="gen-output")
            yield Static("", id="gen-status", markup=False)
        with Horizontal(id="gen-buttons"):
            yield Button("◂ Back", id="gen-back", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#gen-prompt", PromptInput).focus()

    # -- buttons and keys -----------------------------------------------------------

    @on(Button.Pressed, "#gen-go")
    def _go_pressed(self) -> None:
        self.action_generate()

    @on(Input.Submitted, "#gen-prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_generate()

    @on(Button.Pressed, "#gen-stop")
    def _stop_pressed(self) -> None:
        self.action_stop()

    @on(Button.Pressed, "#gen-back")
    def _back_pressed(self) -> None:
        self.action_stop_or_back()

    def action_stop(self) -> None:
        if self.generating:
            self._stop.set()
            self.query_one("#gen-status", Static).update("Stopping…")

    def action_stop_or_back(self) -> None:
        if self.generating:
            self.action_stop()
        else:
            self.app.pop_screen()

    def _settings(self) -> SampleSettings | None:
        """The settings the fields give, or None (the error line says why)."""
        error = self.query_one("#gen-error", ErrorText)
        try:
            temperature = float(self.query_one("#gen-temperature", Input).value)
            top_k = int(self.query_one("#gen-top-k", Input).value)
            tokens = int(self.query_one("#gen-tokens", Input).value)
            if not (0 <= temperature <= 10 and 0 <= top_k <= 10**9 and 1 <= tokens <= 100_000):
                raise ValueError
        except ValueError:
            error.show("temperature must be 0..10 (0 = greedy), top-k 0 or more (0 = all), "
                       "max tokens 1..100000")
            return None
        error.show(None)
        return replace(self.settings, temperature=temperature, top_k=top_k, max_tokens=tokens)

    def action_generate(self) -> None:
        if self.generating:
            return
        settings = self._settings()
        if settings is None:
            return
        prompt_input = self.query_one("#gen-prompt", PromptInput)
        prompt_text = prompt_input.value
        prompt_input.remember(prompt_text)
        prompt = unescape_text(prompt_text)
        output = self.query_one("#gen-output", TextArea)
        if output.text:
            output.insert("\n\n" + "─" * 20 + "\n", output.document.end)
        output.insert(prompt, output.document.end)
        self._stop.clear()
        self._streaming = False
        self._set_generating(True)
        self.query_one("#gen-status", Static).update("Generating…" if self.loaded else "Loading the model…")
        self.generate(replace(settings, prompt=prompt))

    def _set_generating(self, on_: bool) -> None:
        self.generating = on_
        self.query_one("#gen-go", Button).disabled = on_
        self.query_one("#gen-stop", Button).disabled = not on_

    # -- the worker ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def generate(self, settings: SampleSettings) -> None:
        from llmtui.engine.inference.generate import stream  # torch: off the UI thread
        from llmtui.engine.training.loader import load_checkpoint_model

        if self.loaded is None:
            self.loaded = load_checkpoint_model(self.checkpoint, settings.device)
        worker = get_current_worker()   # cancelled when the screen goes or the app exits
        start = last_post = time.monotonic()
        pending, count = [], 0
        for piece in stream(self.loaded, settings.prompt, max_tokens=settings.max_tokens,
                            temperature=settings.temperature, top_k=settings.top_k,
                            seed=settings.seed, stop=lambda: self._stop.is_set() or worker.is_cancelled):
            pending.append(piece)
            count += 1          # one piece per token
            now = time.monotonic()
            if now - last_post >= GENERATION_POST_SECONDS:
                self.post_message(TextGenerated("".join(pending)))
                pending, last_post = [], now
        if pending:
            self.post_message(TextGenerated("".join(pending)))
        self.post_message(GenerationEnded(count, time.monotonic() - start, self._stop.is_set()))

    @on(TextGenerated)
    def _text(self, event: TextGenerated) -> None:
        output = self.query_one("#gen-output", TextArea)
        output.insert(event.text, output.document.end)
        output.scroll_end(animate=False)
        if not self._streaming:     # once: updating a Static lays the screen out again
            self._streaming = True
            self.query_one("#gen-status", Static).update("Generating… (Esc stops)")

    @on(GenerationEnded)
    def _ended(self, event: GenerationEnded) -> None:
        self._set_generating(False)
        how = "stopped" if event.stopped else "done"
        rate = event.tokens / max(event.seconds, 1e-9)
        self.query_one("#gen-status", Static).update(
            f"{how}: {event.tokens:,} tokens in {event.seconds:.1f} s ({rate:,.0f} tokens/s)")

    @on(WorkerFailed)
    def _failed(self, event: WorkerFailed) -> None:
        self._set_generating(False)
        self.query_one("#gen-status", Static).update(event.text)
