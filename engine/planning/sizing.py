"""Sizes of a config on a device, by arithmetic: parameters, FLOPs per token,
peak memory by component, and the device it will run on (a Target).

No torch and no model construction: the wizard recomputes these on every
keystroke. engine.planning.estimate turns them into the labelled Estimate.

Memory is the peak of one training step, by component (bytes):

- weights 4N, gradients 4N (fp32 master copies, also under autocast),
  optimizer 8N (Adam's two moments), autocast_weights 2N (the 16-bit copies
  autocast caches during a mixed-precision step). N counts tied weights once.
- activations: what autograd saves for backward, counted tensor by tensor for
  engine/model/gpt.py (checked against saved_tensors_hooks in tests/test_estimate.py).
  This is Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
  Transformer Models"), sbh(34 + 5as/h) bytes per layer for 16-bit
  activations, adapted: the residual stream and LayerNorm inputs stay fp32
  under autocast, RoPE keeps rotated copies of q and k, dropout masks are one
  byte on CUDA but as wide as the data on CPU, and the 5as/h attention term
  (softmax output, dropout mask, dropped scores) exists only where PyTorch
  falls back to the math attention kernel: on CPU with dropout > 0. Flash and
  memory-efficient kernels (CUDA, CPU without dropout) keep only a log-sum-exp.
- logits: cross-entropy saves an fp32 log-softmax (the trainer keeps no
  reference to the logits themselves), and backward adds two fp32 gradients
  of the same size: 12 * B * T * V bytes at the start of backward. Under 16-bit
  autocast on CUDA 8 * B * T * V: fitted to the peaks measured on an H200
  (bench/gpu_check.py, the BPE presets rtx4060, rtx3060 and rtx4090, whose estimates
  at 12 bytes came out 15.1-15.5% above the measured peak; at 8, -3.4%, +1.3%, +2.5%).
- runtime: on CPU the resident size of the trainer process before training
  (Python, torch, NumPy, the data pipeline; measured here with bench/estimate_memory.py);
  on CUDA the context and cuBLAS workspaces. The token memmap is not counted:
  pages of a file mapping are reclaimable, and the sampler touches few of them.
- allocator: memory the allocator holds beyond what is live, as a share of
  the activations: glibc keeps freed mid-sized blocks in its heap (tensors
  over 32 MB, like big logits, are mmapped and returned at once); CUDA's
  caching allocator rounds and caches. The CPU share is fitted to
  bench/estimate_memory.py's measurements.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from llmtui.engine.model.shapes import MUON_NS_STEPS, attention_width, ff_width, head_size, kv_heads, newton_schulz_flops
from llmtui.engine.planning.cpu import amx_bf16_pays
from llmtui.engine.planning.gpu_table import find_gpu, peak_flops

# measured with bench/estimate_memory.py on this repo's CPU machine (see README "Estimates")
CPU_RUNTIME_BYTES = 275 * 2**20     # trainer process RSS before the first step (the floor row: 266-275 MiB)
CPU_ALLOCATOR_SHARE = 0.25           # glibc heap kept beyond live tensors, share of activations (host_memory keeps it)
# not measured here (no GPU): typical CUDA 12 context with lazy module loading + cuBLAS workspace
CUDA_RUNTIME_BYTES = 500 * 2**20
CUDA_ALLOCATOR_SHARE = 0.10
# share of peak FLOP/s a small GPT reaches in practice (nanoGPT reports ~40% MFU on A100 for
# GPT-2 124M; small models do worse)
GPU_EFFICIENCY = 0.30
# An eager GPU step cannot be shorter than the host's time to issue its kernels: for a small
# model on a large GPU that is the step (the cpu preset on an H200 took 20.3-20.5 ms a step,
# where its FLOPs take 0.03 ms). Counted with torch.profiler on this CPU, a step issues ~850
# ops per layer and micro-batch and ~250 more per step, and Muon's Newton-Schulz on a GPU
# (bf16, matrix by matrix) ~50 per matrix; at the H200 host's 4.6 us an op that is:
GPU_HOST_SECONDS_PER_LAYER = 3.9e-3      # per layer and micro-batch
GPU_HOST_SECONDS_PER_STEP = 1.2e-3
GPU_HOST_SECONDS_PER_MUON_MATRIX = 0.23e-3
# A CPU training step in two terms, fitted (least squares) to steps of the cpu preset's recipe
# 96, 128, 160, 192, 256 and 512 wide on a 2-core Sapphire Rapids (AVX-512, AMX), measured
# fp32 65/95/136/171/289/1184 ms and bf16 autocast 96/109/130/145/201/537 ms, fitted
# 61/93/131/176/292/1183 and 72/99/126/154/215/534: the matmuls (the model's and Newton-Schulz
# FLOPs) at a rate per core, and the elementwise work (norms, rotary, activations, softmax,
# casts: about a hundred passes over each layer's activations) at a time per layer x width x
# token per core. FLOPs over a peak alone missed the second term: for the 96-wide preset they
# were 2x optimistic on an older CPU, and 15x for bf16 on AMX.
CPU_MATMUL_FLOPS = 158e9          # per core: fp32 on AVX-512
CPU_ELEMENTWISE_SECONDS = 94e-9   # per core and layer x width x token: fp32 on AVX-512
AMX_MATMUL_FLOPS = 916e9          # per core: bf16 or fp16 autocast on AMX
HALF_ELEMENTWISE_FACTOR = 1.85    # 16-bit autocast's elementwise work (casts included) over fp32's
# 16-bit matmuls over fp32's where the vector units have bf16/fp16 dot products but no AMX
# (Zen 4, measured: training steps ~170 vs ~80 GFLOP/s per core)
VECTOR_HALF_MATMUL_FACTOR = 2.0

CHAR_VOCAB_GUESS = 100               # distinct characters of a typical English corpus
BPE_VOCAB = {"gpt2": 50257, "r50k_base": 50257, "p50k_base": 50281, "p50k_edit": 50284,
             "cl100k_base": 100277, "o200k_base": 200019}
# more passes over the training split than this and a model learns it by heart (val loss
# turns up long before the end): the trainer says so before starting, the wizard shows it
MANY_EPOCHS = 20.0
DEFAULT_AUTO_BATCH = 32              # sequences per step when batch size is "auto" (see autotune)


@dataclass
class Target:
    """Where a config will run, as far as the estimate is concerned."""
    kind: str                        # cpu | cuda | mps
    precision: str                   # what will really run
    memory: int | None               # bytes the run may use (free RAM / free VRAM)
    peak_flops: float | None         # FLOP/s of the format: published (GPU), as training reaches (CPU)
    label: str                       # "cpu", "cuda:0 (RTX 4060)"
    gpu: object | None = None
    notes: list[str] = field(default_factory=list)
    # CPU: seconds of elementwise work per layer x width x token (see CPU_MATMUL_FLOPS)
    elementwise_seconds: float = 0.0

    @property
    def device(self) -> str:
        return self.label.split(" ", 1)[0]


# ---------------------------------------------------------------------------
# model arithmetic

def vocab_for(cfg, vocab_size: int | None = None) -> int:
    """The model's vocabulary: the config's padded size, the tokenizer's, or a guess."""
    if cfg.model.vocab_size:
        return max(cfg.model.vocab_size, vocab_size or 0)
    if vocab_size:
        return vocab_size
    t = cfg.tokenizer
    if t.kind == "bpe":
        return BPE_VOCAB.get(t.encoding, 50257)
    if t.kind == "char" and t.path:   # the vocabulary of an llmtui checkpoint's tokenizer.json
        from llmtui.engine.data.bpe_training import tokenizer_file_vocab_size
        return tokenizer_file_vocab_size(t.path) or CHAR_VOCAB_GUESS
    if t.kind == "trained":
        # the file's own size when a tokenizer.json is given; else what training aims for
        # (a small corpus can end with fewer tokens: then this slightly overestimates)
        from llmtui.engine.data.bpe_training import tokenizer_file_vocab_size
        return (t.path and tokenizer_file_vocab_size(t.path)) or t.vocab_size
    return CHAR_VOCAB_GUESS


