"""Small modal dialogs: confirm, choose one of several, ask for a path, read a long text."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Literal, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Label, Static
from textual.widgets.button import ButtonVariant

from llmtui.tui.widgets.error_text import ErrorText

R = TypeVar("R")
InputType = Literal["integer", "number", "text"]   # Input's `type`


class _ButtonsScreen(ModalScreen[R]):
    """A question with buttons; dismisses with `result_of` the chosen button's key."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str, ButtonVariant]], title: str = "",
                 focus: str | None = None, hint: str = ""):
        """`choices`: (key, label, variant) per button; the button `focus` (else the
        first one) has the focus, so Enter presses it. `hint`: the keys, under the buttons
        (the screen below keeps its own footer in view)."""
        super().__init__(classes="dialog-screen")
        self.question = question
        self.choices = choices
        self.title_text = title
        self.focus_key = focus or choices[0][0]
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            if self.title_text:
                yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Static(self.question, classes="dialog-question", markup=False)
            with Horizontal(classes="dialog-buttons"):
                for key, label, variant in self.choices:
                    yield Button(label, variant=variant, id=f"choice-{key}")
            if self.hint:
                yield Static(self.hint, classes="dialog-hint", id="dialog-keys", markup=False)

    def on_mount(self) -> None:
        self.query_one(f"#choice-{self.focus_key}", Button).focus()

    def result_of(self, key: str) -> R:
        """What the dialog dismisses with when the button `key` is pressed."""
        raise NotImplementedError

    @on(Button.Pressed)
    def _chosen(self, event: Button.Pressed) -> None:
        # one handler, in the base class only: Textual also runs handlers of base
        # classes, so a subclass overriding on_button_pressed would dismiss twice
        event.stop()
        self.dismiss(self.result_of((event.button.id or "").removeprefix("choice-")))


