"""The optimizers that train a GPT.

- adamw / adam (nanoGPT's way): one fused AdamW for every parameter, weight decay on
  matrices and embeddings only.
- muon: PyTorch's torch.optim.Muon for the 2-D matrices inside the blocks (attention and
  MLP weights), whose updates it orthogonalizes with a Newton-Schulz iteration, and a
  fused AdamW for what Muon is not made for: the token (and position) embeddings, the
  output head, norm gains and biases, each group at its own learning rate.

Muon's learning rate follows the "match_rms_adamw" rule of torch.optim.Muon (Moonshot,
"Muon is Scalable for LLM Training"): the update of an A x B matrix is scaled by
0.2 * sqrt(max(A, B)), so its size matches an AdamW update's and learning rates and
weight decay keep AdamW's meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, cast

import torch
import torch.nn as nn

from llmtui.engine.model.shapes import MUON_NS_STEPS, newton_schulz_flops

if TYPE_CHECKING:
    from llmtui.engine.model.gpt import GPT


class Muon(torch.optim.Muon):
    """torch.optim.Muon, with its Newton-Schulz iteration in a chosen float format.

    PyTorch runs the iteration in bfloat16: right on GPUs and CPUs with bf16 matrix units,
    but a CPU without them emulates bf16 matmuls (measured on this repo's AVX2 machine:
    ~0.8 s per 128x512 matrix, seconds per step). There `ns_dtype` = float32 runs the
    same iteration at the fp32 matmul speed. Everything else (hyperparameters, the
    momentum_buffer state, state_dict) is torch.optim.Muon's; with ns_dtype = bfloat16
    a step is bit for bit torch.optim.Muon's (tests/test_optimizers.py checks it).
    """

    def __init__(self, params, *, ns_dtype: torch.dtype = torch.bfloat16, **kwargs):
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            params, updates = [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                params.append(p)
                updates.append(p.grad.lerp(buf, momentum) if group["nesterov"] else buf)
            orthogonal = self._orthogonalize_all(updates, group)
            for p, update in zip(params, orthogonal):
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss

    def _orthogonalize_all(self, updates: list[torch.Tensor], group: dict) -> list[torch.Tensor]:
        """Each update orthogonalized. In bf16, one matrix at a time, as torch.optim.Muon does
        (bit for bit). In fp32, matrices of one shape go through the iteration together as one
        batched matmul: the same arithmetic per matrix, in fewer, larger kernels (measured on
        the 2-core CPU for the cpu preset's 16 matrices: 21 ms instead of 36 ms per step)."""
        args = (group["ns_coefficients"], group["ns_steps"], group["eps"], self.ns_dtype)
        if self.ns_dtype == torch.bfloat16:
            return [orthogonalize(u, *args) for u in updates]
        out: dict[int, torch.Tensor] = {}
        by_shape: dict[tuple, list[int]] = {}
        for i, u in enumerate(updates):
            by_shape.setdefault(tuple(u.shape), []).append(i)
        for indices in by_shape.values():
            stacked = orthogonalize(torch.stack([updates[i] for i in indices]), *args)
            for i, result in zip(indices, stacked.unbind(0)):
                out[i] = result
        return [out[i] for i in range(len(updates))]


def orthogonalize(grad: torch.Tensor, coefficients, steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration (torch.optim.Muon's, in `dtype`): the
    matrix pushed towards the nearest semi-orthogonal one, U V^T of its SVD. A stack of
    matrices (..., rows, cols) is orthogonalized matrix by matrix in one batched iteration."""
    a, b, c = coefficients
    x = grad.to(dtype)
    tall = grad.size(-2) > grad.size(-1)
    if tall:
        x = x.mT
    if x.dim() == 2:
        x = x / x.norm().clamp(min=eps)   # spectral norm <= Frobenius norm <= 1
        for _ in range(steps):
            gram = x @ x.T
            poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
            x = torch.addmm(x, poly, x, beta=a)
    else:
        x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
        for _ in range(steps):
            gram = x @ x.mT
            poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
            x = torch.baddbmm(x, poly, x, beta=a)
    return x.mT if tall else x


def adjusted_lr(lr: float, rule: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's per-matrix learning-rate scale."""
    rows, cols = shape[:2]
    if rule is None or rule == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if rule == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


@dataclass
class Optimizers:
    """The run's optimizers. `adam` (AdamW or Adam) is a checkpoint's "optimizer" (its
    name since 0.1.0); `muon`, when the run uses it, its "muon". `base_lrs` holds each
    param group's peak learning rate (adam's groups, then muon's): the schedule scales
    them all by the same factor."""

    adam: torch.optim.Optimizer
    muon: Muon | None = None
    base_lrs: list[float] = field(default_factory=list)
    extra_flops_per_step: int = 0     # Newton-Schulz matmuls, not part of the model's FLOPs

    def __iter__(self):
        yield self.adam
        if self.muon is not None:
            yield self.muon

    def groups(self):
        for optimizer in self:
            yield from optimizer.param_groups

    def set_lr(self, lr: float, peak: float) -> None:
        """Set the learning rates for a step where the schedule gives `lr` for `peak`:
        a group whose peak is `peak` gets `lr` itself, others the same share of theirs."""
        for group, base in zip(self.groups(), self.base_lrs):
            group["lr"] = lr if base == peak else base * lr / peak

    def zero_grad(self) -> None:
        for optimizer in self:
            optimizer.zero_grad(set_to_none=True)


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (Linear weights and embeddings, as nanoGPT does),
    never on biases or norm gains: shrinking those only hurts."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in unique_parameters(model):
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def unique_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Trainable parameters, a tied weight once."""
    seen: set[int] = set()
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            yield p


def build_optimizers(model: nn.Module, o, *, autocast_dtype: torch.dtype | None = None) -> Optimizers:
    """The optimizers `o` (a config's [optimizer] section) asks for, for a run that
    computes in `autocast_dtype` (None: fp32). Muon's Newton-Schulz iteration runs in
    bf16 where the run does (the device has fast bf16 matmuls), else in fp32 (CPUs
    without bf16 units emulate it, far too slowly)."""
    ns_dtype = torch.bfloat16 if autocast_dtype == torch.bfloat16 else torch.float32
    adam_class = torch.optim.Adam if o.name == "adam" else torch.optim.AdamW
    adam_args = dict(betas=tuple(o.betas), eps=o.eps)
    if o.name != "muon":
        # fused AdamW runs one kernel for all parameters, on CUDA and (torch >= 2.4) on
        # CPU; measured here 1.9 ms vs 3.1 ms per step for the 0.8M-parameter recipe
        groups = optimizer_groups(model, o.weight_decay)
        adam = adam_class(groups, lr=o.learning_rate, fused=True, **adam_args)
        return Optimizers(adam=adam, base_lrs=[o.learning_rate] * len(groups))
    raw = cast("GPT", getattr(model, "_orig_mod", model))   # the GPT (under torch.compile's wrapper)
    outer = {id(p) for name in ("wte", "wpe") if name in raw.transformer
             for p in raw.transformer[name].parameters()}
    head = {id(raw.lm_head.weight)} - outer         # a tied head is the token embedding
    matrices, embeddings, heads, gains = [], [], [], []
    for p in unique_parameters(raw):
        if id(p) in outer:
            embeddings.append(p)
        elif id(p) in head:
            heads.append(p)
        elif p.dim() == 2:
            matrices.append(p)
        else:
            gains.append(p)
    lr_of = lambda value: value or o.learning_rate   # noqa: E731  (0 = learning_rate)
    groups = [{"params": embeddings, "lr": lr_of(o.embedding_learning_rate), "weight_decay": o.weight_decay},
              {"params": heads, "lr": lr_of(o.head_learning_rate), "weight_decay": o.weight_decay},
              {"params": gains, "lr": lr_of(o.gain_learning_rate), "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    adam = adam_class(groups, lr=o.learning_rate, fused=True, **adam_args)
    muon = Muon(matrices, lr=o.learning_rate, weight_decay=o.weight_decay, momentum=o.muon_momentum,
                nesterov=True, ns_steps=MUON_NS_STEPS, adjust_lr_fn="match_rms_adamw", ns_dtype=ns_dtype)
    return Optimizers(adam=adam, muon=muon, base_lrs=[g["lr"] for g in groups] + [o.learning_rate],
                      extra_flops_per_step=sum(newton_schulz_flops(p.shape) for p in matrices))