def kv_width(m) -> int:
    """Width of the key (and of the value) projection: n_kv_head heads of head_size
    (model.head_dim, or n_embd / n_head)."""
    return kv_heads(m.n_head, m.n_kv_head) * head_size(m.n_embd, m.n_head, m.head_dim)


def q_width(m) -> int:
    """Width of the queries and of attention's output: n_head heads of head_size (n_embd
    unless model.head_dim sets the heads apart)."""
    return attention_width(m.n_embd, m.n_head, m.head_dim)


def count_params(m, vocab: int) -> tuple[int, int]:
    """(all, non-embedding) parameters of engine.model.gpt.GPT, tied weights once;
    non-embedding follows GPT.num_params (nanoGPT's convention)."""
    C, F, b, Q = m.n_embd, ff_width(m.n_embd, m.d_ff, m.mlp), int(m.bias), q_width(m)
    qkv = Q + 2 * kv_width(m)                              # q, k and v in one matrix
    norm = C * (1 + b) if m.norm == "layernorm" else C     # RMSNorm has no bias
    up = 2 * F if m.mlp == "swiglu" else F                 # SwiGLU: gate and up in one matrix
    qk = 2 * head_size(m.n_embd, m.n_head, m.head_dim) if m.qk_norm else 0   # QK-norm gains
    layer = (2 * norm + C * qkv + qkv * int(m.bias or m.qkv_bias) + Q * C + C * b + C * up + up * b + F * C
             + C * b + qk)
    wte, wpe = vocab * C, (m.block_size * C if m.pos_encoding == "learned" else 0)
    head = 0 if m.tie_embeddings else vocab * C
    total = m.n_layer * layer + norm + wte + wpe + head
    non_embedding = total - wpe - (0 if m.tie_embeddings else wte)
    return total, non_embedding