class ChoiceScreen(_ButtonsScreen[str | None]):
    """A question with buttons; dismisses with the chosen button's key (None on Escape)."""

    def result_of(self, key: str) -> str | None:
        return key

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(_ButtonsScreen[bool]):
    """Yes/no; dismisses with True or False. Every question asked this way does
    something that cannot be undone (delete, discard, replace, stop), so the safe
    answer has the focus: Enter keeps things, `y` or a click confirms."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("y", "yes", "Yes"),
                Binding("n", "cancel", "No")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel", title: str = ""):
        super().__init__(question, [("yes", yes, "error"), ("no", no, "default")], title, focus="no",
                         hint=f"y  {yes}    n or Esc  {no}")

    def result_of(self, key: str) -> bool:
        return key == "yes"

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class AskScreen(ModalScreen):
    """A question answered in one text box. Subclasses say how to read the answer:
    `read(text)` returns the value to dismiss with, or raises ValueError with what
    to show under the box."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", action: str = "OK", placeholder: str = "",
                 question: str = "", input_type: InputType = "text"):
        super().__init__(classes="dialog-screen")
        self.title_text, self.value, self.action_label = title, value, action
        self.placeholder, self.question, self.input_type = placeholder, question, input_type

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            if self.question:
                yield Static(self.question, classes="dialog-question", markup=False)
            yield Input(self.value, placeholder=self.placeholder, type=self.input_type, id="ask-input")
            yield ErrorText(id="ask-error")
            note = Static("", id="ask-note", classes="dialog-note", markup=False)
            note.display = False      # only for a question that explains its answer
            yield note
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.action_label, variant="primary", id="ask-ok")
                yield Button("Cancel", id="ask-cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def read(self, text: str):
        return text

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._ok()

    @on(Button.Pressed, "#ask-ok")
    def _ok(self) -> None:
        try:
            value = self.read(self.query_one(Input).value.strip())
        except ValueError as exc:
            self.query_one("#ask-error", ErrorText).show(str(exc))
            return
        self.dismiss(value)

    @on(Button.Pressed, "#ask-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PathScreen(AskScreen):
    """Ask for a file path (Save As, open a file), or an existing folder (want_folder)."""

    def __init__(self, title: str, value: str = "", action: str = "Save", placeholder: str = "",
                 want_folder: bool = False):
        super().__init__(title, value, action, placeholder)
        self.want_folder = want_folder

    def read(self, text: str) -> Path:
        if not text:
            raise ValueError("Type a folder." if self.want_folder else "Type a file name.")
        path = Path(text).expanduser()
        if self.want_folder and not path.is_dir():
            raise ValueError(f"{path}: no such folder.")
        if not self.want_folder and path.is_dir():
            raise ValueError(f"{path} is a folder; type a file name.")
        return path


class NumberScreen(AskScreen):
    """Ask for a whole number in [low, high] (e.g. a new max_steps). `explain(n)`, when
    given, says what choosing n would do (shown under the box as it is typed)."""

    def __init__(self, title: str, question: str, value: int, low: int, high: int, action: str = "OK",
                 explain: Callable[[int], str | None] | None = None):
        super().__init__(title, str(value), action, question=question, input_type="integer")
        self.low, self.high = low, high
        self.explain = explain

    def on_mount(self) -> None:
        super().on_mount()
        self._explain(self.value)

    @on(Input.Changed, "#ask-input")
    def _changed(self, event: Input.Changed) -> None:
        self._explain(event.value)

    def _explain(self, text: str) -> None:
        if self.explain is None:
            return
        try:
            value = int(text)
        except ValueError:
            value = None
        note = self.explain(value) if value is not None and self.low <= value <= self.high else None
        widget = self.query_one("#ask-note", Static)
        widget.update(note or "")
        widget.display = bool(note)

    def read(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not self.low <= value <= self.high:
            raise ValueError(f"Type a whole number from {self.low:,} to {self.high:,}.")
        return value


class BrowseScreen(ModalScreen[Path | None]):
    """Pick a file or a folder from a directory tree; backspace (or Up) shows the
    folder above, so a file outside the starting folder can be reached."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("backspace", "up", "Up a folder")]

    def __init__(self, start: Path, title: str = "Choose a file or folder"):
        super().__init__(classes="dialog-screen")
        self.start = start if start.is_dir() else Path.cwd()
        self.title_text = title
        self.selected: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-tall"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with Horizontal(id="browse-where"):
                yield Button("▲ Up", id="browse-up", compact=True)
                yield Static(str(self.start.resolve()), id="browse-folder", markup=False)
            yield DirectoryTree(self.start, id="browse-tree")
            yield Static("", id="browse-selected", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Use", variant="primary", id="browse-ok", disabled=True)
                yield Button("Cancel", id="browse-cancel")

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    @property
    def folder(self) -> Path:
        """The folder the tree shows."""
        return Path(self.query_one(DirectoryTree).path)

    def action_up(self) -> None:
        folder = self.folder.resolve()
        if folder.parent != folder:
            self.query_one(DirectoryTree).path = folder.parent
            self.query_one("#browse-folder", Static).update(str(folder.parent))

    def _select(self, path: Path) -> None:
        self.selected = path
        self.query_one("#browse-selected", Static).update(str(path))
        self.query_one("#browse-ok", Button).disabled = False

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self._select(event.path)

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self._select(event.path)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "browse-up":
            self.action_up()
            return
        self.dismiss(self.selected if event.button.id == "browse-ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """A text to read whole (a sample the monitor's panel cuts), as it was written:
    it scrolls (arrows, PgUp/PgDn, the mouse wheel); `c` copies it; Esc, q or Close
    goes back."""

    BINDINGS = [Binding("escape,q", "close", "Close"), Binding("c", "copy", "Copy")]

    def __init__(self, title: str, text: str):
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-tall dialog-wide"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            with VerticalScroll(id="text-scroll"):
                yield Static(self.text, id="text-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Label("↑/↓ PgUp/PgDn scroll · c copy · esc close", classes="dialog-hint")
                yield Button("Close", variant="primary", id="text-close")

    def on_mount(self) -> None:
        self.query_one("#text-scroll", VerticalScroll).focus()   # the keys scroll it at once

    @on(Button.Pressed, "#text-close")
    def _close_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Copied the text to the clipboard.")
