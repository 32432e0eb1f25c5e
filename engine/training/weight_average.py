"""An exponential moving average (EMA) of the model's weights (training.ema_decay).

After every optimizer step each weight's average moves toward it,
avg <- avg + (1 - d_t) * (w - avg), with d_t = min(ema_decay, (1 + t) / (10 + t)): over the
first steps the average follows the weights closely, so the random start weights do not
weigh in for long (TensorFlow's ExponentialMovingAverage with num_updates).

The average is what a run evaluates, samples from and saves as a checkpoint's model
(model.safetensors: what generate, export, evaluate and init_from load, and what the
checkpoint's val loss is of). The weights being trained are saved beside the optimizer's
state (state.safetensors, TRAIN_WEIGHTS + each name), so a resume continues them, and the
average, exactly.

Why: while the learning rate is high the weights move around the floor of the loss
valley and the average sits nearer to it. Measured on the cpu preset, tinyshakespeare,
val loss on the whole split (bench/RESULTS.md): step 250 1.941 as trained, 1.876 averaged
with 0.98; step 400 1.875 and 1.801; at the end of the cosine decay 1.6095 and 1.6097 (the
decay to zero does the averaging there).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from llmtui.engine.training.snapshot import clean_model_state, load_model_state

TRAIN_WEIGHTS = "train_weights."      # the trained weights' names in state.safetensors


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = model, decay
        # parameters() gives a tied weight once
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def restart(self) -> None:
        """The average set to the weights as they are (after a checkpoint was loaded)."""
        for avg, p in zip(self.average, self.params):
            avg.copy_(p)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average toward the weights after optimizer step `step` (0-based)."""
        weight = 1.0 - min(self.decay, (1 + step) / (10 + step))
        for avg, p in zip(self.average, self.params):
            avg.lerp_(p, weight)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """The average into the model's weights for good (a run's end: the model in memory is
        then the checkpoint's model)."""
        for p, avg in zip(self.params, self.average):
            p.copy_(avg)

    @contextlib.contextmanager
    def in_model(self) -> Iterator[None]:
        """The average in the model's weights while the block runs (evaluating, sampling);
        the trained weights back afterwards, whatever happens inside."""
        trained = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, trained):
                    p.copy_(w)

    def model_state(self) -> dict[str, torch.Tensor]:
        """The model's weights by clean names, each parameter's average in its place: a
        checkpoint's model.safetensors (copies: the live weights keep training)."""
        with self.in_model():
            return {name: t.clone() for name, t in clean_model_state(self.model).items()}

    def train_weights(self) -> dict[str, torch.Tensor]:
        """The trained weights as state.safetensors holds them."""
        return {TRAIN_WEIGHTS + name: t for name, t in clean_model_state(self.model).items()}


def trained_weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trained weights in a checkpoint's state.safetensors tensors, by their model names
    (none when it was written without a weight average)."""
    return {k[len(TRAIN_WEIGHTS):]: t for k, t in tensors.items() if k.startswith(TRAIN_WEIGHTS)}


def restore_train_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                          average: WeightAverage | None, source: str) -> None:
    """After a checkpoint's model.safetensors was loaded into `model`: the average taken from
    it, and the trained weights saved beside the optimizer state (if any) loaded in their
    place. Without an average (training.ema_decay = 0 now) the trained weights go on
    training; a checkpoint without them (written without an average) leaves the model as
    loaded, and the average starts from it."""
    if average is not None:
        average.restart()
    trained = trained_weights(tensors)
    if trained:
        load_model_state(model, trained, source)