def kv_cache_bytes(m, positions: int, bytes_per_number: int = 4) -> int:
    """Generation's KV cache (engine.model.generation.KVCache) of one sequence: the keys
    and values of every layer for `positions` positions (n_kv_head heads: grouped-query
    attention shrinks it by n_head / n_kv_head)."""
    return 2 * bytes_per_number * m.n_layer * positions * kv_width(m)


def flops_per_token(m, n_non_embedding: int) -> float:
    """Training FLOPs per token: 6N + 12*L*T*d (PaLM appendix B, as GPT.flops_per_token), d
    the queries' width (n_embd unless model.head_dim is set). Grouped-query attention has
    fewer parameters (N) but the same attention term: every query head still attends over
    T positions."""
    return 6 * n_non_embedding + 12 * m.n_layer * m.block_size * q_width(m)


def muon_matrices(m) -> list[tuple[int, int]]:
    """Shapes of the matrices optimizer.name = "muon" gives to Muon: the blocks' weights."""
    C, F = m.n_embd, ff_width(m.n_embd, m.d_ff, m.mlp)
    up = 2 * F if m.mlp == "swiglu" else F
    return [(q_width(m) + 2 * kv_width(m), C), (C, q_width(m)), (up, C), (C, F)] * m.n_layer


def optimizer_flops_per_step(cfg) -> int:
    """Matmul FLOPs of the optimizer per step, apart from the model's: Muon's Newton-Schulz
    iterations (engine.model.optim.newton_schulz_flops for each matrix), 0 for AdamW."""
    if cfg.optimizer.name != "muon":
        return 0
    return sum(newton_schulz_flops(shape, MUON_NS_STEPS) for shape in muon_matrices(cfg.model))


def gpu_host_seconds(cfg, grad_accum_steps: int) -> float:
    """The least time an eager GPU step takes: the host issuing its kernels (the constants
    above), whatever the GPU's speed. torch.compile issues fewer; not counted here."""
    matrices = len(muon_matrices(cfg.model)) if cfg.optimizer.name == "muon" else 0
    return (GPU_HOST_SECONDS_PER_LAYER * cfg.model.n_layer * grad_accum_steps
            + GPU_HOST_SECONDS_PER_STEP + GPU_HOST_SECONDS_PER_MUON_MATRIX * matrices)


