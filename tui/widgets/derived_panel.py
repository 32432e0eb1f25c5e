"""The wizard's side panel: figures derived from the config as it is edited.

Everything here is computed (parameter count, batch arithmetic) or estimated
(memory, time) by `engine.planning.estimate`; estimates are labelled as such.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmtui.engine.config.resolved import is_auto
from llmtui.engine.planning.sizing import MANY_EPOCHS
from llmtui.tui.format import fmt_bytes, fmt_count, fmt_duration, fmt_flops, fmt_step_time
from llmtui.tui.widgets.stat_panel import Row, StatPanel

if TYPE_CHECKING:
    from llmtui.engine.config.schema import Config
    from llmtui.engine.planning.estimate import Estimate


def derived_rows(cfg: Config | None, est: Estimate | None, error: str | None = None,
                 vocab_known: bool = False, model_from: str | None = None,
                 train_tokens: tuple[int, bool] | None = None) -> list[Row]:
    """`model_from`: the model comes from a source that is not at hand yet (an hf: id not
    in the cache): that is said instead of figures of a model the run will not build.
    `train_tokens`: (tokens in the training split, whether that is the prepared count
    rather than an estimate from the corpus size), or None when unknown."""
    rows: list[Row] = []
    if cfg is None:
        return [("Fix the settings", "", "heading"), ("", error or "", "bad wrap")]
    if model_from:
        est = None
        error = "once the start model is at hand"
    t, m = cfg.training, cfg.model
    auto = is_auto(t.batch_size) or is_auto(t.grad_accum_steps)
    numbers: tuple[int, int] | None = None   # micro-batch, accumulation
    if est is not None:
        numbers = est.batch_size, est.grad_accum_steps
    elif isinstance(t.batch_size, int) and isinstance(t.grad_accum_steps, int):   # neither "auto"
        numbers = t.batch_size, t.grad_accum_steps
    rows.append(("Model", "", "heading"))
    if model_from:
        rows.append(("", model_from, "dim wrap"))
    elif est is not None:
        rows.append(("parameters", fmt_count(est.n_params) + ("" if vocab_known else " (est.)")))
        rows.append(("non-embed.", fmt_count(est.n_params_non_embedding)))
        rows.append(("per token", fmt_flops(est.flops_per_token)))
        if est.optimizer_flops_per_step:   # Muon's orthogonalization: once a step, not per token
            rows.append(("optimizer", fmt_flops(est.optimizer_flops_per_step) + "/step"))
    if not model_from:
        if m.head_dim:      # heads of their own width (Qwen3's model.head_dim)
            rows.append(("head size", f"{m.head_dim} (head_dim)"))
        else:
            rows.append(("head size", f"{m.n_embd // m.n_head}" if m.n_embd % m.n_head == 0 else "n/a"))
    rows.append(("Batch" + (" (auto, est.)" if auto else ""), "", "heading"))
    tokens_step: int | None = None
    if numbers is not None:
        batch, accum = numbers
        tokens_step = batch * accum * m.block_size
        rows.append(("micro-batch", f"{batch:,} x {accum:,} accum."))
        rows.append(("effective", f"{batch * accum:,} sequences"))
        rows.append(("tokens/step", f"{tokens_step:,}"))
    else:
        rows.append(("effective", "auto (needs hardware)"))
    tokens, exact = train_tokens if train_tokens and train_tokens[0] > 0 else (None, False)
    approx = "" if exact else "~"
    if t.epochs > 0:
        rows.append(("length", f"{t.epochs:g} epochs"))
        if batch is not None and tokens:
            # as the trainer counts them: every window of block_size once per epoch
            windows = max(1, (tokens - 1) // m.block_size)
            steps = max(1, math.ceil(t.epochs * math.ceil(windows / (batch * accum))))
            rows.append(("steps", f"{approx}{steps:,}"))
    else:
        rows.append(("steps", f"{t.max_steps:,}"))
        if tokens_step:
            rows.append(("tokens", fmt_count(tokens_step * t.max_steps)))
            if tokens:   # the share of the training split that many tokens make
                epochs = tokens_step * t.max_steps / tokens
                many = epochs > MANY_EPOCHS
                rows.append(("epochs", f"{approx}{epochs:,.2f}" + ("" if exact else " (est.)"),
                             "warn" if many else ""))
                if many:
                    rows.append(("", "many passes over the text: the model will learn it by heart; "
                                     "more text or fewer steps", "warn wrap"))
    if tokens:
        rows.append(("train set", f"{approx}{fmt_count(tokens)} tokens"))
    else:
        rows.append(("train set", "not prepared", "dim"))
    if est is None:
        rows.append(("Estimates", "", "heading"))
        rows.append(("", error or "waiting for hardware detection", "dim wrap"))
        return rows
    return estimate_rows(est) + rows


def estimate_rows(est: Estimate) -> list[Row]:
    """Time and memory, first in the panel: at 80x24 what a user asks first (how long,
    will it fit) shows without scrolling; the model and batch figures follow."""
    rows: list[Row] = [("Time (" + ("measured" if est.calibrated else "estimate") + ")", "", "heading")]
    if est.step_seconds:
        # with the format it runs in: what training.precision = "auto" picks here
        rows.append(("per step", f"~{fmt_step_time(est.step_seconds)}, {est.precision}"))
    if est.total_seconds:
        rows.append(("whole run", "~" + fmt_duration(est.total_seconds)))
    if not est.step_seconds and not est.total_seconds:
        rows.append(("", "no estimate for this device", "dim"))
    rows.append(("Memory (estimate)", "", "heading"))
    cls = "good" if est.fits else ("bad" if est.fits is False else "")
    rows.append(("needs", "~" + fmt_bytes(est.memory_total), cls))
    if est.device_memory:
        rows.append((f"{est.device} free"[:11], fmt_bytes(est.device_memory)))
    if est.fits is False:
        rows.append(("", "will not fit: lower batch_size or block_size, or use grad_accum_steps",
                     "bad wrap"))
    for name, size in sorted(est.memory.items(), key=lambda kv: -kv[1])[:4]:
        rows.append((f" {name}", fmt_bytes(size), "dim"))
    for note in est.notes:
        rows.append(("note", note, "warn wrap"))
    return rows


class DerivedPanel(StatPanel):
    def __init__(self, **kwargs):
        super().__init__("Derived", label_width=12, **kwargs)

    def show(self, cfg: Config | None, est: Estimate | None, error: str | None = None,
             vocab_known: bool = False, model_from: str | None = None,
             train_tokens: tuple[int, bool] | None = None) -> None:
        self.set_rows(derived_rows(cfg, est, error, vocab_known, model_from, train_tokens))
