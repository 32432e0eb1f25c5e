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

None of them is a torch.optim optimizer, for start-up: torch.optim.Optimizer wraps
__init__, add_param_group, zero_grad, state_dict and load_state_dict in
torch._disable_dynamo (and step in a graph break), and the first call of any of them
imports torch._dynamo (with torch._inductor, sympy, ...), which costs about as much CPU
as importing torch itself (measured on this repo's 2-core machine under load: import
torch 2.1 s, then torch.optim.AdamW([p], fused=True) 1.7 s more). These classes do the
same arithmetic (AdamW's step is the very kernel torch.optim.AdamW(fused=True) runs,
Muon's is torch.optim.Muon's loop; tests/test_optim.py checks both bit for bit) and keep
the interface the rest of the engine, torch.amp.GradScaler and
torch.distributed.checkpoint use: `param_groups`, `state` (torch's keys: "step",
"exp_avg", "exp_avg_sq", "momentum_buffer"), `state_dict()` / `load_state_dict()` in
torch's format (each loads the other's), `zero_grad(set_to_none=True)`, and for the
fused AdamW `_step_supports_amp_scaling` with GradScaler's grad_scale / found_inf.
"""

from __future__ import annotations

import math
from collections import defaultdict
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, cast

import torch
import torch.nn as nn

from llmtui.engine.model.shapes import MUON_NS_STEPS, newton_schulz_flops

if TYPE_CHECKING:
    from llmtui.engine.model.gpt import GPT

MUON_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # torch.optim.Muon's quintic Newton-Schulz coefficients


class Optimizer:
    """What llmtui, torch.amp.GradScaler and torch.distributed.checkpoint use of a
    torch.optim.Optimizer, without torch.optim (see the module's docstring: start-up).

    `param_groups` is a list of dicts ("params" and the hyperparameters, each group
    completed from `defaults`), `state` maps a parameter to its dict of state.
    `state_dict()` packs both as torch does (parameters as indices in group order) and
    `load_state_dict()` reads that format back, whichever optimizer wrote it; the group
    keys in `FLAGS` say how this class computes (fused or not, ...), not what it
    computes with, and are kept as they are on load.
    """

    FLAGS: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(dict(group))

    def add_param_group(self, group: dict[str, Any]) -> None:
        params = group["params"]
        group["params"] = [params] if isinstance(params, torch.Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"an optimizer can only optimize tensors, not {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("an optimizer can't optimize a non-leaf tensor")
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        ids = [id(p) for p in group["params"]]
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if len(set(ids)) != len(ids) or taken.intersection(ids):
            raise ValueError("a parameter appears twice in an optimizer's parameter groups")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad.grad_fn is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim.Optimizer.state_dict()'s format: {"state": {index: {key: value}},
        "param_groups": [{..., "params": [index, ...]}]}; the tensors are the live state."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)] if isinstance(p, torch.Tensor) else p: values for p, values in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A state_dict in torch's format (ours or a torch.optim optimizer's of the same
        kind): the saved groups' hyperparameters, and each state tensor moved to its
        parameter's device (and a moment to its dtype), as torch.optim loads them."""
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size "
                             "of optimizer's group")
        group_of: dict[int, dict[str, Any]] = {}
        params: dict[Any, torch.Tensor] = {}
        for saved, group in zip(saved_groups, self.param_groups):
            for i, p in zip(saved["params"], group["params"]):
                params[i], group_of[id(p)] = p, group
        state: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        for key, values in state_dict["state"].items():
            if key not in params:
                state[key] = values
                continue
            p = params[key]
            state[p] = {name: self._cast(p, name, value, group_of[id(p)]) for name, value in values.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            saved["params"] = group["params"]
            saved.update({flag: group[flag] for flag in self.FLAGS})
        self.state, self.param_groups = state, saved_groups
        self._loaded()

    def _cast(self, p: torch.Tensor, key: str, value: Any, group: dict[str, Any]) -> Any:
        """A loaded state value as torch.optim.Optimizer puts it in place."""
        if not isinstance(value, torch.Tensor):
            return value
        if key == "step":
            return value.to(dtype=torch.float32, device=p.device) if group.get("fused") else value
        return value.to(dtype=p.dtype, device=p.device) if p.is_floating_point() else value.to(device=p.device)

    def _loaded(self) -> None:
        """After load_state_dict: what an optimizer completes in a loaded state."""

    def step(self, closure=None):
        raise NotImplementedError

    @staticmethod
    def _closure_loss(closure):
        """torch.optim's step(closure): the loss it returns, computed with grad enabled."""
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()


class Adam(Optimizer):
    """Adam (weight decay as an L2 term of the gradient) or, with decoupled_weight_decay,
    AdamW: torch.optim.Adam's / AdamW's algorithm, hyperparameters, state and state_dict.

    fused=True: each step runs the kernel torch.optim.AdamW(fused=True) runs (one kernel
    for all parameters of a device and dtype, on CUDA, CPU and MPS), bit for bit its
    result, with torch.amp.GradScaler's scale and inf check inside it. fused=False:
    torch.optim.AdamW(foreach=False)'s per-tensor loop, bit for bit. fused=None: fused
    where the kernel exists for every parameter (floating point, on a device it supports).
    """

    FLAGS = ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, fused: bool | None = None, decoupled_weight_decay: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        # torch.optim.Adam's group keys, so that a state_dict is the same either way
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
                    "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
                    "fused": fused, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)
        every = [p for group in self.param_groups for p in group["params"]]
        supported = all(fused_kernel_supports(p) for p in every)
        if fused and not supported:
            raise ValueError(f"fused {type(self).__name__} needs floating point parameters on one of "
                             f"{', '.join(_fused_devices())}")
        if fused is None:
            for group in self.param_groups:
                group["fused"] = supported
            self.defaults["fused"] = supported
        # GradScaler: hand this optimizer grad_scale and found_inf, the kernel unscales
        # and skips the step on an inf itself (torch.optim.AdamW(fused=True) does the same)
        self._step_supports_amp_scaling = bool(self.defaults["fused"])

    def _loaded(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state and "step" in state and not torch.is_tensor(state["step"]):
                    state["step"] = self._new_step(p, group, float(state["step"]))

    @staticmethod
    def _new_step(p: torch.Tensor, group: dict[str, Any], value: float = 0.0) -> torch.Tensor:
        """torch.optim.Adam's step count: a float32 scalar on the parameter's device for the
        fused kernel, else on the CPU (in float64 where that is the default dtype)."""
        if group["fused"]:
            return torch.tensor(value, dtype=torch.float32, device=p.device)
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return torch.tensor(value, dtype=dtype)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse or torch.is_complex(p):
                    raise RuntimeError(f"{type(self).__name__} takes dense real parameters and gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = self._new_step(p, group)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if params:
                (self._fused_step if group["fused"] else self._loop_step)(
                    group, params, grads, exp_avgs, exp_avg_sqs, steps)
        return loss

    def _fused_step(self, group, params, grads, exp_avgs, exp_avg_sqs, steps) -> None:
        """torch.optim.adam._fused_adam: per device and dtype, the step counts + 1, then one
        fused kernel updates every moment and parameter; with GradScaler's scale the kernel
        unscales the gradients, and with an inf found it leaves all as they were (the step
        counts go back). torch._fused_adamw_ is a private op, called here directly rather
        than through torch.optim for start-up (the module's docstring: importing
        torch._dynamo measured 1.7 s of CPU); it is the op torch.optim.AdamW(fused=True)
        calls, so a change of its signature fails tests/test_optim.py."""
        beta1, beta2 = group["betas"]
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        by_device: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(params):
            by_device.setdefault((p.device, p.dtype), []).append(i)
        for (device, _), indices in by_device.items():
            device_steps = [steps[i] for i in indices]
            scale = None if grad_scale is None else grad_scale.to(device, non_blocking=True)
            inf = None if found_inf is None else found_inf.to(device, non_blocking=True)
            torch._foreach_add_(device_steps, 1)
            kernel([params[i] for i in indices], [grads[i] for i in indices], [exp_avgs[i] for i in indices],
                   [exp_avg_sqs[i] for i in indices], [], device_steps, amsgrad=False, lr=group["lr"],
                   beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=False, grad_scale=scale, found_inf=inf)
            if inf is not None:
                torch._foreach_sub_(device_steps, [inf] * len(device_steps))

    def _loop_step(self, group, params, grads, exp_avgs, exp_avg_sqs, steps) -> None:
        """torch.optim.adam._single_tensor_adam (not capturable, not differentiable): one
        parameter at a time, the same operations in the same order."""
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            raise RuntimeError("only the fused Adam takes GradScaler's grad_scale and found_inf")
        beta1, beta2 = group["betas"]
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        for param, grad, exp_avg, exp_avg_sq, step_t in zip(params, grads, exp_avgs, exp_avg_sqs, steps):
            step_t += 1
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    param.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(param, alpha=weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = step_t.item()
            step_size = lr / (1 - beta1 ** step)
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (see Adam)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, *, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, fused=fused, decoupled_weight_decay=True)


def _fused_devices() -> list[str]:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    return _get_fused_kernels_supported_devices()


def fused_kernel_supports(p: torch.Tensor) -> bool:
    """Whether torch's fused Adam kernel takes this parameter (torch.optim's own check)."""
    return p.device.type in _fused_devices() and torch.is_floating_point(p)


class Muon(Optimizer):
    """torch.optim.Muon's algorithm, hyperparameters, state ("momentum_buffer") and
    state_dict, with its Newton-Schulz iteration in a chosen float format.

    PyTorch runs the iteration in bfloat16: right on GPUs and CPUs with bf16 matrix units,
    but a CPU without them emulates bf16 matmuls (measured on this repo's AVX2 machine:
    ~0.8 s per 128x512 matrix, seconds per step). There `ns_dtype` = float32 runs the
    same iteration at the fp32 matmul speed. With ns_dtype = bfloat16 a step is bit for
    bit torch.optim.Muon's (tests/test_optim.py checks it).
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = MUON_NS_STEPS, adjust_lr_fn: str | None = None, *,
                 ns_dtype: torch.dtype = torch.bfloat16, beta2: float = 0.0):
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        # torch.optim.Muon's group keys, so that a state_dict is the same either way
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                    "ns_coefficients": ns_coefficients, "eps": eps, "ns_steps": ns_steps,
                    "adjust_lr_fn": adjust_lr_fn}
        if beta2:   # NorMuon's one key more (normalize_neurons); without it the groups are torch's
            defaults["beta2"] = beta2
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only supports 2D parameters whereas we found a parameter with "
                                     f"size: {p.size()}")
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = self._closure_loss(closure)
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
            for indices, orthogonal in self._orthogonalize_all(updates, group):
                members = [params[i] for i in indices]
                if group.get("beta2"):
                    orthogonal = self._normalize_neurons(members, orthogonal, group["beta2"])
                for p, update in zip(members, orthogonal.unbind(0)):
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(update, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))
        return loss

    def _normalize_neurons(self, params: list[torch.Tensor], stacked: torch.Tensor, beta2: float) -> torch.Tensor:
        """normalize_neurons for the stacked updates of `params` (one shape), with their
        per-neuron second moments (state "second_momentum_buffer", zeros at first; shape
        state_shape) stacked for it and written back: a few ops per shape, not per matrix."""
        moments = []
        for p in params:
            state = self.state[p]
            if "second_momentum_buffer" not in state:
                shape = state_shape("second_momentum_buffer", p)
                state["second_momentum_buffer"] = torch.zeros(shape, dtype=p.dtype, device=p.device)
            moments.append(state["second_momentum_buffer"])
        together = torch.stack(moments)
        normalized = normalize_neurons(stacked, together, beta2)
        torch._foreach_copy_(moments, list(together.unbind(0)))
        return normalized

    def _orthogonalize_all(self, updates: list[torch.Tensor], group: dict) -> list[tuple[list[int], torch.Tensor]]:
        """Each update orthogonalized, as (indices into `updates`, their results stacked).
        In bf16, one matrix at a time, as torch.optim.Muon does (bit for bit). In fp32,
        matrices of one shape go through the iteration together as one batched matmul: the
        same arithmetic per matrix, in fewer, larger kernels (measured on the 2-core CPU
        for the cpu preset's 16 matrices: 21 ms instead of 36 ms per step)."""
        args = (group["ns_coefficients"], group["ns_steps"], group["eps"], self.ns_dtype)
        if self.ns_dtype == torch.bfloat16:
            return [([i], orthogonalize(u, *args).unsqueeze(0)) for i, u in enumerate(updates)]
        by_shape: dict[tuple, list[int]] = {}
        for i, u in enumerate(updates):
            by_shape.setdefault(tuple(u.shape), []).append(i)
        return [(indices, orthogonalize(torch.stack([updates[i] for i in indices]), *args))
                for indices in by_shape.values()]


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


def state_shape(key: str, p: torch.Tensor) -> tuple[int, ...]:
    """The shape of an optimizer state tensor of parameter p: p's own (the moments, the
    momentum buffer), except NorMuon's per-neuron second moment: (rows, 1), or (1, cols)
    for a wide matrix. A checkpoint's state is checked against it before loading."""
    if key == "second_momentum_buffer" and p.dim() == 2:
        rows, cols = p.shape
        return (rows, 1) if rows >= cols else (1, cols)
    return tuple(p.shape)


def normalize_neurons(update: torch.Tensor, second_moment: torch.Tensor, beta2: float) -> torch.Tensor:
    """NorMuon's step (Li et al. 2025, "NorMuon: Making Muon more efficient and scalable";
    nanochat's optimizer): the orthogonalized update's mean square per neuron (row, or
    column of a wide matrix) is averaged over steps in `second_moment` (updated in place),
    each neuron's update is divided by the root of that average, and the whole is scaled
    back to the Frobenius norm it had. A stack of matrices (n, rows, cols) with a stack of
    moments is normalized matrix by matrix. Orthogonalization leaves some neurons far larger
    updates than others; this evens them out and keeps Muon's step size. Measured on the
    cpu preset (bench/RESULTS.md): -0.006 val loss at equal steps on tinyshakespeare."""
    axis = -1 if second_moment.size(-1) == 1 else -2
    mean_square = update.float().square().mean(dim=axis, keepdim=True)
    second_moment.lerp_(mean_square.to(second_moment.dtype), 1 - beta2)
    scale = second_moment.float().clamp_min(1e-10).rsqrt()
    # the norms before and after, squared, over the neurons' count (which cancels)
    before = mean_square.sum(dim=(-2, -1), keepdim=True)
    after = (mean_square * scale.square()).sum(dim=(-2, -1), keepdim=True)
    scale = scale * (before / after.clamp_min(1e-20)).sqrt()
    return update * scale.to(update.dtype)


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

    adam: Adam
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
    adam_class = Adam if o.name == "adam" else AdamW
    adam_args = dict(betas=tuple(o.betas), eps=o.eps)
    if o.name != "muon":
        # fused (the default where the kernel exists: CUDA, CPU, MPS) runs one kernel for all
        # parameters; measured here 1.9 ms vs 3.1 ms per step for the 0.8M-parameter recipe
        groups = optimizer_groups(model, o.weight_decay)
        adam = adam_class(groups, lr=o.learning_rate, **adam_args)
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
    adam = adam_class(groups, lr=o.learning_rate, **adam_args)
    muon = Muon(matrices, lr=o.learning_rate, weight_decay=o.weight_decay, momentum=o.muon_momentum,
                nesterov=True, ns_steps=MUON_NS_STEPS, adjust_lr_fn="match_rms_adamw", ns_dtype=ns_dtype,
                beta2=o.muon_beta2)
    return Optimizers(adam=adam, muon=muon, base_lrs=[g["lr"] for g in groups] + [o.learning_rate],
                      extra_flops_per_step=sum(newton_schulz_flops(p.shape) for p in matrices))