def optimizer_bytes(cfg, n_params: int) -> int:
    """AdamW/Adam: two fp32 moments per parameter. Muon: one fp32 momentum per matrix weight
    (AdamW's two for the rest), plus the Newton-Schulz iteration's temporaries for the
    largest matrix (input, update, x x^T, its polynomial, the next iterate)."""
    if cfg.optimizer.name != "muon":
        return 8 * n_params
    shapes = muon_matrices(cfg.model)
    matrices = sum(r * c for r, c in shapes)
    largest = max(shapes, key=lambda s: s[0] * s[1])
    small, big = sorted(largest)
    return 8 * (n_params - matrices) + 4 * matrices + 4 * (3 * small * big + 2 * small * small)


def activation_bytes(m, batch: int, kind: str, precision: str) -> int:
    """Bytes autograd saves for backward in one micro-batch (logits apart),
    tensor by tensor as engine/model/gpt.py runs on `kind` in `precision`."""
    B, T, C, H = batch, m.block_size, m.n_embd, m.n_head
    F = ff_width(C, m.d_ff, m.mlp)
    BTC, BT = B * T * C, B * T
    BTQ = B * T * q_width(m)           # queries and attention's output: BTC unless head_dim is set
    # keys and values: as wide as the queries, or narrower with grouped-query attention
    BTK, KV = B * T * kv_width(m), kv_heads(m.n_head, m.n_kv_head)
    a = 4 if precision == "fp32" else 2       # matmul inputs/outputs (16-bit under autocast)
    p = m.dropout > 0
    cpu = kind == "cpu"
    # dropout masks: CUDA keeps one byte per element; CPU a float mask as wide as the data
    # (the embedding output is fp32, the block outputs are matmul outputs)
    emb_mask = (4 if cpu else 1) if p else 0
    mask = (a if cpu else 1) if p else 0
    math_path = cpu and p
    if math_path:
        # no fused CPU kernel takes dropout: the math path, in fp32 even under autocast, saves
        # scaled copies of q, k, v (k and v repeated to every query head when grouped) and
        # three T x T tensors (softmax, dropout mask, dropped scores)
        attn = 3 * 4 * BTQ + 3 * 4 * B * H * T * T
    else:
        # flash / memory-efficient kernels: q, k, v (views of one qkv tensor), RoPE's rotated
        # copies of q and k, the output, and a log-sum-exp per row; on CPU with learned
        # positions (q, k, v strided views of qkv) the output is the c_proj input itself
        shared_out = cpu and m.pos_encoding == "learned" and not m.qk_norm
        attn = (a * (BTQ + 2 * BTK) + (a * (BTQ + BTK) if m.pos_encoding == "rope" else 0)
                + (0 if shared_out else a * BTQ) + 4 * B * H * T)
    if m.qk_norm:
        # RMSNorm of q and k (composite kernels): each head row's rstd and the fp32 normalized
        # q and k; its inputs: fp32 copies of 16-bit q and k under autocast, or the qkv
        # tensor itself, which the math path otherwise does not keep; and with learned
        # positions the normed q and k that attention reads are no longer views of qkv
        attn += 4 * B * (H + KV) * T + 4 * (BTQ + BTK)
        if a == 2:
            attn += 4 * (BTQ + BTK)
        elif math_path:
            attn += 4 * (BTQ + 2 * BTK)
        if not math_path and m.pos_encoding == "learned":
            attn += a * (BTQ + BTK)
    # LayerNorm saves a mean and an rstd per row; RMSNorm (composite) an rstd and its fp32
    # normalized input, for the gain's gradient
    norm_stats = 8 * BT if m.norm == "layernorm" else 4 * BT + 4 * BTC
    # GELU / squared ReLU: their input and the c_proj input; SwiGLU: the gate-and-up output
    # (2F wide), silu(gate) and the product
    mlp = (4 if m.mlp == "swiglu" else 2) * a * B * T * F
    layer = (4 * BTC + a * BTC          # ln_1 input (the fp32 residual stream), c_attn input
             + attn + a * BTQ           # attention, c_proj input
             + mask * BTC + 4 * BTC     # residual dropout mask, ln_2 input
             + a * BTC + mlp            # c_fc input, the MLP's own tensors
             + mask * BTC + 2 * norm_stats)  # MLP dropout mask, the two norms' statistics
    if m.gradient_checkpointing:        # block inputs only, plus one block recomputed in backward
        layers = m.n_layer * 4 * BTC + layer
    else:
        layers = m.n_layer * layer
    # tokens, targets and positions; embedding dropout mask; ln_f input and stats; lm_head input
    outside = 16 * BT + emb_mask * BTC + 4 * BTC + norm_stats + a * BTC
    return layers + outside


