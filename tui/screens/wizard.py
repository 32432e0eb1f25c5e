"""The config wizard: a form per config section, generated from the schema.

Every field is checked as it is typed (inline error under it); rules that
span keys are checked on the whole config after each change. Save and Save
As are disabled while anything is invalid. The side panel shows derived
figures for the current values.

The model form opens with "Start from" (model.init_from): scratch, an llmtui
run or checkpoint, a Hugging Face folder or "hf:ORG/NAME". When it names a
source, the settings that come from it are marked as such (with the source's
value when its config could be read), a setting that contradicts it is an
error on the spot, and the derived figures describe the source's model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from textual import getters, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, OptionList, Static
from textual.widgets.option_list import Option

from llmtui.engine.config.schema import FIELDS
from llmtui.engine.errors import ConfigError, UserError
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.widgets.config_field import START_FROM, ConfigField
from llmtui.tui.widgets.derived_panel import DerivedPanel
from llmtui.tui.widgets.error_text import ErrorText
from llmtui.tui.widgets.title_bar import TitleBar

if TYPE_CHECKING:
    from llmtui.engine.training.init_from import SourcePeek

# the first header line _refresh_header writes
MADE_FROM = re.compile(r"^llmtui config, made from preset (\S+) and then changed\.$")
SECTION_TITLES = {
    "run": "Run", "data": "Data", "tokenizer": "Tokenizer", "model": "Model",
    "training": "Training", "optimizer": "Optimizer", "scheduler": "Scheduler",
    "eval": "Evaluation", "checkpoint": "Checkpoints", "logging": "Logging",
}
# fields shown first in their form
FIRST = {"model": ("init_from",)}
# [tokenizer] settings that a start model (model.init_from) brings
SOURCE_TOKENIZER = ("kind", "encoding", "path", "special_tokens", "vocab_size")


class WizardScreen(Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in

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
        self.source: SourcePeek | None = None     # what model.init_from names, peeked
        self._source_error: str | None = None   # what is wrong with the value the file held
        self._displaced: dict[str, object] = {}  # settings the start model took the place of
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
        self._read_source()
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
        first = FIRST.get(section, ())
        specs = [FIELDS[section][name] for name in first] + \
            [spec for name, spec in FIELDS[section].items() if name not in first]
        fields = [ConfigField(spec, self.doc.get(spec.path)) for spec in specs]
        self._mark_rule_error(fields)
        self._mark_source(fields)
        form.mount_all(fields)

    @on(OptionList.OptionHighlighted, "#wizard-sections")
    def _section_chosen(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None:   # every section's option has its name as id
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
        if event.path == START_FROM:
            if event.error is None:
                self._read_source()
                self._make_room_for_source()
            else:                                    # what was typed names nothing (yet)
                self.source, self._source_error = None, None
            self._mark_source(self.query(ConfigField))
        self._revalidate()
        self._show_file()

    # -- the start model (model.init_from) ------------------------------------------

    def _read_source(self) -> None:
        """Look at what model.init_from names (no download, no weights loaded); a value
        that names nothing usable is an error of the field, also when the file held it."""
        from llmtui.engine.training.init_from import peek

        self.source, self._source_error = None, None
        try:
            self.source = peek(self.doc.get(START_FROM))
        except ConfigError as exc:
            self._source_error = self.invalid[START_FROM] = exc.short()

    def _make_room_for_source(self) -> None:
        """Settings of this config that the start model would contradict (a preset's own
        architecture) are taken out of it, kept, and put back when the start goes back to
        scratch; a toast says which."""
        from llmtui.engine.training.init_from import ARCHITECTURE

        doc, source = self.doc, self.source
        if source is None:
            return
        if source.kind == "scratch":
            back = [path for path in self._displaced
                    if path.split(".")[1] not in doc.values().get(path.split(".")[0], {})]
            for path in back:
                doc.set(path, self._displaced[path])
            self._displaced = {}
            self._show_values(back)
            if back:
                self.notify(f"Put back: {', '.join(back)}.", markup=False)
            return
        moved = []
        for section, names, known in (("model", ARCHITECTURE, source.model),
                                      ("tokenizer", SOURCE_TOKENIZER, source.tokenizer)):
            written = doc.values().get(section, {})
            for name in names:
                path, value = f"{section}.{name}", doc.get(f"{section}.{name}")
                # kept: what the file does not say, and what says the start model's own value
                if name not in written or (known is not None and known.get(name) == value):
                    continue
                self._displaced.setdefault(path, value)
                doc.unset(path)
                moved.append(path)
        for _ in range(8):   # settings tied by a rule to one taken out go with it (a head learning rate)
            try:
                doc.to_config()
                break
            except ConfigError as exc:
                tied = [k for k in exc.keys if k not in moved and k != START_FROM]
                if not tied or not any(k in moved for k in exc.keys):
                    break
                for path in tied:
                    self._displaced.setdefault(path, doc.get(path))
                    doc.unset(path)
                    moved.append(path)
        self._show_values(moved)
        if moved:
            self.notify(f"The start model sets these, so they were taken out of this config: "
                        f"{', '.join(moved)} (Start from scratch puts them back).", markup=False, timeout=8)
        self._make_room_for_finetuning()

    def _make_room_for_finetuning(self) -> None:
        """A from-scratch preset's learning rates would wreck a pretrained model (the engine
        refuses them: init_from.check_finetune_rates): they are taken out too, so the
        fine-tuning defaults apply, and put back with Start from scratch."""
        from llmtui.engine.training.init_from import FINETUNE_LEARNING_RATE, too_high_rates

        if self.source is None or self.source.kind not in ("hf", "hub"):
            return
        try:
            high = too_high_rates(self.doc.to_config())
        except ConfigError:
            return
        written = self.doc.values().get("optimizer", {})
        moved = [path for path in high if path.split(".")[1] in written]
        for path in moved:
            self._displaced.setdefault(path, self.doc.get(path))
            self.doc.unset(path)
        self._show_values(moved)
        if moved:
            self.notify(f"From-scratch learning rates would wreck a pretrained model: took out "
                        f"{', '.join(moved)}, so fine-tuning's {FINETUNE_LEARNING_RATE:g} applies "
                        "(Start from scratch puts them back).", markup=False, timeout=8)

    def _show_values(self, paths: list[str]) -> None:
        for field in self.query(ConfigField):
            if field.spec.path in paths:
                field.show_value(self.doc.get(field.spec.path))

    def _mark_source(self, fields) -> None:
        """Show which fields the start model sets, with its values where they are known."""
        from llmtui.engine.config.loading import show_value
        from llmtui.engine.training.init_from import ARCHITECTURE

        source = self.source if self.source is not None and self.source.kind != "scratch" else None
        for field in fields:
            section, name = field.spec.path.split(".")
            if field.spec.path == START_FROM:
                field.show_info(self.source.summary if self.source is not None else None)
                if self._source_error:
                    field.show_error(self._source_error)
                continue
            known = (source.model if section == "model" else source.tokenizer) if source else None
            note, lock = None, False
            if source is None:
                pass
            elif section == "model" and name == "block_size":
                longest = (known or {}).get("block_size")
                note = (f"at most {longest:,}, the start model's context (left at the default: "
                        f"{min(longest, 1024):,})" if longest else "at most the start model's context")
            elif (section == "model" and name in ARCHITECTURE) or \
                    (section == "tokenizer" and name in SOURCE_TOKENIZER):
                note = "from the start model"
                if known and name in known:
                    note += f": {show_value(known[name])}"
                # a value of the user's that differs is left editable: the rule marks it
                lock = field.value == field.spec.default or (known is not None and field.value == known.get(name))
            field.show_from_source(note, lock, (known or {}).get(name) if note else None)

    def _revalidate(self) -> None:
        cfg, error = None, None
        try:
            cfg = self.doc.to_config()
        except ConfigError as exc:
            error = exc
        if cfg is not None and self.source is not None and self.source.model is not None \
                and START_FROM not in self.invalid:
            from llmtui.engine.training.init_from import preview
            try:
                cfg = preview(cfg, self.source)      # what the run will build: the source's model
            except ConfigError as exc:
                cfg, error = None, exc
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
        source = self.source
        if source is not None and source.kind != "scratch" and source.model is None:
            panel.show(cfg, None, model_from=f"from {cfg.model.init_from}: its size is known once it "
                                             "is in the Hugging Face cache (the run fetches it)")
            return
        if hardware is None and self.app.detection_error:
            panel.show(cfg, None, "no estimates: hardware detection failed")
            return
        # data prepared for a model from scratch says nothing of a start model's vocabulary
        vocab_known = session.data_is_current() and (self.source is None or self.source.kind == "scratch")
        if hardware is not None:  # without it estimate() would detect (torch) on this thread
            from llmtui.engine.planning.estimate import estimate
            try:
                est = estimate(cfg, vocab_size=session.data.vocab_size if vocab_known and session.data else None,
                               hardware=hardware)
            except UserError as exc:
                panel.show(None, None, exc.detail)
                return
        panel.show(cfg, est, vocab_known=vocab_known, train_tokens=self._train_tokens(cfg))

    def _train_tokens(self, cfg) -> tuple[int, bool] | None:
        """The training split's tokens: counted once the data step prepared these data
        settings, else estimated from the corpus size (file sizes: cheap, and asked again
        only when the data settings change)."""
        session = self.app.session
        if session.data_is_current() and session.data is not None and len(session.data.train):
            return len(session.data.train), True
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
        model = (f"Model: {m.n_layer} layers x {m.n_embd} wide, context {m.block_size}, about "
                 f"{n / 1e6:.2f}M parameters (an estimate); tokenizer: {tokenizer}.")
        if m.init_from != "scratch":    # the architecture and tokenizer are the start model's
            model = f"Model: starts from {m.init_from} (its architecture, weights and tokenizer)."
        self.doc.set_header([
            f"llmtui config, made from preset {preset} and then changed.",
            model,
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
