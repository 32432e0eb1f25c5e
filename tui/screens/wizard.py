"""The config wizard: a form per config section, generated from the schema.

Every field is checked as it is typed (inline error under it); rules that
span keys are checked on the whole config after each change. Save and Save
As are disabled while anything is invalid. The side panel shows derived
figures for the current values.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, OptionList, Static
from textual.widgets.option_list import Option

from llmtui.engine.config.schema import FIELDS
from llmtui.engine.errors import ConfigError, UserError
from llmtui.tui.widgets.config_field import ConfigField
from llmtui.tui.widgets.derived_panel import DerivedPanel
from llmtui.tui.widgets.error_text import ErrorText
from llmtui.tui.widgets.title_bar import TitleBar

# the first header line _refresh_header writes
MADE_FROM = re.compile(r"^llmtui config, made from preset (\S+) and then changed\.$")
SECTION_TITLES = {
    "run": "Run", "data": "Data", "tokenizer": "Tokenizer", "model": "Model",
    "training": "Training", "optimizer": "Optimizer", "scheduler": "Scheduler",
    "eval": "Evaluation", "checkpoint": "Checkpoints", "logging": "Logging",
}


class WizardScreen(Screen):
    SUB_TITLE = "config"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+a", "save_as", "Save as"),
        Binding("ctrl+n", "next", "Next: data"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, doc, section: str = "model"):
        super().__init__()
        self.doc = doc
        self.first_section = section
        self.invalid: dict[str, str] = {}     # field path -> error
        self.cross_error: ConfigError | None = None   # a rule across fields that fails
        self._built: set[str] = set()
        self._tokens_estimate: tuple[tuple, int | None] | None = None   # (data settings, tokens)

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="wizard-file", markup=False)   # a path: shown as typed
        with Horizontal(id="wizard-body"):
            yield OptionList(*[Option(SECTION_TITLES.get(s, s), id=s) for s in FIELDS],
                             id="wizard-sections")
            with ContentSwitcher(id="wizard-forms", initial=f"form-{self.first_section}"):
                for section in FIELDS:
                    yield VerticalScroll(id=f"form-{section}", classes="wizard-form")
            yield DerivedPanel(id="wizard-derived")
        yield ErrorText(id="wizard-error")
        with Horizontal(id="wizard-buttons"):
            yield Button("Save", id="save", variant="primary", compact=True)
            yield Button("Save as…", id="save-as", compact=True)
            yield Button("Next: data ▸", id="next", variant="success", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        sections = self.query_one("#wizard-sections", OptionList)
        sections.highlighted = list(FIELDS).index(self.first_section)
        self._build_section(self.first_section)
        self._revalidate()
        self._show_file()

    def on_screen_resume(self) -> None:
        # another screen (the data step) may have changed the same document
        for field in self.query(ConfigField):
            if field.spec.path not in self.invalid:
                field.show_value(self.doc.get(field.spec.path))
        self._revalidate()
        self._show_file()

    # -- sections -------------------------------------------------------------

    def _build_section(self, section: str) -> None:
        if section in self._built:
            return
        self._built.add(section)
        form = self.query_one(f"#form-{section}", VerticalScroll)
        form.border_title = escape(f"[{section}]")   # a border title is markup
        fields = [ConfigField(spec, self.doc.get(spec.path)) for spec in FIELDS[section].values()]
        form.mount_all(fields)
        self._mark_rule_error(fields)

    @on(OptionList.OptionHighlighted, "#wizard-sections")
    def _section_chosen(self, event: OptionList.OptionHighlighted) -> None:
        self.show_section(event.option.id)

    def show_section(self, section: str) -> None:
        self._build_section(section)
        self.query_one(ContentSwitcher).current = f"form-{section}"

    # -- edits ------------------------------------------------------------------

    def on_config_field_changed(self, event: ConfigField.Changed) -> None:
        event.stop()
        if event.error is not None:
            self.invalid[event.path] = event.error
        else:
            self.invalid.pop(event.path, None)
            try:
                self.doc.set(event.path, event.value)
            except UserError as exc:  # cannot happen: the field checked it with the same rules
                self.invalid[event.path] = str(exc)
        self._revalidate()
        self._show_file()

    def _revalidate(self) -> None:
        cfg, error = None, None
        try:
            cfg = self.doc.to_config()
        except ConfigError as exc:
            error = exc
        self.cross_error = error
        self._mark_rule_error(self.query(ConfigField))
        message = ""
        if self.invalid:
            names = ", ".join(sorted(self.invalid))
            message = f"Not valid: {names}"
        elif error:
            message = error.detail
        self.query_one("#wizard-error", ErrorText).show(message)
        blocked = bool(self.invalid or error)
        self.query_one("#save", Button).disabled = blocked
        self.query_one("#save-as", Button).disabled = blocked
        self.query_one("#next", Button).disabled = blocked
        self._update_derived(cfg, error)

    def _mark_rule_error(self, fields) -> None:
        error = self.cross_error
        for field in fields:
            field.set_rule_error(error.detail if error and field.spec.path in error.keys else None)

    def _update_derived(self, cfg, error: ConfigError | None) -> None:
        panel = self.query_one(DerivedPanel)
        if cfg is None:
            panel.show(None, None, error.detail if error else None)
            return
        est = None
        session = self.app.session
        hardware = self.app.hardware
        if hardware is None and self.app.detection_error:
            panel.show(cfg, None, "no estimates: hardware detection failed")
            return
        if hardware is not None:  # without it estimate() would detect (torch) on this thread
            from llmtui.engine.planning.estimate import estimate
            try:
                est = estimate(cfg, vocab_size=session.vocab_size if session.data_is_current() else None,
                               hardware=hardware)
            except UserError as exc:
                panel.show(None, None, exc.detail)
                return
        panel.show(cfg, est, vocab_known=session.data_is_current(), train_tokens=self._train_tokens(cfg))

    def _train_tokens(self, cfg) -> tuple[int, bool] | None:
        """The training split's tokens: counted once the data step prepared these data
        settings, else estimated from the corpus size (file sizes: cheap, and asked again
        only when the data settings change)."""
        session = self.app.session
        if session.data_is_current() and session.data_summary.get("train_tokens"):
            return int(session.data_summary["train_tokens"]), True
        key = session.data_settings()
        if self._tokens_estimate is None or self._tokens_estimate[0] != key:
            from llmtui.engine.data.prepare import estimate_train_tokens
            self._tokens_estimate = (key, estimate_train_tokens(cfg))
        tokens = self._tokens_estimate[1]
        return (tokens, False) if tokens else None

    def refresh_derived(self) -> None:
        """Hardware detection finished (or the data changed): estimate again. A wizard
        pushed but not composed yet has nothing to refresh: its mount validates."""
        if not self.is_mounted or not self.query("#save"):
            return
        self._revalidate()

    def _show_file(self) -> None:
        doc = self.doc
        where = str(doc.path) if doc.path else f"{doc.origin} (not saved yet)"
        mark = "  [modified]" if doc.dirty else ""
        self.query_one("#wizard-file", Static).update(f"Config: {where}{mark}")

    @property
    def is_valid(self) -> bool:
        return not self.invalid and self.cross_error is None

    # -- actions -------------------------------------------------------------------

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#save-as")
    def _save_as_pressed(self) -> None:
        self.action_save_as()

    @on(Button.Pressed, "#next")
    def _next_pressed(self) -> None:
        self.action_next()

    def action_save(self) -> None:
        if not self.is_valid:
            self.notify("Fix the settings marked in red first.", severity="warning")
            return
        if self.doc.path is None:
            self.action_save_as()
            return
        self._save_to(self.doc.path)

    def action_save_as(self) -> None:
        if not self.is_valid:
            self.notify("Fix the settings marked in red first.", severity="warning")
            return
        from llmtui.tui.screens.dialogs import PathScreen

        default = str(self.doc.path) if self.doc.path else f"{self.doc.get('run.name')}.toml"
        self.app.push_screen(PathScreen("Save config as", default, "Save", "my-config.toml"),
                             self._saved_as)

    def _saved_as(self, path: Path | None) -> None:
        if path is None:
            return
        if path.exists() and path != self.doc.path:
            from llmtui.tui.screens.dialogs import ConfirmScreen

            def answered(replace: bool | None) -> None:
                if replace:
                    self._save_to(path)

            self.app.push_screen(ConfirmScreen(f"{path} exists. Replace it with this config?",
                                               yes="Replace", title="Save as"), answered)
            return
        self._save_to(path)

    def _save_to(self, path: Path) -> None:
        self._refresh_header()
        try:
            saved = self.doc.save(path)
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=8, markup=False)
            return
        self.notify(f"Saved {saved}", markup=False)
        self._show_file()

    def _refresh_header(self) -> None:
        """A preset's header describes the preset (its size, its corpus): once the
        model or the data differ from it, the saved file gets a header that
        describes what it holds now, written again at every save (also once the
        file is opened again, when the header is all that says which preset it
        came from)."""
        preset = self._base_preset()
        if preset is None:
            return
        from llmtui.engine.config.document import ConfigDocument
        from llmtui.engine.config.loading import load_config
        from llmtui.engine.planning.sizing import count_params, vocab_for

        cfg, original = self.doc.to_config(), load_config(preset)
        if all(getattr(cfg, s) == getattr(original, s) for s in ("model", "data", "tokenizer", "training")):
            if MADE_FROM.match(next(iter(self.doc.header()), "")):   # changed back: the preset's own words
                self.doc.set_header(ConfigDocument.from_preset(preset).header())
            return
        m = cfg.model
        n, _ = count_params(m, vocab_for(cfg))
        sources = ", ".join([cfg.data.source, *cfg.data.sources])
        tokenizer = cfg.tokenizer.kind if cfg.tokenizer.kind != "bpe" else f"bpe ({cfg.tokenizer.encoding})"
        self.doc.set_header([
            f"llmtui config, made from preset {preset} and then changed.",
            f"Model: {m.n_layer} layers x {m.n_embd} wide, context {m.block_size}, about "
            f"{n / 1e6:.2f}M parameters (an estimate); tokenizer: {tokenizer}.",
            f"Data: {sources}; {cfg.training.max_steps:,} steps.",
            "Every key is documented below; edit it here or in the app's wizard."])

    def _base_preset(self) -> str | None:
        """The shipped preset this document was made from: the one it was opened
        from, else the one its header names (written by _refresh_header) or
        whose header it carries (a copy of the preset file)."""
        if self.doc.preset is not None:
            return self.doc.preset
        from llmtui.engine.config.document import ConfigDocument
        from llmtui.engine.config.presets import preset_names

        header, names = self.doc.header(), preset_names()
        made = MADE_FROM.match(header[0]) if header else None
        if made is not None:
            return made.group(1) if made.group(1) in names else None
        if header:
            for name in names:
                if ConfigDocument.from_preset(name).header() == header:
                    return name
        return None

    def action_next(self) -> None:
        if not self.is_valid:
            self.notify("Fix the settings marked in red first.", severity="warning")
            return
        self.app.open_data_step()

    def action_back(self) -> None:
        if not self.doc.dirty:
            self.app.pop_screen()
            return
        from llmtui.tui.screens.dialogs import ConfirmScreen

        def answered(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(ConfirmScreen("This config has changes that are not saved. "
                                           "Go back and discard them?", yes="Discard",
                                           title="Unsaved changes"), answered)
