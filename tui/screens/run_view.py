"""One run: its full curves, config and checkpoints, and what to do with it.

The curves come from the run's metrics.jsonl, across every resumed segment.
A run that another process trains now (headless, nohup, torchrun: it holds the
run's lock) is followed live: every refresh reads only the lines appended since
the last one, which costs that training nothing. Opening a run never starts
it: resuming asks for the number of steps to reach.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Sparkline, Static, TabbedContent, TabPane

from llmtui.engine.training.history import MetricsFollower, RunHistory
from llmtui.engine.training.runs import RunInfo
from llmtui.tui.app_base import LlmtuiAppBase
from llmtui.tui.format import fmt_count, fmt_duration, fmt_loss, fmt_num
from llmtui.tui.messages import CheckpointsVerified, RunFollowed, RunLoaded
from llmtui.tui.widgets.config_view import ConfigView
from llmtui.tui.widgets.loss_chart import LossChart, LossChartKeys
from llmtui.tui.widgets.title_bar import TitleBar
from llmtui.tui.worker_errors import ReportsWorkerErrors

STATUS_STYLE = {"running": "bold green", "finished": "green", "stopped": "yellow",
                "interrupted": "yellow", "diverged": "red"}


class RunScreen(LossChartKeys, ReportsWorkerErrors, Screen):
    app = getters.app(LlmtuiAppBase)   # self.app typed as the app it runs in
    SUB_TITLE = "run"
    BINDINGS = [
        Binding("r", "resume", "Resume"),
        Binding("g", "generate", "Generate"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("w", "to_wizard", "Wizard", tooltip="Copy this run's config into the wizard"),
        Binding("d", "delete", "Delete"),
        Binding("l", "toggle_log", "Log y"),
        Binding("m", "toggle_smoothing", "Smooth"),
        # every key fits 80 columns: Esc goes back everywhere (listed under ?)
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.info: RunInfo | None = None
        self.history = RunHistory()
        self.config_text = ""
        self.follower: MetricsFollower | None = None
        self.follows = 0            # polls of a live run (tests, the bench)
        self.verified: list[tuple[str, int, str | None]] | None = None   # checkpoints checked

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static("", id="run-head")
        with TabbedContent(id="run-tabs"):
            with TabPane("Curves", id="tab-curves"):
                with Horizontal(id="run-curves"):
                    chart = LossChart(id="run-chart", classes="panel")
                    chart.border_title = "Loss"
                    yield chart
                    with Vertical(id="run-side", classes="panel") as side:
                        side.border_title = "Last"
                        yield Static("", id="run-figures")
                        yield Label("learning rate", classes="run-spark-label")
                        yield Sparkline([], id="run-lr", summary_function=max)
                        yield Label("tokens/s", classes="run-spark-label")
                        yield Sparkline([], id="run-tps", summary_function=max)
            with TabPane("Config", id="tab-config"):
                with VerticalScroll():
                    yield ConfigView(id="run-config")
            with TabPane("Checkpoints", id="tab-checkpoints"):
                table: DataTable[str | Text] = DataTable(id="run-checkpoints", cursor_type="row")
                for label in ("checkpoint", "step", "val loss", "files", "verified"):
                    table.add_column(label, key=label)
                yield table
        yield Footer(compact=True, show_command_palette=False)  # ctrl+p works; ? lists it

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_dir.name}"
        self.load()

    # -- reading ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="run-load", exit_on_error=False)
    def load(self) -> None:
        from llmtui.engine.training.history import MetricsFollower, RunHistory
        from llmtui.engine.training.runs import run_info

        info = run_info(self.run_dir)
        history = RunHistory()
        follower = MetricsFollower(self.run_dir / "metrics.jsonl")
        events, _ = follower.poll()
        history.add(events)
        self.follower = follower
        try:
            config_text = (self.run_dir / "config.toml").read_text(encoding="utf-8")
        except OSError:
            config_text = ""
        self.post_message(RunLoaded(info, history, config_text))
        self.verify_checkpoints()

    @on(RunLoaded)
    def _loaded(self, message: RunLoaded) -> None:
        if message.info is None:
            self.notify(f"{self.run_dir}: not a run made by llmtui", severity="error", markup=False)
            self.app.pop_screen()
            return
        self.info, self.history, self.config_text = message.info, message.history, message.config_text
        self._draw_curves(self.history.train, self.history.val, reset=True)
        self._show_head()
        self.query_one("#run-config", ConfigView).show(self.config_text)
        reference = self._reference()
        if reference is not None:
            self.query_one(LossChart).set_reference(reference.points, f"{reference.preset} reference")
        self.set_interval(self.app.refresh_rate, self.follow)

    def _reference(self):
        from llmtui.engine.config.loading import config_from_dict, parse_toml
        from llmtui.engine.errors import UserError

        try:
            cfg = config_from_dict(parse_toml(self.config_text, "config.toml"))
        except UserError:
            return None
        return self.app.reference_curve(cfg)

    @work(thread=True, exclusive=True, group="run-follow", exit_on_error=False)
    def follow(self) -> None:
        """New lines of a run being trained (by this app or another process)."""
        from llmtui.engine.training.runs import run_info

        if self.follower is None or self.info is None:
            return
        if self.info.status != "running" and not self._trained_here():
            return
        events, reset = self.follower.poll()
        self.post_message(RunFollowed(events, reset, run_info(self.run_dir)))

    def _trained_here(self) -> bool:
        training = self.app.training
        return training is not None and training.running and \
            Path(training.cfg.run.out_dir) / training.cfg.run.name == self.run_dir

    @on(RunFollowed)
    def _followed(self, message: RunFollowed) -> None:
        self.follows += 1
        if message.reset:
            self.history = RunHistory()
        before = (len(self.history.train), len(self.history.val), len(self.history.starts))
        self.history.add(message.events)
        if message.info is not None:
            self.info = message.info
        h = self.history
        # a new segment may have cut the curves back: then they are drawn again whole
        cut = message.reset or len(h.starts) != before[2] or len(h.train) < before[0]
        if message.events:
            new_train = h.train if cut else h.train[before[0]:]
            new_val = h.val if cut else h.val[before[1]:]
            self._draw_curves(new_train, new_val, reset=cut)
        self._show_head()

    def _draw_curves(self, train: list, val: list, reset: bool) -> None:
        chart = self.query_one(LossChart)
        h = self.history
        if reset:
            chart.clear()
        chart.add_points(train, val)
        if self.info is not None and self.info.max_steps:
            chart.set_total_steps(self.info.max_steps)
        chart.set_current_step(h.last_step)
        self.query_one("#run-lr", Sparkline).data = [v for _, v in h.lr[-200:]]
        self.query_one("#run-tps", Sparkline).data = [v for _, v in h.tokens_per_sec[-200:]]
        last_lr = fmt_num(h.lr[-1][1]) if h.lr else "–"
        last_tps = f"{h.tokens_per_sec[-1][1]:,.0f}" if h.tokens_per_sec else "–"
        self.query_one("#run-figures", Static).update(
            f"train   {fmt_loss(h.train[-1][1]) if h.train else '–'}\n"
            f"val     {fmt_loss(h.val[-1][1]) if h.val else '–'}\n"
            f"lr      {last_lr}\n"
            f"tok/s   {last_tps}\n"
            f"segments {len(h.starts)}")

    def _show_head(self) -> None:
        """Name and state, then the figures; on a narrow terminal the line wraps, between
        figures only (each figure's own spaces do not break)."""
        r = self.info
        if r is None:
            return
        text = Text()
        text.append(f" {r.name}  ", "bold")
        text.append(r.status, STATUS_STYLE.get(r.status, ""))
        if r.holder is not None:
            who = "trained by" if r.holder.alive else "left by"
            text.append(f" ({who} {r.holder.describe()})", "dim")
        steps = f"{r.steps:,}" + (f"/{r.max_steps:,}" if r.max_steps else "")
        figures = [f"step {steps}", f"best val {fmt_loss(r.best_val_loss)}",
                   f"time {fmt_duration(r.training_time)}", f"tokens {fmt_count(r.tokens_seen)}",
                   f"{r.model} · {r.tokenizer}"]
        for figure in figures:
            text.append("   " + figure.replace(" ", "\u00a0"))
        self.query_one("#run-head", Static).update(text)

    @work(thread=True, exclusive=True, group="run-verify", exit_on_error=False)
    def verify_checkpoints(self) -> None:
        """Every checkpoint's sha256 against its manifest (reads every file once)."""
        from llmtui.engine.errors import CheckpointError
        from llmtui.engine.training import checkpoint as ckpt

        results = []
        for path in ckpt.candidates(self.run_dir):
            try:
                ckpt.verify(path)
                problem = None
            except CheckpointError as exc:
                problem = exc.detail
            results.append((path.name, ckpt.checkpoint_step(path), problem))
        self.post_message(CheckpointsVerified(results))

    @on(CheckpointsVerified)
    def _verified(self, message: CheckpointsVerified) -> None:
        import json

        table = self.query_one("#run-checkpoints", DataTable)
        table.clear()
        for name, step, problem in message.results:
            try:
                state = json.loads((self.run_dir / name / "state.json").read_text())
                val = state.get("val_loss") if isinstance(state, dict) else None
            except (OSError, ValueError):
                val = None
            files = len(list((self.run_dir / name).iterdir())) if (self.run_dir / name).is_dir() else 0
            verdict = Text("✓ intact", "green") if problem is None else Text(f"✗ {problem}", "red")
            table.add_row(name, f"{step:,}", fmt_loss(val if isinstance(val, (int, float)) else None),
                          str(files), verdict, key=name)
        self.verified = message.results

    # -- actions ------------------------------------------------------------------------

    def _newest_checkpoint(self) -> Path | None:
        results = self.verified
        if results is None:
            from llmtui.engine.training.runs import newest_intact_checkpoint
            return newest_intact_checkpoint(self.run_dir)[0]
        intact = [(step, name) for name, step, problem in results if problem is None]
        return self.run_dir / max(intact)[1] if intact else None

    def action_resume(self) -> None:
        r = self.info
        if r is None:
            return
        if r.status == "running":
            who = r.holder.describe() if r.holder is not None else "by another process"
            self.notify(f"{r.name} is being trained now ({who}).", severity="warning", markup=False)
            return
        if not r.checkpoints:
            self.notify(f"{r.name} has no checkpoint to resume from.", severity="warning", markup=False)
            return
        from llmtui.tui.screens.dialogs import NumberScreen

        finished = r.max_steps is not None and r.steps >= r.max_steps
        default = (r.max_steps or r.steps) * 2 if finished else (r.max_steps or r.steps + 1000)
        question = (f"{r.name} is {r.status} at step {r.steps:,}"
                    + (f" of {r.max_steps:,}" if r.max_steps else "")
                    + ". Train it on to step:")

        def chosen(steps: int | None) -> None:
            if steps is not None:
                self.app.resume_run(self.run_dir, steps)

        # the learning rate where training goes on: a new length moves the schedule under it
        from llmtui.engine.training.checkpoint import candidates
        from llmtui.engine.training.runs import resume_point

        # the newest intact one once the Checkpoints tab verified them; else the newest (no
        # hashing here: the resume verifies)
        checkpoint = self._newest_checkpoint() if self.verified is not None else \
            next(iter(candidates(self.run_dir)), None)
        point = resume_point(checkpoint) if checkpoint is not None else None
        self.app.push_screen(NumberScreen("Resume run", question, default, r.steps + 1, 10**9,
                                          action="Resume", explain=point.lr_change if point else None),
                             chosen)

    def action_generate(self) -> None:
        checkpoint = self._newest_checkpoint()
        if checkpoint is None:
            self.notify("No intact checkpoint to generate from.", severity="warning")
            return
        self.app.open_generate(checkpoint)

    def action_evaluate(self) -> None:
        checkpoint = self._newest_checkpoint()
        if checkpoint is None:
            self.notify("No intact checkpoint to evaluate.", severity="warning")
            return
        self.app.open_evaluate(checkpoint)

    def action_to_wizard(self) -> None:
        from llmtui.engine.config.document import ConfigDocument
        from llmtui.engine.errors import UserError

        try:
            doc = ConfigDocument.from_text(self.config_text, None, origin=f"config of run {self.run_dir.name}")
        except UserError as exc:
            self.notify(str(exc), severity="error", timeout=10, markup=False)
            return
        doc.set("run.name", f"{self.run_dir.name}-copy")
        doc.dirty = False
        self.app.open_wizard(doc)

    def action_delete(self) -> None:
        r = self.info
        if r is None:
            return
        if r.status == "running":
            self.notify(f"{r.name} is being trained; stop it first.", severity="warning", markup=False)
            return
        from llmtui.tui.screens.dialogs import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            from llmtui.engine.errors import UserError
            from llmtui.engine.training.runs import delete_run
            try:
                kept = delete_run(self.run_dir)
            except UserError as exc:
                self.notify(str(exc), severity="error", timeout=10, markup=False)
                return
            self.notify(f"Deleted run {r.name}" + (f"; kept {', '.join(kept)}." if kept else "."), markup=False)
            self.app.pop_screen()

        self.app.push_screen(ConfirmScreen(
            f"Delete run {r.name}? Its checkpoints, metrics, summary and config go; other files in "
            f"{self.run_dir} are kept.", yes="Delete", title="Delete run"), answered)

    def action_back(self) -> None:
        self.app.pop_screen()

    def palette_commands(self):
        from textual.app import SystemCommand

        name = self.run_dir.name
        yield SystemCommand(f"Resume {name}", "Train this run on (asks how many steps)", self.action_resume)
        yield SystemCommand(f"Sample from {name}", "Generate text from its newest checkpoint",
                            self.action_generate)
        yield SystemCommand(f"Evaluate {name}", "Loss, perplexity, accuracy and bits per byte of its "
                            "newest checkpoint on a file", self.action_evaluate)
        yield SystemCommand(f"Copy {name}'s config into the wizard", "Start a new run from this one",
                            self.action_to_wizard)
        yield SystemCommand(f"Delete {name}", "Delete the run's own files (asks first)", self.action_delete)
