"""One config setting as a form row: name, control, help, inline error.

The control follows the schema: a Switch for booleans, a Select for choice
lists, an Input (validated as the user types by the engine's own `coerce`)
for everything else. The field posts `ConfigField.Changed` with the parsed
value, or with the error text when the input is not allowed.

model.init_from is the "Start from" field: what it names is also checked as it
is typed (engine.training.init_from.peek: a run, a checkpoint or a Hugging Face
folder is looked at, an hf: id checked for its shape, nothing downloaded), and
a line under it says what the source is. A setting that comes from that
source is shown as such (`show_from_source`).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select, Static, Switch

from llmtui.engine.config.schema import FieldSpec
from llmtui.engine.errors import ConfigError
from llmtui.tui.fields import field_text, parse_field_text


class SchemaValidator(Validator):
    """Checks an Input's text against one schema field."""

    def __init__(self, spec: FieldSpec):
        super().__init__()
        self.spec = spec

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_text(self.spec, value)
        except ConfigError as exc:
            return self.failure(exc.short())
        return self.success()


# the label of a field whose key name says less than a few words do, and a shorter help
# where the schema's is written for the TOML file and the reference
LABELS = {"model.init_from": "Start from"}
HELP = {"model.init_from": 'scratch (random weights), an llmtui run or checkpoint, a Hugging Face '
                           'model folder, or "hf:ORG/NAME"; the model and its tokenizer come from it.'}
START_FROM = "model.init_from"


def parse_text(spec: FieldSpec, text: str) -> Any:
    """The value of a field's text (parse_field_text), and for the Start from field a
    check of what it names; ConfigError when either fails."""
    value = parse_field_text(spec, text)
    if spec.path == START_FROM:
        from llmtui.engine.training.init_from import peek
        peek(value)
    return value


def field_id(path: str) -> str:
    return "field-" + path.replace(".", "-")