def logits_bytes(m, batch: int, vocab: int, precision: str, kind: str = "cpu") -> int:
    per_logit = 8 if kind == "cuda" and precision in ("bf16", "fp16") else 12   # module doc
    return per_logit * batch * m.block_size * vocab


def memory_parts(cfg, batch: int, vocab: int, target: Target, world: int = 1) -> dict[str, int]:
    """Peak memory of one training step by component, bytes (see module doc), of one of
    `world` processes: with training.parallel = "fsdp" a process keeps 1/world of every
    weight, gradient and optimizer moment, and the whole of what it computes with now (the
    embeddings, final norm and head, unsharded through the step, and one block at a time)."""
    m = cfg.model
    n, _ = count_params(m, vocab)
    shards = world if world > 1 and getattr(cfg.training, "parallel", "ddp") == "fsdp" else 1
    acts = activation_bytes(m, batch, target.kind, target.precision)
    logits = logits_bytes(m, batch, vocab, target.precision, target.kind)
    cpu = target.kind == "cpu"
    parts = {
        # an Apple GPU's memory is the process's too (unified): the CPU's runtime figure
        "runtime": CUDA_RUNTIME_BYTES if target.kind == "cuda" else CPU_RUNTIME_BYTES,
        "weights": 4 * n,
        "gradients": 4 * n,
        "optimizer": optimizer_bytes(cfg, n),
        "autocast_weights": 0 if target.precision == "fp32" else 2 * n,
        "activations": acts,
        "logits": logits,
    }
    if shards > 1:
        layer = n - count_params(dataclasses.replace(m, n_layer=m.n_layer - 1), vocab)[0]
        whole = (n - m.n_layer * layer) + layer          # the root's weights and one block's
        half = 0 if target.precision == "fp32" else 2
        parts.update(weights=4 * n // shards + 4 * whole, gradients=4 * n // shards + 4 * whole,
                     optimizer=optimizer_bytes(cfg, n) // shards,
                     autocast_weights=half * (n // shards + whole))
    share = CPU_ALLOCATOR_SHARE if cpu else CUDA_ALLOCATOR_SHARE
    parts["allocator"] = int(share * (acts + parts["autocast_weights"]))
    return {k: int(v) for k, v in parts.items() if v}


# ---------------------------------------------------------------------------
# the device a config will run on, from detected (or planned) hardware

def cpu_speed(cpu, precision: str, threads: int = 0) -> tuple[float, float]:
    """(matmul FLOP/s, elementwise seconds per layer x width x token) of training with
    `threads` threads (0: one per physical core, as run.threads = 0 does; more than the
    cores count as the cores) in the format (see CPU_MATMUL_FLOPS). Measured with AVX-512;
    narrower vector units scale both by their FMA width (AVX2 0.6, none 0.15). Per core:
    1 thread of 2 measured 1.75-1.79x slower than 2 (cpu preset 124 / 71 ms, 256 wide 557 /
    312 ms), so scaling by cores is within 15%."""
    flags = set(cpu.flags)
    if "avx512f" in flags:
        scale = 1.0
    elif "fma" in flags or "asimd" in flags:
        scale = 0.6
    else:
        scale = 0.15
    matmul, elementwise = CPU_MATMUL_FLOPS * scale, CPU_ELEMENTWISE_SECONDS / scale
    amx = {"bf16": "amx_bf16", "fp16": "amx_fp16"}
    native = {"bf16": cpu.bf16_native, "fp16": cpu.fp16_native}
    if precision in amx and native[precision]:
        matmul = AMX_MATMUL_FLOPS if amx[precision] in flags else matmul * VECTOR_HALF_MATMUL_FACTOR
        elementwise *= HALF_ELEMENTWISE_FACTOR
    cores = max(1, cpu.physical_cores)
    if threads > 0:
        cores = min(cores, threads)
    return matmul * cores, elementwise / cores


def fastest_precision(kind: str, width: int | None, *, gpu_bf16: bool = False,
                      compute_capability: tuple[int, int] | None = None,
                      cpu_flags: frozenset[str] = frozenset()) -> str:
    """training.precision = "auto": the fastest format a device of `kind` runs for a model
    `width` (n_embd) wide (None: a wide one), from its facts. On a GPU bf16 where it is
    native, else fp16 where it is fast (compute capability 7.0 and later, and 6.0), else
    (or when its compute capability is unknown) fp32; on a CPU bf16 where AMX pays for
    the width (cpu.amx_bf16_pays), else fp32; on an Apple GPU fp32 (mixed precision there
    is unmeasured). One rule for the trainer (engine.planning.device.place, from torch's
    queries), the estimates and autotune."""
    if kind == "cuda":
        cc = compute_capability
        if cc is None:
            return "fp32"
        if gpu_bf16:
            return "bf16"
        return "fp16" if cc >= (7, 0) or cc == (6, 0) else "fp32"
    if kind == "cpu" and amx_bf16_pays(cpu_flags, width):
        return "bf16"
    return "fp32"


def gpu_precision(precision: str, gpu) -> str:
    """engine.planning.device.resolve_precision's rule, from detected facts."""
    cc = gpu.compute_capability or (0, 0)
    if precision == "bf16" and not gpu.bf16:
        return "fp32"
    if precision == "fp16" and cc[0] < 6:
        return "fp32"
    return precision


def cpu_precision(precision: str, cpu) -> str:
    if precision == "bf16" and not cpu.bf16_native:
        return "fp32"
    if precision == "fp16" and not cpu.fp16_native:
        return "fp32"
    return precision


def target_for(device: str, precision: str, hardware, threads: int = 0, width: int | None = None) -> Target:
    """The device `run.device` resolves to on `hardware`, as the trainer would
    pick it ("auto" is cuda:0 when torch can use a GPU); on a CPU, trained with
    `threads` threads (run.threads); precision "auto" as the trainer resolves it
    for a model `width` wide (fastest_precision)."""
    usable = {g.torch_index: g for g in hardware.gpus if g.usable_by_torch}
    notes = []
    gpu = None
    if device != "cpu" and usable:
        index = 0 if device in ("auto", "cuda") else int(device.split(":")[1])
        gpu = usable.get(index)
        if gpu is None:
            notes.append(f"run.device = \"{device}\": no such GPU here; estimated for the CPU")
    elif device.startswith("cuda"):
        notes.append(f"run.device = \"{device}\" but torch cannot use a GPU here; estimated for the CPU")
    mps = getattr(hardware, "mps", None)
    if gpu is None and mps is not None and (device == "mps" or (device == "auto" and not usable)):
        precision = fastest_precision("mps", width) if precision == "auto" else precision
        real = "fp16" if precision == "bf16" and not mps.bf16 else precision
        return Target("mps", real, mps.memory_bytes, None, f"mps ({mps.name})", notes=notes + [
            "Apple GPU: no time estimate (unmeasured; `llmtui detect --calibrate` measures a step)"])
    if device == "mps":
        notes.append("run.device = \"mps\" but torch cannot use an Apple GPU here; estimated for the CPU")
    if gpu is None:
        cpu = hardware.cpu
        if precision == "auto":
            precision = fastest_precision("cpu", width, cpu_flags=frozenset(cpu.flags))
        real = cpu_precision(precision, cpu)
        matmul, elementwise = cpu_speed(cpu, real, threads)
        return Target("cpu", real, cpu.available_ram_bytes, matmul, "cpu", notes=notes,
                      elementwise_seconds=elementwise)
    if precision == "auto":
        precision = fastest_precision("cuda", width, gpu_bf16=gpu.bf16,
                                      compute_capability=gpu.compute_capability)
    real = gpu_precision(precision, gpu)
    known = find_gpu(gpu.name)
    flops = peak_flops(known, real) if known else None
    if known is None:
        notes.append(f"{gpu.name} is not in the table of known cards: no time estimate "
                     "(run `llmtui detect --calibrate` to measure)")
    free = gpu.free_memory_bytes if gpu.free_memory_bytes is not None else gpu.total_memory_bytes
    return Target("cuda", real, free, flops, f"cuda:{gpu.torch_index} ({gpu.name})", gpu=gpu,
                  notes=notes)
