"""Optional experiment trackers: TensorBoard and Weights & Biases.

Each is an event listener, created only when its config key is set, and its
package is imported only then: neither is a dependency of llmtui.
"""

from __future__ import annotations

from llmtui.engine.config.schema import Config
from llmtui.engine.errors import ConfigError
from llmtui.engine.training.events import DoneEvent, EvalEvent, Event, SampleEvent, TrainEvent

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
    def __init__(self, log_dir: str):
        self.writer = _summary_writer_class()(log_dir=log_dir)

    def __call__(self, event: Event) -> None:
        for tag, value in _scalars(event):
            self.writer.add_scalar(tag, value, event.step)
        if isinstance(event, SampleEvent):
            self.writer.add_text("sample", event.text, event.step)
        if isinstance(event, DoneEvent):
            self.writer.close()


class WandbLogger:
    def __init__(self, cfg: Config):
        wandb = self.wandb = _wandb_module()
        self.run = wandb.init(project=cfg.logging.wandb_project,
                              name=cfg.logging.wandb_run_name or cfg.run.name, config=cfg.to_dict())

    def __call__(self, event: Event) -> None:
        figures = dict(_scalars(event))
        if figures:
            self.run.log(figures, step=event.step)
        if isinstance(event, DoneEvent):
            self.run.finish()


def trackers(cfg: Config) -> list:
    """The listeners the config asks for; a one-line error if a package is missing."""
    out = []
    if cfg.logging.tensorboard_dir:
        out.append(TensorBoardLogger(cfg.logging.tensorboard_dir))
    if cfg.logging.wandb_project:
        out.append(WandbLogger(cfg))
    return out