class ConfigField(Vertical):
    """A labelled control for one schema field."""

    DEFAULT_CSS = """
    ConfigField { height: auto; margin: 0 0 1 0; }
    ConfigField > Horizontal { height: auto; }
    ConfigField .field-name { width: 40%; max-width: 26; padding: 0 1 0 0; }
    ConfigField .field-control { width: 1fr; }
    ConfigField Switch.field-control { width: auto; height: 1; border: none; padding: 0; }
    ConfigField Switch.field-control:focus { border: none; background-tint: $foreground 10%; }
    ConfigField .field-help { color: $foreground-muted; padding: 0 0 0 1; }
    ConfigField .field-error { color: $error; padding: 0 0 0 1; display: none; }
    ConfigField.-invalid .field-error { display: block; }
    ConfigField.-invalid .field-name { color: $error; }
    ConfigField .field-info { color: $text-success; padding: 0 0 0 1; display: none; }
    ConfigField.-has-info .field-info { display: block; }
    ConfigField.-invalid .field-info { display: none; }
    ConfigField .field-source { color: $text-accent; padding: 0 0 0 1; display: none; }
    ConfigField.-from-source .field-source { display: block; }
    ConfigField.-from-source .field-help { display: none; }
    """

    class Changed(Message):
        def __init__(self, field: ConfigField, value: Any, error: str | None):
            super().__init__()
            self.field = field
            self.path = field.spec.path
            self.value = value
            self.error = error

        @property
        def control(self) -> ConfigField:
            return self.field

    def __init__(self, spec: FieldSpec, value: Any, **kwargs):
        super().__init__(id=kwargs.pop("id", field_id(spec.path)), **kwargs)
        self.spec = spec
        self.value = value
        self.error: str | None = None        # this field's own value is not allowed
        self.rule_error: str | None = None   # a rule across fields fails, and names this one
        self.info: str | None = None         # what the value names (the Start from field)
        self.source_note: str | None = None  # set by the start model: says so instead of the help
        self.locked = False                  # ... and its control is disabled
        self.source_value: Any = None        # ... and shows this value of the start model
        self._showing_source = False
        self._composed = False

    def compose(self) -> ComposeResult:
        spec = self.spec
        with Horizontal():
            yield Label(LABELS.get(spec.path, spec.name), classes="field-name")
            yield self._control()
        yield Static(HELP.get(spec.path, spec.help), classes="field-help", markup=False)
        yield Static("", classes="field-source", markup=False)
        yield Static("", classes="field-info", markup=False)
        yield Static("", classes="field-error", markup=False)

    def _control(self):
        spec, cid = self.spec, f"{self.id}-control"
        if spec.type is bool:
            return Switch(value=bool(self.value), id=cid, classes="field-control")
        if spec.choices:
            options = [(str(c), c) for c in spec.choices]
            return Select(options, value=self.value, allow_blank=False, compact=True,
                          id=cid, classes="field-control")
        placeholder = spec.describe_allowed()
        return Input(field_text(spec, self.value), placeholder=placeholder, compact=True,
                     validators=[SchemaValidator(spec)], validate_on=["changed", "submitted"],
                     id=cid, classes="field-control")

    @property
    def control_widget(self):
        return self.query_one(".field-control")

    # -- updates from the control -------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        try:
            value = parse_text(self.spec, event.value)
        except ConfigError as exc:
            self._set_error(exc.short())
            self.post_message(self.Changed(self, None, self.error))
            return
        self._accept(value)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self._accept(event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is not Select.NULL:
            self._accept(event.value)

    def _accept(self, value: Any) -> None:
        """A valid value: post it unless it is what the field already holds
        (which is also how values set by `show_value` come back, unposted)."""
        was_invalid = self.error is not None
        self._set_error(None)
        if value == self.value and not was_invalid:
            return
        self.value = value
        self.post_message(self.Changed(self, value, None))

    def _set_error(self, error: str | None) -> None:
        if error == self.error:
            return
        self.error = error
        self._show_error()

    def set_rule_error(self, error: str | None) -> None:
        """Mark the field as part of a failing cross-field rule (None clears it)."""
        if error == self.rule_error:
            return
        self.rule_error = error
        self._show_error()

    def _show_error(self) -> None:
        if not self._composed:
            return                    # on_mount shows it
        shown = self.error or self.rule_error
        self.set_class(shown is not None, "-invalid")
        self.query_one(".field-error", Static).update(shown or "")

    def on_mount(self) -> None:
        self._composed = True
        self._show_error()
        self._show_marks()

    def show_error(self, error: str | None) -> None:
        """Mark the field's value as not allowed, found by its screen (None clears it)."""
        self._set_error(error)

    def show_info(self, text: str | None) -> None:
        """A line under the field saying what its (valid) value names (None: nothing)."""
        self.info = text
        self._show_marks()

    def show_from_source(self, text: str | None, lock: bool = False, value: Any = None) -> None:
        """Mark the field as set by the start model (model.init_from): `text` replaces its
        help line, and `lock` disables the control, which then shows the start model's
        `value` when given (the document keeps its own); None: the field is the user's again."""
        self.source_note, self.locked = text, text is not None and lock
        self.source_value = value if self.locked else None
        self._show_marks()

    def _show_marks(self) -> None:
        if not self._composed:
            return                    # on_mount shows them
        self.set_class(bool(self.info), "-has-info")
        self.query_one(".field-info", Static).update(self.info or "")
        self.set_class(self.source_note is not None, "-from-source")
        self.query_one(".field-source", Static).update(self.source_note or "")
        self.control_widget.disabled = self.locked
        if self.source_value is not None:
            self._display(self.source_value)
            self._showing_source = True
        elif self._showing_source:       # the user's own value again
            self._display(self.value)
            self._showing_source = False

    def _display(self, value: Any) -> None:
        """Put `value` in the control without it reporting a change."""
        control = self.control_widget
        with control.prevent(Input.Changed, Switch.Changed, Select.Changed):
            if isinstance(control, Switch):
                control.value = bool(value)
            elif isinstance(control, Select):
                control.value = value
            else:
                text = field_text(self.spec, value)
                if control.value != text:
                    control.value = text

    # -- updates from outside (another screen edited the same document) ------

    def show_value(self, value: Any) -> None:
        """Display `value` without posting Changed."""
        if value == self.value and self.error is None:
            return
        self.value = value
        self._set_error(None)
        if self.source_value is not None:
            return                   # the control shows the start model's value
        control = self.control_widget
        if isinstance(control, Switch):
            control.value = bool(value)
        elif isinstance(control, Select):
            control.value = value
        else:
            control.value = field_text(self.spec, value)
