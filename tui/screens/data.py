"""The data step: choose the corpus and tokenizer, prepare the token files.

The tokenizer may be characters, a tiktoken encoding, or a byte-level BPE
trained on the corpus (vocab size, special tokens) or loaded from a
tokenizer.json; training it is the first stage of preparation, with progress.

Preparation runs `engine.data.prepare.prepare_data` in a thread worker; its progress
callback only appends to an EventBuffer, which this screen polls on a timer
(the same thread-safe path the monitor uses for training events).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    Footer,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
)

from llmtui.engine.config.schema import field_spec
from llmtui.engine.errors import ConfigError, UserError
from llmtui.engine.training.events import EventBuffer, PrepareEvent
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.cancellation import WorkerCancelled, cancellation_check
from llmtui.tui.fields import field_text, parse_field_text
from llmtui.tui.messages import DataPrepared, WorkerFailed
from llmtui.tui.widgets.error_text import ErrorText
from llmtui.tui.widgets.progress import StillProgressBar
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:   # numpy: loaded by the worker that prepares the data
    from llmtui.engine.data.prepare import PreparedData

PREPARE_HINT = "Token files are made once and reused while the corpus and tokenizer stay the same."
STALE_HINT = ("The corpus or tokenizer changed since the data was prepared: prepare again "
              "(starting training also prepares it).")
SOURCE_KINDS = [("builtin", "Built-in corpus (offline, Python's documentation)"),
                ("path", "A text file, a folder of .txt files, or a .bin/.npy token file")]


class ChoiceButton(RadioButton):
    """A radio button whose dot shows only when it is on. Textual draws the dot in
    both states and tells them apart by colour alone, so in a terminal with few
    colours (or a dark theme) both corpus choices looked selected."""

    # ToggleButton reads the class attribute BUTTON_INNER when it renders; a property
    # makes the dot depend on the button's state (mypy: a property over an attribute)
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]  # noqa: N802 - the name ToggleButton reads
        return "●" if self.value else " "


class DataScreen(ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "data"
    BINDINGS = [
        Binding("ctrl+r", "prepare", "Prepare data"),
        Binding("ctrl+t", "train", "Start training"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, doc):
        super().__init__()
        self.doc = doc
        self.progress_events = EventBuffer(maxlen=1000)
        self._seq = 0
        self._timer = None
        self._shown_key: tuple | None = None   # the data settings shown as prepared; () none

    def compose(self) -> ComposeResult:
        doc = self.doc
        source = doc.get("data.source")
        builtin = source == "builtin"
        yield TitleBar()
        with VerticalScroll(id="data-body"):
            with Vertical(classes="panel", id="data-corpus") as corpus:
                corpus.border_title = "Corpus"
                with RadioSet(id="source-kind"):
                    yield ChoiceButton(SOURCE_KINDS[0][1], value=builtin, id="kind-builtin")
                    yield ChoiceButton(SOURCE_KINDS[1][1], value=not builtin, id="kind-path")
                with Horizontal(classes="data-row"):
                    yield Input("" if builtin else source, placeholder="path to a file or folder",
                                compact=True, id="source-path", disabled=builtin)
                    yield Button("Browse…", id="browse", compact=True, disabled=builtin)
                yield ErrorText(id="source-error")
            with Vertical(classes="panel", id="data-tokenizer") as tok:
                tok.border_title = "Tokenizer"
                with Horizontal(classes="data-row"):
                    yield Label("kind", classes="data-label")
                    yield Select([("char: one token per character", "char"),
                                  ("bpe: a tiktoken encoding", "bpe"),
                                  ("trained: a byte-level BPE trained on this corpus", "trained")],
                                 value=doc.get("tokenizer.kind"), allow_blank=False, compact=True,
                                 id="tokenizer-kind")
                with Horizontal(classes="data-row"):
                    yield Label("encoding", classes="data-label")
                    yield Input(doc.get("tokenizer.encoding"), compact=True, id="tokenizer-encoding",
                                disabled=doc.get("tokenizer.kind") != "bpe")
                with Horizontal(classes="data-row"):
                    yield Label("vocab size", classes="data-label")
                    yield Input(str(doc.get("tokenizer.vocab_size")), compact=True, type="integer",
                                id="tokenizer-vocab")
                with Horizontal(classes="data-row"):
                    yield Label("special tokens", classes="data-label")
                    yield Input(field_text(field_spec("tokenizer.special_tokens"),
                                           doc.get("tokenizer.special_tokens")),
                                compact=True, id="tokenizer-special")
                with Horizontal(classes="data-row"):
                    yield Label("tokenizer.json", classes="data-label")
                    yield Input(doc.get("tokenizer.path"), compact=True, id="tokenizer-path",
                                placeholder="empty: train one on the corpus; or a tokenizer.json to use")
                with Horizontal(classes="data-row"):
                    yield Label("prepared in", classes="data-label")
                    yield Input(doc.get("data.prepared_dir"), compact=True, id="prepared-dir")
                yield ErrorText(id="tokenizer-error")
            with Vertical(classes="panel", id="data-prepare") as prep:
                prep.border_title = "Prepare"
                yield Static(PREPARE_HINT, id="prepare-status", markup=False)
                yield StillProgressBar(total=100, show_eta=False, id="prepare-progress")
                # paths and error messages are the user's text: shown as typed
                yield Static("", id="prepare-result", markup=False)
        with Horizontal(id="data-buttons"):
            yield Button("◂ Back", id="back", compact=True)
            yield Button("Prepare data", id="prepare", compact=True)
            yield Button("Start training ▸", id="train", variant="success", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#prepare-progress").display = False
        self.query_one("#source-kind", RadioSet).focus()
        self._enable_tokenizer_inputs(self.doc.get("tokenizer.kind"))
        self._show_data_state()

    # -- edits go straight into the shared document ---------------------------

    def _set(self, key: str, value, error_id: str) -> bool:
        error = self.query_one(error_id, ErrorText)
        try:
            self.doc.set(key, value)
        except ConfigError as exc:
            error.show(exc.detail)
            return False
        error.show(None)
        if error_id == "#tokenizer-error":   # the panel's cross-key rules still apply
            self._check_tokenizer()
        self._show_data_state()
        return True

    @on(RadioSet.Changed, "#source-kind")
    def _kind_changed(self, event: RadioSet.Changed) -> None:
        builtin = event.pressed.id == "kind-builtin"
        self.query_one("#source-path", Input).disabled = builtin
        self.query_one("#browse", Button).disabled = builtin
        if builtin:
            self._set("data.source", "builtin", "#source-error")
        else:
            path_input = self.query_one("#source-path", Input)
            path_input.focus()
            self._source_changed(path_input.value)

    @on(Input.Changed, "#source-path")
    def _path_changed(self, event: Input.Changed) -> None:
        if not event.input.disabled:
            self._source_changed(event.value)

    def _source_changed(self, text: str) -> None:
        text = text.strip()
        error = self.query_one("#source-error", ErrorText)
        if not text:
            error.show("Type or browse to a corpus file or folder.")
        elif text != "builtin" and not Path(text).expanduser().exists():
            error.show(f"{text}: no such file or folder")
        else:
            self._set("data.source", text if text == "builtin" else str(Path(text).expanduser()),
                      "#source-error")
        self._show_data_state()     # a corpus being chosen is not the one prepared

    @on(Select.Changed, "#tokenizer-kind")
    def _tokenizer_kind(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str):   # Select.NULL: nothing chosen
            return
        if event.value != "trained" and self.doc.get("tokenizer.path"):
            # a tokenizer.json is only used by a trained tokenizer (a cross-key rule)
            self.query_one("#tokenizer-path", Input).value = ""
            self.doc.set("tokenizer.path", "")
        self._enable_tokenizer_inputs(event.value)
        self._set("tokenizer.kind", event.value, "#tokenizer-error")

    def _enable_tokenizer_inputs(self, kind: str) -> None:
        trained = kind == "trained"
        self.query_one("#tokenizer-encoding", Input).disabled = kind != "bpe"
        self.query_one("#tokenizer-special", Input).disabled = not trained
        self.query_one("#tokenizer-path", Input).disabled = not trained
        # a given tokenizer.json has its own size
        self.query_one("#tokenizer-vocab", Input).disabled = not trained or bool(self.doc.get("tokenizer.path"))

    @on(Input.Changed, "#tokenizer-encoding")
    def _encoding(self, event: Input.Changed) -> None:
        self._set("tokenizer.encoding", event.value.strip(), "#tokenizer-error")

    @on(Input.Changed, "#tokenizer-vocab")
    def _vocab(self, event: Input.Changed) -> None:
        self._set_text("tokenizer.vocab_size", event.value)

    @on(Input.Changed, "#tokenizer-special")
    def _special(self, event: Input.Changed) -> None:
        self._set_text("tokenizer.special_tokens", event.value)

    @on(Input.Changed, "#tokenizer-path")
    def _tokenizer_path(self, event: Input.Changed) -> None:
        self._set_text("tokenizer.path", event.value.strip())
        self._enable_tokenizer_inputs(self.doc.get("tokenizer.kind"))

    def _set_text(self, key: str, text: str) -> None:
        """A typed value, parsed as the wizard parses it, then the tokenizer's cross-key rules."""
        error = self.query_one("#tokenizer-error", ErrorText)
        try:
            self.doc.set(key, parse_field_text(field_spec(key), text))
        except ConfigError as exc:
            error.show(f"{key}: {exc.short()}")
            return
        error.show(None)
        self._check_tokenizer()
        self._show_data_state()

    def _check_tokenizer(self) -> None:
        """Show a rule that spans tokenizer keys (vocab size vs special tokens) at once."""
        try:
            self.doc.to_config()
        except ConfigError as exc:
            if any(k.startswith("tokenizer.") for k in exc.keys):
                self.query_one("#tokenizer-error", ErrorText).show(exc.detail)

    @on(Input.Changed, "#prepared-dir")
    def _prepared_dir(self, event: Input.Changed) -> None:
        self._set("data.prepared_dir", event.value.strip(), "#tokenizer-error")

    def _has_errors(self) -> bool:
        return any(self.query_one(i, ErrorText).text for i in ("#source-error", "#tokenizer-error"))

    # -- buttons ------------------------------------------------------------------

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    @on(Button.Pressed, "#prepare")
    def _prepare_pressed(self) -> None:
        self.action_prepare()

    @on(Button.Pressed, "#train")
    def _train_pressed(self) -> None:
        self.action_train()

    @on(Button.Pressed, "#browse")
    def _browse_pressed(self) -> None:
        from llmtui.tui.screens.dialogs import BrowseScreen
        self.app.push_screen(BrowseScreen(Path.cwd()), self._browsed)

    def _browsed(self, path: Path | None) -> None:
        if path is not None:
            self.query_one("#source-path", Input).value = str(path)

    def action_back(self) -> None:
        self.app.pop_screen()

    def _checked_config(self, quiet: bool = False):
        """The config to use, or None (with a notification saying why, unless quiet)."""
        if self._has_errors():
            if not quiet:
                self.notify("Fix the data settings first.", severity="warning")
            return None
        try:
            return self.doc.to_config()
        except UserError as exc:
            if not quiet:
                self.notify(str(exc), severity="error", timeout=8, markup=False)
            return None

    def action_train(self) -> None:
        cfg = self._checked_config()
        if cfg is None:
            return
        session = self.app.session
        if session.data_is_current() and session.data is not None:
            problem = self._too_small(session.data, cfg)
            if problem:
                self.notify(problem, title="Not enough data", severity="error", timeout=10, markup=False)
                return
        self.app.start_training(cfg)

    def _too_small(self, data: PreparedData, cfg) -> str | None:
        """Why the prepared data cannot train this config (block_size too long), or None."""
        from llmtui.engine.data.batches import require_tokens
        from llmtui.engine.errors import DataError

        try:
            require_tokens(len(data.train), cfg.model.block_size, "train")
            require_tokens(len(data.val), cfg.model.block_size, "val")
        except DataError as exc:
            return str(exc)
        return None

    # -- preparation ----------------------------------------------------------------

    def action_prepare(self) -> None:
        cfg = self._checked_config()
        if cfg is None:
            return
        self.query_one("#prepare", Button).disabled = True
        self.query_one("#train", Button).disabled = True
        bar = self.query_one("#prepare-progress", StillProgressBar)
        bar.display = True
        bar.update(total=100, progress=0)
        self.query_one("#prepare-status", Static).update("Preparing…")
        self.query_one("#prepare-result", Static).update("")
        self._key = self.app.session.data_settings()
        self._timer = self.set_interval(max(0.1, min(self.app.refresh_rate, 0.5)), self._poll)
        self.prepare(cfg)

    @work(thread=True, exclusive=True, group="prepare", exit_on_error=False)
    def prepare(self, cfg) -> None:
        from llmtui.engine.data.prepare import prepare_data  # numpy and friends: off the UI thread

        buffer = self.progress_events
        stop_if_cancelled = cancellation_check()   # here: progress also runs on tokenizers' threads

        def progress(stage: str, done: int, total: int) -> None:
            stop_if_cancelled()         # the screen went, or the app exits: stop preparing
            buffer(PrepareEvent(step=0, stage=stage, done=done, total=total))

        try:
            data = prepare_data(cfg, progress=progress)
        except WorkerCancelled:
            return
        self.post_message(DataPrepared(data))

    def _poll(self) -> None:
        self._seq, events = self.progress_events.since(self._seq)
        if events:
            last = events[-1]
            bar = self.query_one("#prepare-progress", StillProgressBar)
            bar.update(total=max(1, last.total), progress=last.done)
            self.query_one("#prepare-status", Static).update(f"Preparing: {last.stage}…")

    def _preparation_ended(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._poll()
        self.query_one("#prepare", Button).disabled = False
        self.query_one("#train", Button).disabled = False
        self.query_one("#prepare-progress").display = False

    @on(DataPrepared)
    def _prepared(self, event: DataPrepared) -> None:
        self._preparation_ended()
        session = self.app.session
        session.data = event.data
        session.data_key = self._key
        self._shown_key = None
        self._show_data_state()

    @on(WorkerFailed)
    def _preparation_failed(self, event: WorkerFailed) -> None:
        self._preparation_ended()
        self._shown_key = None        # the next edit replaces this message with the state
        self.query_one("#prepare-status", Static).update("Preparation failed.")
        self.query_one("#prepare-result", Static).update(event.text)

    def _show_data_state(self) -> None:
        """What is known about the data of the settings shown now: the summary of its
        preparation while they are the ones prepared, else that it must be prepared
        (again: a summary of other settings would claim data that is not there)."""
        if self._timer is not None:      # preparing: the progress says it
            return
        session = self.app.session
        key = session.data_key if session.data_is_current() and not self._has_errors() else ()
        if key == self._shown_key:
            return
        self._shown_key = key
        status = self.query_one("#prepare-status", Static)
        if not key or session.data is None:
            self.query_one("#prepare-result", Static).update("")
            status.update(STALE_HINT if session.data_key is not None else PREPARE_HINT)
            return
        self._show_summary(session.data)
        cfg = self._checked_config(quiet=True)
        problem = self._too_small(session.data, cfg) if cfg is not None else None
        self.query_one("#train", Button).disabled = bool(problem)
        status.update(Text(f"Not enough data: {problem}", style="bold red") if problem else "Data ready.")

    def _show_summary(self, data: PreparedData) -> None:
        how = "reused" if data.reused else "prepared"
        # the engine's notes (e.g. damaged token files made again) are told once, with the summary
        notes = "".join(f"\nNote: {note}" for note in data.notes)
        self.query_one("#prepare-result", Static).update(
            f"{len(data.train):,} train / {len(data.val):,} val tokens, "
            f"vocabulary {data.vocab_size:,} ({how})\n"
            f"token files in {data.directory}{notes}")
