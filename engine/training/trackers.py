"""Optional experiment trackers: TensorBoard and Weights & Biases.

Each is an event listener, created only when its config key is set, and its
package is imported only then: neither is a dependency of llmtui.

Both also get the train loss smoothed as 002's trainer writes it (an
exponential moving average, debiased like TensorBoard's own smoothing). W&B
gets the parameter count in the run's config and the elapsed time with every
train record (004), and a resumed run continues the same W&B run: its id is
kept in the run directory (WANDB_ID_FILE).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from llmtui.engine import fsutil
from llmtui.engine.config.schema import Config
from llmtui.engine.errors import ConfigError
from llmtui.engine.training.events import DoneEvent, EvalEvent, Event, SampleEvent, StartEvent, TrainEvent

WANDB_ID_FILE = "wandb_run_id.txt"   # in the run directory (rundir.OWN_FILES)
SMOOTHING = 0.6                      # TensorBoard's default smoothing weight

# figures worth a chart, by event type
_SCALARS = {
    TrainEvent: ("loss", "lr", "grad_norm", "tokens_per_sec", "ms_per_step", "mfu"),
    EvalEvent: ("val_loss", "val_perplexity", "val_accuracy"),
}


def _scalars(event: Event):
    for key in _SCALARS.get(type(event), ()):
        value = getattr(event, key)
        if isinstance(value, (int, float)):
            yield f"{event.kind}/{key}", float(value)


class _Smoothed:
    """The debiased exponential moving average of the train losses seen so far."""

    def __init__(self, weight: float = SMOOTHING):
        self.weight, self.average, self.count = weight, 0.0, 0

    def __call__(self, event: Event) -> dict[str, float]:
        if not isinstance(event, TrainEvent) or not isinstance(event.loss, (int, float)):
            return {}
        self.count += 1
        self.average = self.weight * self.average + (1 - self.weight) * float(event.loss)
        return {"train/loss_smoothed": self.average / (1 - self.weight ** self.count)}


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("logging.tensorboard_dir is set but the tensorboard package is not "
                          "installed: pip install tensorboard (or set it to \"\")",
                          key="logging.tensorboard_dir") from None
    return SummaryWriter


def _wandb_module():
    try:
        import wandb
    except ImportError:
        raise ConfigError("logging.wandb_project is set but the wandb package is not installed: "
                          "pip install wandb (or set it to \"\")", key="logging.wandb_project") from None
    return wandb


def check_trackers(cfg: Config) -> None:
    """Refuse now, writing nothing, when a tracker the config asks for is not installed."""
    if cfg.logging.tensorboard_dir:
        _summary_writer_class()
    if cfg.logging.wandb_project:
        _wandb_module()


class TensorBoardLogger:
    def __init__(self, log_dir: str, flush_every_n: int = 0):
        self.writer = _summary_writer_class()(log_dir=log_dir)
        self.flush_every_n, self.train_records = flush_every_n, 0
        self.smoothed = _Smoothed()

    def __call__(self, event: Event) -> None:
        for tag, value in [*_scalars(event), *self.smoothed(event).items()]:
            self.writer.add_scalar(tag, value, event.step)
        if isinstance(event, SampleEvent):
            self.writer.add_text("sample", event.text, event.step)
        if isinstance(event, TrainEvent) and self.flush_every_n:
            self.train_records += 1
            if self.train_records % self.flush_every_n == 0:
                self.writer.flush()
        if isinstance(event, DoneEvent):
            self.writer.close()


class WandbLogger:
    """Starts the W&B run when training starts (the StartEvent names the run directory and
    the parameter count): a resumed run continues the W&B run whose id its directory keeps."""

    def __init__(self, cfg: Config):
        self.wandb = _wandb_module()
        self.cfg, self.run, self.started = cfg, None, 0.0
        self.smoothed = _Smoothed()

    def _start(self, event: StartEvent) -> None:
        id_file = Path(event.run_dir) / WANDB_ID_FILE
        run_id = None
        if event.resumed_from:
            try:
                run_id = id_file.read_text(encoding="utf-8").strip() or None
            except OSError:
                run_id = None   # trained without W&B until now: a new W&B run
        if run_id is None:
            run_id = uuid.uuid4().hex[:8]   # W&B's own ids are 8 characters of this kind
            fsutil.atomic_write(id_file, run_id.encode())
        cfg = self.cfg
        self.run = self.wandb.init(
            project=cfg.logging.wandb_project, name=cfg.logging.wandb_run_name or cfg.run.name,
            config=cfg.to_dict() | {"n_params": event.n_params,
                                    "n_params_non_embedding": event.n_params_non_embedding},
            id=run_id, resume="allow")
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        if isinstance(event, StartEvent):
            self._start(event)
            return
        if self.run is None:
            return
        figures = dict(_scalars(event)) | self.smoothed(event)
        if isinstance(event, TrainEvent):
            figures["train/elapsed_time"] = time.monotonic() - self.started
        if figures:
            self.run.log(figures, step=event.step)
        if isinstance(event, DoneEvent):
            self.run.finish()


def trackers(cfg: Config) -> list[TensorBoardLogger | WandbLogger]:
    """The listeners the config asks for; a one-line error if a package is missing."""
    out: list[TensorBoardLogger | WandbLogger] = []
    if cfg.logging.tensorboard_dir:
        out.append(TensorBoardLogger(cfg.logging.tensorboard_dir, cfg.logging.tensorboard_flush_every_n))
    if cfg.logging.wandb_project:
        out.append(WandbLogger(cfg))
    return out
