"""The estimate of a run before it starts: parameters, FLOPs, tokens per step,
peak memory against what the device has, and time. Every figure is an
estimate and is labelled so wherever it is shown; engine.planning.calibrate
measures the step time instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmtui.engine.planning.autotune import choose_batch
from llmtui.engine.planning.sizing import (
    GPU_EFFICIENCY,
    count_params,
    flops_per_token,
    gpu_host_seconds,
    memory_parts,
    optimizer_flops_per_step,
    target_for,
    vocab_for,
)


@dataclass
class Estimate:
    n_params: int
    n_params_non_embedding: int
    flops_per_token: float
    tokens_per_step: int
    optimizer_flops_per_step: int    # Muon's Newton-Schulz matmuls per step (0 for AdamW)
    memory: dict[str, int]           # bytes by component; they add up to memory_total
    memory_total: int
    device_memory: int | None        # what the device has free for the run
    fits: bool | None
    step_seconds: float | None
    total_seconds: float | None
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 0              # micro-batch used for the estimate ("auto" resolved)
    grad_accum_steps: int = 0
    vocab_size: int = 0
    calibrated: bool = False         # step_seconds measured by calibrate(), not derived
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------
# the estimate

def estimate(cfg, vocab_size: int | None = None, hardware=None, *,
             calibrated_step_seconds: float | None = None) -> Estimate:
    """Parameters, FLOPs, memory and time of `cfg` on `hardware` (detected when
    None). "auto" batch settings are resolved as engine.planning.autotune would."""
    if hardware is None:
        from llmtui.engine.planning.hardware import detect
        hardware = detect()
    m, t = cfg.model, cfg.training
    vocab = vocab_for(cfg, vocab_size)
    n, n_non_embedding = count_params(m, vocab)
    fpt = flops_per_token(m, n_non_embedding)
    target = target_for(cfg.run.device, t.precision, hardware, cfg.run.threads, width=m.n_embd)
    batch, accum, notes = choose_batch(cfg, vocab, target)
    tokens_per_step = batch * accum * m.block_size
    opt_flops = optimizer_flops_per_step(cfg)
    parts = memory_parts(cfg, batch, vocab, target)
    total = sum(parts.values())
    fits = None if target.memory is None else total <= target.memory

    if calibrated_step_seconds is not None:
        step = calibrated_step_seconds
        model_share = fpt * tokens_per_step / (fpt * tokens_per_step + opt_flops)   # no optimizer in evals
    elif target.peak_flops:
        # a CPU's rate is what training reaches (sizing.CPU_MATMUL_FLOPS), a GPU's its peak
        rate = target.peak_flops * (1.0 if target.kind == "cpu" else GPU_EFFICIENCY)
        model = fpt * tokens_per_step / rate + target.elementwise_seconds * m.n_layer * m.n_embd * tokens_per_step
        step = model + opt_flops / rate
        model_share = model / step
        if target.kind == "cuda":
            # the GPU computes while the host issues the next kernels: the slower of the two
            step = max(step, gpu_host_seconds(cfg, accum))
    else:
        step = None
    total_seconds = None
    if step is not None and t.epochs == 0:
        evals = t.max_steps // cfg.eval.every_n_steps + 1
        # an evaluation batch is a forward pass: about a third of a training step's work
        eval_tokens = evals * cfg.eval.max_batches * batch * m.block_size
        total_seconds = t.max_steps * step + step * model_share * eval_tokens / (3 * tokens_per_step)
    return Estimate(
        n_params=n, n_params_non_embedding=n_non_embedding, flops_per_token=float(fpt),
        tokens_per_step=tokens_per_step, optimizer_flops_per_step=opt_flops, memory=parts, memory_total=total,
        device_memory=target.memory, fits=fits, step_seconds=step, total_seconds=total_seconds,
        device=target.device, precision=target.precision, batch_size=batch,
        grad_accum_steps=accum, vocab_size=vocab, calibrated=calibrated_step_seconds is not None,
        notes=target.notes + notes)
