"""The estimator against the real model: parameter counts and FLOPs against
engine.model.GPT, saved activations against what autograd really saves
(saved_tensors_hooks). Peak RSS of real runs is measured by
bench/estimate_memory.py and the speed the wizard needs by bench/estimate_speed.py,
not here."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from conftest import NANOGPT_MODEL
from llmtui.engine.config.loading import load_config
from llmtui.engine.model.gpt import GPT, GPTConfig
from llmtui.engine.planning.estimate import estimate
from llmtui.engine.planning.hardware import CpuInfo, HardwareInfo
from llmtui.engine.planning.recommend import planned_hardware
from llmtui.engine.planning.sizing import (
    CHAR_VOCAB_GUESS,
    GPU_EFFICIENCY,
    activation_bytes,
    count_params,
    flops_per_token,
    logits_bytes,
    muon_matrices,
    vocab_for,
)

pytestmark = pytest.mark.unit

GiB = 2**30


def cpu_machine(ram_gib: float = 16, bf16: bool = False) -> HardwareInfo:
    flags = ["avx", "avx2", "fma"] + (["avx512f", "avx512_bf16"] if bf16 else [])
    cpu = CpuInfo(model="Test CPU", physical_cores=4, logical_cores=8,
                  total_ram_bytes=int(ram_gib * GiB), available_ram_bytes=int(ram_gib * GiB),
                  bf16_native=bf16, fp16_native=False, flags=flags)
    return HardwareInfo(cpu=cpu, gpus=[], torch_version="2.x", torch_cuda_available=False,
                        torch_cuda_version=None, torch_device_count=0, warnings=[])


MODELS = [dict(n_layer=2, n_head=4, n_embd=64, block_size=32, **extra) for extra in (
    {}, {"bias": True}, {"tie_embeddings": False}, {"pos_encoding": "rope"}, {"d_ff": 96},
    {"dropout": 0.1}, {"dropout": 0.1, "pos_encoding": "rope", "bias": True},
    {"norm": "rmsnorm", "bias": True}, {"mlp": "relu2"}, {"mlp": "swiglu"}, {"mlp": "swiglu", "d_ff": 96},
    {"qk_norm": True}, {"norm": "rmsnorm", "mlp": "swiglu", "qk_norm": True, "tie_embeddings": False},
    {"n_kv_head": 2}, {"n_kv_head": 1, "pos_encoding": "rope", "qk_norm": True, "bias": True},
    # heads of their own width (Qwen3's head_dim): wider and narrower than n_embd / n_head = 16
    {"head_dim": 24, "pos_encoding": "rope", "n_kv_head": 2, "qk_norm": True, "bias": True},
    {"head_dim": 8, "qkv_bias": True, "tie_embeddings": False})]


@pytest.mark.parametrize("shape", MODELS)
def test_params_and_flops_match_the_model(shape):
    gc = GPTConfig(vocab_size=77, **shape)
    model = GPT(gc)
    total, non_embedding = count_params(SimpleNamespace(**vars(gc)), 77)
    assert total == model.num_params(non_embedding=False)
    assert non_embedding == model.num_params(non_embedding=True)
    assert flops_per_token(gc, non_embedding) == model.flops_per_token()


def saved_bytes(gc: GPTConfig, batch: int, bf16: bool) -> int:
    """Bytes autograd saves for backward in one forward pass, parameters and
    autocast's weight copies apart, and minus the log-softmax output (counted
    with the logits)."""
    model = GPT(gc).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        weight_copy = t.grad_fn is not None and type(t.grad_fn).__name__ == "TBackward0"
        if t.untyped_storage().data_ptr() not in params and not weight_copy:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randint(0, gc.vocab_size, (batch, gc.block_size))
    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
          torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)):
        model(x, x)
    return sum(seen.values()) - 4 * batch * gc.block_size * gc.vocab_size


@pytest.mark.parametrize("dropout, pos, d_ff, bf16", list(itertools.product(
    (0.0, 0.1), ("learned", "rope"), (0, 96), (False, True))))
def test_activation_formula_matches_autograd(dropout, pos, d_ff, bf16):
    gc = GPTConfig(vocab_size=50, n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=dropout,
                   pos_encoding=pos, d_ff=d_ff)
    measured = saved_bytes(gc, 3, bf16)
    estimated = activation_bytes(gc, 3, "cpu", "bf16" if bf16 else "fp32")
    assert estimated == pytest.approx(measured, rel=0.01)


NEW_OPTIONS = {"rmsnorm": {"norm": "rmsnorm"}, "relu2": {"mlp": "relu2"}, "swiglu": {"mlp": "swiglu"},
               "qk_norm": {"qk_norm": True},
               "all": {"norm": "rmsnorm", "mlp": "swiglu", "qk_norm": True, "bias": True},
               "gqa": {"n_kv_head": 2}, "mqa_qk_norm": {"n_kv_head": 1, "qk_norm": True},
               "head_dim": {"head_dim": 24}, "head_dim_gqa_qk_norm": {"head_dim": 8, "n_kv_head": 2, "qk_norm": True}}


@pytest.mark.parametrize("option", NEW_OPTIONS)
@pytest.mark.parametrize("dropout, pos, bf16", list(itertools.product(
    (0.0, 0.1), ("learned", "rope"), (False, True))))
def test_activation_formula_matches_autograd_for_the_recipe_options(option, dropout, pos, bf16):
    gc = GPTConfig(vocab_size=50, n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=dropout,
                   pos_encoding=pos, **NEW_OPTIONS[option])
    measured = saved_bytes(gc, 3, bf16)
    estimated = activation_bytes(gc, 3, "cpu", "bf16" if bf16 else "fp32")
    assert estimated == pytest.approx(measured, rel=0.01)


def test_muon_matrices_are_the_model_matrices_with_grouped_query_attention():
    gc = GPTConfig(vocab_size=50, n_layer=2, n_head=4, n_kv_head=1, n_embd=64, block_size=32, mlp="swiglu")
    blocks = [tuple(p.shape) for name, p in GPT(gc).named_parameters() if ".h." in name and p.dim() == 2]
    assert sorted(muon_matrices(gc)) == sorted(blocks)
    assert muon_matrices(gc)[0] == (64 + 2 * 16, 64)       # q, then one key and one value head


def test_muon_matrices_are_the_model_matrices_with_heads_of_their_own_width():
    gc = GPTConfig(vocab_size=50, n_layer=2, n_head=4, n_kv_head=2, head_dim=24, n_embd=64, block_size=32)
    blocks = [tuple(p.shape) for name, p in GPT(gc).named_parameters() if ".h." in name and p.dim() == 2]
    assert sorted(muon_matrices(gc)) == sorted(blocks)
    assert muon_matrices(gc)[:2] == [(4 * 24 + 2 * 2 * 24, 64), (64, 4 * 24)]   # [q; k; v] and back to n_embd


def test_gradient_checkpointing_saves_memory():
    m = SimpleNamespace(**vars(GPTConfig(vocab_size=50, n_layer=8, n_head=4, n_embd=64,
                                         block_size=32)))
    full = activation_bytes(m, 4, "cpu", "fp32")
    m.gradient_checkpointing = True
    assert activation_bytes(m, 4, "cpu", "fp32") < full / 3


def test_estimate_parts_add_up_and_scale_with_batch():
    # nanoGPT's README CPU shape: the cpu preset is narrower, with longer rows and more of them
    cfg = load_config("cpu", NANOGPT_MODEL + ["model.n_embd=128", "model.block_size=64", "training.batch_size=12"])
    hw = cpu_machine()
    small = estimate(cfg, vocab_size=65, hardware=hw)
    assert small.memory_total == sum(small.memory.values())
    assert small.tokens_per_step == 12 * 64
    assert small.n_params == 128 * 65 + 64 * 128 + 4 * 12 * 128 * 128 + 9 * 128
    assert small.fits and small.device == "cpu" and small.precision == "fp32"
    cfg.training.batch_size = 48
    big = estimate(cfg, vocab_size=65, hardware=hw)
    assert big.memory["activations"] == pytest.approx(4 * small.memory["activations"], rel=0.01)
    assert big.memory["weights"] == small.memory["weights"]


def test_logits_dominate_with_a_bpe_vocabulary():
    cfg = load_config("rtx4060")
    est = estimate(cfg, hardware=planned_hardware(cpu_machine(), "RTX 4060"))
    assert est.vocab_size == 50257
    assert max(est.memory, key=est.memory.get) == "logits"
    m = cfg.model
    # 8 bytes a logit under bf16 autocast on CUDA: fitted to peaks measured on an H200
    assert est.memory["logits"] == logits_bytes(m, 8, 50257, "bf16", "cuda") == 8 * 8 * 512 * 50257
    # on a CPU: the fp32 log-softmax and two fp32 gradients (the trainer holds no logits reference)
    assert logits_bytes(m, 8, 50257, "fp32", "cpu") == 12 * 8 * 512 * 50257


def test_the_bpe_gpu_presets_estimates_are_within_5_percent_of_the_h200s_peaks():
    """bench/gpu_check.py on an H200 (bench/RESULTS.md): torch.cuda.max_memory_allocated of the
    Muon runs of rtx4060, rtx3060 and rtx4090, against the estimate of what tensors take."""
    measured_mb = {"rtx4060": 3693, "rtx3060": 4617, "rtx4090": 9938}
    for preset, peak in measured_mb.items():
        cfg = load_config(preset)
        est = estimate(cfg, hardware=planned_hardware(cpu_machine(), "H200"))
        tensors = (est.memory_total - est.memory["runtime"] - est.memory["allocator"]) / 2**20
        assert tensors == pytest.approx(peak, rel=0.05), preset


def test_vocab_guess():
    cfg = load_config("cpu")
    assert vocab_for(cfg) == CHAR_VOCAB_GUESS
    assert vocab_for(cfg, 65) == 65
    cfg.model.vocab_size = 128
    assert vocab_for(cfg, 65) == 128
    assert vocab_for(load_config("rtx4060")) == 50257


def test_does_not_fit_and_precision_falls_back():
    cfg = load_config("cpu")
    cfg.training.batch_size = 4096
    cfg.training.precision = "bf16"
    est = estimate(cfg, vocab_size=65, hardware=cpu_machine(ram_gib=1))
    assert est.fits is False and est.memory_total > est.device_memory
    assert est.precision == "fp32"        # no native bf16 on this CPU: the trainer runs fp32
    assert estimate(cfg, vocab_size=65, hardware=cpu_machine(bf16=True)).precision == "bf16"


def test_time_estimate_and_calibration_override():
    cfg = load_config("cpu")
    est = estimate(cfg, vocab_size=65, hardware=cpu_machine())
    assert 0 < est.step_seconds < 10
    assert est.total_seconds > cfg.training.max_steps * est.step_seconds   # evaluations too
    fixed = estimate(cfg, vocab_size=65, hardware=cpu_machine(), calibrated_step_seconds=0.05)
    assert fixed.calibrated and fixed.step_seconds == 0.05
    cfg.training.epochs = 2.0
    assert estimate(cfg, hardware=cpu_machine()).total_seconds is None  # needs the data size


def test_a_small_model_on_a_big_gpu_takes_the_hosts_time_to_issue_its_kernels():
    """The cpu preset on an H200 took 20.3-20.5 ms a step (bench/RESULTS.md), where its FLOPs
    take 0.05 ms: the estimate says the host's time, more with more layers and micro-batches;
    a preset made for a GPU stays what its FLOPs take."""
    hw = planned_hardware(cpu_machine(), "H200")
    cfg = load_config("cpu", ['run.device="cuda"'])
    step = estimate(cfg, vocab_size=65, hardware=hw).step_seconds
    assert 0.015 < step < 0.025
    deeper = load_config("cpu", ['run.device="cuda"', "model.n_layer=8", "training.grad_accum_steps=2"])
    assert estimate(deeper, vocab_size=65, hardware=hw).step_seconds > 3 * step
    big = load_config("a100")
    flops_only = estimate(big, hardware=planned_hardware(cpu_machine(), "A100 80GB"))
    assert flops_only.step_seconds == pytest.approx(
        (flops_only.flops_per_token * flops_only.tokens_per_step + flops_only.optimizer_flops_per_step)
        / (312e12 * GPU_EFFICIENCY))


def test_cuda_device_without_gpu_is_estimated_for_cpu():
    cfg = load_config("gtx1660")
    cfg.run.device = "cuda:1"
    est = estimate(cfg, hardware=cpu_machine())
    assert est.device == "cpu" and est.precision == "fp32"
    assert any("cuda:1" in n for n in est.notes)


def test_auto_batch_is_resolved_for_a_planned_card():
    """The wizard's estimate for a card the user does not have resolves "auto" to a number
    (how fast it does so is bench/estimate_speed.py's, not a test's, to time)."""
    hw = planned_hardware(cpu_machine(), "RTX 4060")
    cfg = load_config("rtx4060")
    cfg.training.batch_size = "auto"
    est = estimate(cfg, hardware=hw)
    assert isinstance(est.batch_size, int) and est.batch_size >= 1


@pytest.mark.unit
def test_fsdp_estimate_per_process_shards_weights_gradients_and_optimizer_state():
    from llmtui.engine.planning.sizing import Target, memory_parts

    cfg = load_config("rtx4090", ['optimizer.name="adamw"', 'training.parallel="fsdp"'])
    gpu = Target("cuda", "bf16", 24 * 2**30, None, "cuda:0")
    one, four = memory_parts(cfg, 8, 50257, gpu), memory_parts(cfg, 8, 50257, gpu, world=4)
    assert four["optimizer"] == one["optimizer"] // 4
    assert one["weights"] // 4 < four["weights"] < one["weights"]   # plus what is gathered
    assert four["activations"] == one["activations"]                # a process's own batch
    ddp = load_config("rtx4090", ['optimizer.name="adamw"'])
    assert memory_parts(ddp, 8, 50257, gpu, world=4) == one         # DDP: every process holds all


@pytest.mark.unit
def test_fsdp_refuses_what_it_cannot_shard_in_one_line():
    from llmtui.engine.errors import ConfigError

    for extra, key in ((['optimizer.name="muon"'], "optimizer.name"),
                       (['optimizer.name="adamw"', 'training.precision="fp16"', "training.ema_decay=0"],
                        "training.precision"),
                       (['optimizer.name="adamw"', "training.ema_decay=0.98"], "training.ema_decay")):
        with pytest.raises(ConfigError) as refused:
            load_config("cpu", ['training.parallel="fsdp"', *extra])
        assert refused.value.key == key and "\n" not in str(refused.value)


# ms per step of the cpu preset's recipe at these widths (n_head 4; 8 at 512), measured on
# a 2-core Sapphire Rapids in fp32 and bf16 autocast: the data engine.planning.sizing's CPU
# time model (CPU_MATMUL_FLOPS) was fitted to
SAPPHIRE_RAPIDS_MS = {96: (65, 96), 128: (95, 109), 160: (136, 130), 192: (171, 145),
                      256: (289, 201), 512: (1184, 537)}


def sapphire_rapids() -> HardwareInfo:
    cpu = CpuInfo(model="Intel Xeon (Sapphire Rapids)", physical_cores=2, logical_cores=2,
                  total_ram_bytes=24 * GiB, available_ram_bytes=23 * GiB, bf16_native=True,
                  fp16_native=True, flags=["avx", "avx2", "fma", "avx512f", "avx512_bf16",
                                           "amx_bf16", "amx_tile", "avx512_fp16", "amx_fp16"])
    return HardwareInfo(cpu=cpu, gpus=[], torch_version="2.x", torch_cuda_available=False,
                        torch_cuda_version=None, torch_device_count=0, warnings=[])


@pytest.mark.unit
@pytest.mark.parametrize("width", sorted(SAPPHIRE_RAPIDS_MS))
def test_cpu_step_estimate_follows_what_was_measured(width):
    """The CPU estimate has a matmul term and an elementwise term: FLOPs over a peak alone
    said 6 ms for the cpu preset in bf16 on AMX, where a step took 96 ms. Each measured
    step is within 25% of its estimate, and the faster format of the two is the one
    autotune picks (bf16 on AMX from AMX_BF16_MIN_WIDTH)."""
    from llmtui.engine.planning.autotune import AMX_BF16_MIN_WIDTH, best_precision

    cfg = load_config("cpu")
    cfg.model.n_embd = width
    cfg.model.n_head = 8 if width == 512 else 4
    ms = {}
    for precision, measured in zip(("fp32", "bf16"), SAPPHIRE_RAPIDS_MS[width]):
        cfg.training.precision = precision
        est = estimate(cfg, vocab_size=65, hardware=sapphire_rapids())
        assert est.precision == precision
        ms[precision] = 1000 * est.step_seconds
        assert ms[precision] == pytest.approx(measured, rel=0.25)
    picked, _ = best_precision("cpu", sapphire_rapids(), width=width)
    if width >= AMX_BF16_MIN_WIDTH:
        assert picked == "bf16" and ms["bf16"] < ms["fp32"]
    elif width < 160:        # the crossing: measured even at 160 wide
        assert picked == "fp32" and ms["fp32"] < ms["bf16"]


@pytest.mark.unit
def test_cpu_estimate_follows_run_threads():
    """run.threads = 1 on a 2-core CPU: the estimate is for one core (measured 1.75x
    slower than two for the cpu preset), not for the whole CPU; more threads than
    physical cores are no faster than one per core."""
    cfg = load_config("cpu")
    all_cores = estimate(cfg, vocab_size=65, hardware=sapphire_rapids()).step_seconds
    cfg.run.threads = 1
    one = estimate(cfg, vocab_size=65, hardware=sapphire_rapids()).step_seconds
    assert one == pytest.approx(2 * all_cores)
    cfg.run.threads = 8
    assert estimate(cfg, vocab_size=65, hardware=sapphire_rapids()).step_seconds == pytest.approx(all_cores)


@pytest.mark.unit
def test_auto_precision_and_autotunes_choice_are_one_rule():
    """best_precision (the plan's choice and reason) and fastest_precision (what "auto"
    runs) agree for every kind of device, an unknown compute capability included."""
    from types import SimpleNamespace

    from llmtui.engine.planning.autotune import best_precision
    from llmtui.engine.planning.sizing import fastest_precision

    for bf16 in (True, False):
        for cc in (None, (6, 0), (6, 1), (7, 5), (8, 0), (9, 0)):
            gpu = SimpleNamespace(name="GPU", bf16=bf16, compute_capability=cc)
            choice, _ = best_precision("cuda", None, gpu, 768)
            assert choice == fastest_precision("cuda", 768, gpu_bf16=bf16, compute_capability=cc), (bf16, cc)
    for flags in (["avx2"], ["avx512f", "avx512_bf16"], ["avx512f", "avx512_bf16", "amx_bf16"]):
        for width in (96, 192, 576):
            hardware = SimpleNamespace(cpu=SimpleNamespace(flags=flags, bf16_native="avx512_bf16" in flags))
            choice, _ = best_precision("cpu", hardware, None, width)
            assert choice == fastest_precision("cpu", width, cpu_flags=frozenset(flags)), (flags, width)
