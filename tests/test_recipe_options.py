"""The modern-recipe options (issue 12): model.norm, model.mlp, model.qk_norm,
optimizer.name = "muon", scheduler.kind = "wsd". Each one trains, is counted honestly
(parameters, FLOPs), resumes bit for bit, and is refused with one line where it cannot
apply. The defaults train exactly as before (tests/test_compat.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from test_checkpoints import RESUMABLE, interrupted_then_resumed, losses

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.config.loading import config_from_dict, validate
from llmtui.engine.errors import ConfigError
from llmtui.engine.model.gpt import GPT, GPTConfig, gpt_config
from llmtui.engine.model.optim import Muon, build_optimizers, orthogonalize
from llmtui.engine.model.shapes import newton_schulz_flops
from llmtui.engine.planning.sizing import count_params, optimizer_bytes, optimizer_flops_per_step
from llmtui.engine.training.schedule import lr_at, wsd_decay_start
from llmtui.engine.training.trainer import Trainer

MUON = ['optimizer.name="muon"', "optimizer.embedding_learning_rate=0.02",
        "optimizer.gain_learning_rate=0.004"]


def small_model(**options) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, n_layer=2, n_head=4, n_embd=32, block_size=16, **options))


# ---------------------------------------------------------------------------
# the model options


@pytest.mark.unit
@pytest.mark.parametrize("options", [dict(norm="rmsnorm"), dict(mlp="relu2"), dict(mlp="swiglu"),
                                     dict(qk_norm=True), dict(norm="rmsnorm", mlp="swiglu", qk_norm=True,
                                                              bias=True, tie_embeddings=False)])
def test_each_model_option_builds_what_it_names_and_is_counted(options):
    model = small_model(**options)
    names = dict(model.named_modules())
    norm_type = torch.nn.RMSNorm if options.get("norm") == "rmsnorm" else torch.nn.LayerNorm
    assert isinstance(names["transformer.h.0.ln_1"], norm_type)
    assert isinstance(names["transformer.ln_f"], norm_type)
    assert ("transformer.h.0.attn.q_norm" in names) == bool(options.get("qk_norm"))
    c_fc = names["transformer.h.0.mlp.c_fc"].weight
    width = model.config.ff_width
    if options.get("mlp") == "swiglu":
        # gate and up in one matrix; 8/3 x 32 rounded up to a multiple of 8 = 88
        assert width == 88 and c_fc.shape == (2 * width, 32)
    else:
        assert width == 128 and c_fc.shape == (width, 32)
    # the planner's arithmetic counts the same parameters, so the FLOPs (6N + attention)
    # count all three SwiGLU matrices and the QK-norm gains
    total, non_embedding = count_params(SimpleNamespace(**vars(model.config)), 40)
    assert total == model.num_params(non_embedding=False)
    assert non_embedding == model.num_params(non_embedding=True)
    assert model.flops_per_token() == 6 * non_embedding + 12 * 2 * 16 * 32
    x = torch.randint(0, 40, (2, 16))
    _, loss = model(x, x)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


@pytest.mark.unit
def test_activation_functions_are_the_named_ones():
    x = torch.randn(4, 32)
    for kind, expected in (("gelu", torch.nn.functional.gelu), ("relu2", lambda h: torch.relu(h) ** 2)):
        mlp = small_model(mlp=kind).transformer.h[0].mlp
        assert torch.allclose(mlp(x), mlp.c_proj(expected(mlp.c_fc(x))), atol=1e-6)
    mlp = small_model(mlp="swiglu").transformer.h[0].mlp
    gate, up = mlp.c_fc(x).chunk(2, dim=-1)
    assert torch.allclose(mlp(x), mlp.c_proj(torch.nn.functional.silu(gate) * up), atol=1e-6)


@pytest.mark.unit
def test_qk_norm_bounds_the_attention_logits():
    """With QK-norm, q and k have unit RMS per head (times a gain that starts at 1)."""
    attn = small_model(qk_norm=True).transformer.h[0].attn
    q = torch.randn(2, 4, 16, 8) * 100
    rms = attn.q_norm(q).detach().pow(2).mean(-1).sqrt()
    assert torch.allclose(rms, torch.ones(2, 4, 16), atol=1e-3)


# ---------------------------------------------------------------------------
# Muon


@pytest.mark.unit
def test_muon_step_is_torch_optim_muons_step_bit_for_bit():
    """Our Muon takes torch.optim.Muon's steps with a choice of Newton-Schulz format: in bf16 (PyTorch's)
    it takes exactly torch's steps."""
    torch.manual_seed(1)
    weights = [torch.randn(48, 16), torch.randn(16, 64)]
    ours = [w.clone().requires_grad_() for w in weights]
    theirs = [w.clone().requires_grad_() for w in weights]
    mine = Muon(ours, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.bfloat16)
    torch_muon = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for _ in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for p, g in zip(ours, grads):
            p.grad = g.clone()
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        mine.step()
        torch_muon.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert mine.state_dict()["state"][0]["momentum_buffer"].equal(
        torch_muon.state_dict()["state"][0]["momentum_buffer"])


@pytest.mark.unit
def test_fp32_newton_schulz_orthogonalizes():
    """Muon's quintic iteration in fp32 (the CPU path) leaves singular values near 1
    (within Muon's designed band of about 0.5 to 1.5) for tall and wide matrices."""
    for shape in ((64, 16), (16, 64), (32, 32)):
        out = orthogonalize(torch.randn(*shape), (3.4445, -4.775, 2.0315), 5, 1e-7, torch.float32)
        assert out.dtype == torch.float32 and out.shape == shape
        s = torch.linalg.svdvals(out)
        assert s.min() > 0.5 and s.max() < 1.5, s


@pytest.mark.unit
def test_fp32_muon_batches_matrices_of_one_shape_with_the_same_result():
    """In fp32 (the CPU path) Muon orthogonalizes same-shaped matrices in one batched
    iteration: each parameter still moves as torch.optim.Muon's fp32 step moves it alone."""
    torch.manual_seed(2)
    weights = [torch.randn(48, 16), torch.randn(48, 16), torch.randn(16, 64), torch.randn(48, 16)]
    together = [w.clone().requires_grad_() for w in weights]
    alone = [w.clone().requires_grad_() for w in weights]
    batched = Muon(together, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.float32)
    singles = [Muon([p], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.float32)
               for p in alone]
    for _ in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for a, b, g in zip(together, alone, grads):
            a.grad, b.grad = g.clone(), g.clone()
        batched.step()
        for optimizer in singles:
            optimizer.step()
    for a, b, w in zip(together, alone, weights):
        assert not torch.equal(a, w)
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.unit
def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = small_model(tie_embeddings=False, bias=True)
    cfg = load_config(None, MUON + ["optimizer.head_learning_rate=0.008", "model.tie_embeddings=false"])
    optimizers = build_optimizers(model, cfg.optimizer)
    by_id = {id(p): name for name, p in model.named_parameters()}
    muon = {by_id[id(p)] for g in optimizers.muon.param_groups for p in g["params"]}
    adam = [({by_id[id(p)] for p in g["params"]}, g["lr"], g["weight_decay"])
            for g in optimizers.adam.param_groups]
    assert muon == {n for n in by_id.values() if ".h." in n and n.endswith("weight") and "ln_" not in n}
    embeddings, head, gains = adam
    assert embeddings == ({"transformer.wte.weight", "transformer.wpe.weight"}, 0.02, 0.1)
    assert head == ({"lm_head.weight"}, 0.008, 0.1)
    assert gains[1:] == (0.004, 0.0) and all(n.endswith("bias") or "ln_" in n for n in gains[0])
    assert muon | embeddings[0] | head[0] | gains[0] == set(by_id.values())   # every parameter, once
    assert optimizers.adam.defaults["fused"] is True
    # the schedule scales every group by the same factor; a group at the peak gets it exactly
    optimizers.set_lr(5e-4, 1e-3)
    assert [g["lr"] for g in optimizers.groups()] == pytest.approx([0.01, 0.004, 0.002, 5e-4])
    assert optimizers.muon.param_groups[0]["lr"] == 5e-4
    # the Newton-Schulz matmuls, reported apart from the model's FLOPs, as the planner counts them
    assert optimizers.extra_flops_per_step == sum(newton_schulz_flops(p.shape) for g in
                                                  optimizers.muon.param_groups for p in g["params"])
    cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_head, cfg.model.block_size = 2, 32, 4, 16
    assert optimizer_flops_per_step(cfg) == optimizers.extra_flops_per_step
    # one momentum per matrix weight instead of Adam's two
    n = model.num_params(non_embedding=False)
    assert optimizer_bytes(cfg, n) < 8 * n


@pytest.mark.train
def test_muon_run_reports_its_optimizer_flops_and_default_runs_do_not(tiny):
    result = Trainer(load_config("cpu", tiny + MUON + ['run.name="muon"'])).run()
    start = next(e for e in read_jsonl(result.metrics_path) if e["kind"] == "start")
    assert start["optimizer_flops_per_step"] > 0
    default = Trainer(load_config(None, tiny + ['run.name="adamw"'])).run()
    start = next(e for e in read_jsonl(default.metrics_path) if e["kind"] == "start")
    assert "optimizer_flops_per_step" not in start


# ---------------------------------------------------------------------------
# exact resume, for every option


@pytest.mark.train
@pytest.mark.parametrize("options", [
    MUON + ['scheduler.kind="wsd"', "scheduler.decay_fraction=0.3", "model.tie_embeddings=false",
            "optimizer.head_learning_rate=0.01"],
    ['model.norm="rmsnorm"', 'model.mlp="swiglu"', "model.qk_norm=true", 'model.pos_encoding="rope"'],
    ['model.mlp="relu2"'] + MUON,
], ids=["muon-wsd-untied", "rmsnorm-swiglu-qknorm", "relu2-muon"])
def test_resume_is_bit_identical_for_every_new_option(tiny, options):
    straight = load_config(None, tiny + RESUMABLE + options + ['run.name="straight"'])
    Trainer(straight).run()
    broken = load_config(None, tiny + RESUMABLE + options + ['run.name="broken"'])
    resumed = interrupted_then_resumed(broken, at_step=17)
    a, b = losses(resumed.run_dir.parent / "straight"), losses(resumed.run_dir)
    assert sorted(a) == sorted(b) == list(range(1, 41))
    assert a == b
    for name in ("model.safetensors", "state.safetensors"):
        assert (resumed.run_dir.parent / "straight" / "last" / name).read_bytes() == \
            (resumed.run_dir / "last" / name).read_bytes(), name


@pytest.mark.train
def test_muon_state_is_saved_and_checked_before_loading(tiny, capsys):
    from safetensors.torch import load_file, save_file

    from llmtui.engine.training import checkpoint as ckpt

    result = Trainer(load_config(None, tiny + MUON)).run()
    state = load_file(result.run_dir / "last" / "state.safetensors")
    muon_keys = [k for k in state if k.startswith("muon.")]
    # one momentum buffer per block matrix (4 per layer), beside AdamW's moments
    assert len(muon_keys) == 4 and all(k.endswith("momentum_buffer") for k in muon_keys)
    assert any(k.startswith("optimizer.") and k.endswith("exp_avg") for k in state)

    # a momentum buffer of the wrong shape is refused with one line, before any kernel sees it
    last = result.run_dir / "last"
    state[muon_keys[0]] = torch.zeros(3, 3)
    save_file(state, last / "state.safetensors")
    from test_checkpoints import _rewrite_manifest
    _rewrite_manifest(last)
    code = main(["--run", "cpu", "--plain", "--resume", str(last), "--max-iters", "40",
                 *sum((["-o", o] for o in tiny + MUON if not o.startswith("training.max_steps")), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and muon_keys[0] in err and "\n" not in err, err
    assert ckpt.checkpoint_step(last) == 30


@pytest.mark.train
def test_resuming_with_another_optimizer_is_refused_with_one_line(tiny, capsys):
    Trainer(load_config(None, tiny + ["training.max_steps=10"])).run()
    code = main(["--run", "cpu", "--plain", "--resume", "--max-iters", "20",
                 *sum((["-o", o] for o in tiny + MUON if not o.startswith("training.max_steps")), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "optimizer.name" in err and "\n" not in err, err


@pytest.mark.train
def test_a_new_model_option_changes_the_shape_fingerprint(tiny, capsys):
    Trainer(load_config(None, tiny + ["training.max_steps=10"])).run()
    code = main(["--run", "cpu", "--plain", "--resume", "--max-iters", "20",
                 *sum((["-o", o] for o in tiny + ['model.norm="rmsnorm"']
                       if not o.startswith("training.max_steps")), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model shape" in err and "\n" not in err, err


# ---------------------------------------------------------------------------
# warmup-stable-decay


def wsd(**kw):
    return load_config(None, ['scheduler.kind="wsd"', "scheduler.warmup_steps=10",
                              "scheduler.min_learning_rate=1e-4"]
                       + [f"scheduler.{k}={v}" for k, v in kw.items()]).scheduler


@pytest.mark.unit
def test_wsd_is_warmup_then_constant_then_a_linear_decay():
    s = wsd(decay_fraction=0.25)
    lrs = [lr_at(step, s, 1e-3, 100) for step in range(110)]
    assert lrs[0] == pytest.approx(1e-3 / 11) and lrs[9] == pytest.approx(1e-3 * 10 / 11)
    assert wsd_decay_start(s, 100) == 75
    assert all(lr == 1e-3 for lr in lrs[10:76])
    decay = lrs[75:100]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    assert lrs[87] == pytest.approx(1e-3 + 12 / 25 * (1e-4 - 1e-3))      # linear
    assert lrs[100:] == [1e-4] * 10
    # decay_steps ends the decay early; decay_fraction = 1 is a linear decay after warmup
    assert wsd_decay_start(wsd(decay_fraction=0.25, decay_steps=40), 100) == 30
    assert wsd_decay_start(wsd(decay_fraction=1.0), 100) == 10


@pytest.mark.train
def test_extending_a_wsd_run_keeps_its_learning_rate(tiny):
    """Stopped in its stable phase and resumed with a larger max_steps, a wsd run goes on at
    the same learning rate (cosine's would step up); the decay moves to the new end."""
    options = ['scheduler.kind="wsd"', "scheduler.decay_fraction=0.2", "logging.every_n_steps=1",
               "checkpoint.every_n_steps=0"]
    cfg = load_config(None, tiny + options + ["training.max_steps=40"])
    holder = {}

    def stop_at_20(event):
        if event.kind == "train" and event.step == 20:
            holder["t"].stop("interrupted")
    first = holder["t"] = Trainer(cfg, listeners=[stop_at_20])
    first.run()
    longer = load_config(None, tiny + options + ["training.max_steps=80"])
    result = Trainer(longer, resume_from=True).run()
    lr = {e["step"]: e["lr"] for e in read_jsonl(result.metrics_path) if e["kind"] == "train"}
    peak = longer.optimizer.learning_rate
    # a train line at step s records the rate of the step that made it (counted from 0: s - 1)
    assert lr[20] == lr[21] == peak                 # no jump at the resume point
    assert all(lr[s] == peak for s in range(6, 66))  # stable until the new decay (from step 64)
    assert lr[80] < lr[70] < lr[66] < peak


@pytest.mark.train
def test_resuming_a_wsd_run_inside_its_decay_with_more_steps_warns(tiny):
    options = ['scheduler.kind="wsd"', "scheduler.decay_fraction=0.5", "checkpoint.every_n_steps=0"]
    Trainer(load_config(None, tiny + options + ["training.max_steps=30"])).run()
    warnings = []
    longer = load_config(None, tiny + options + ["training.max_steps=60"])
    Trainer(longer, resume_from=True,
            listeners=[lambda e: warnings.append(e.message) if e.kind == "warning" else None]).run()
    assert any("decay" in w and "step 15" in w for w in warnings), warnings


# ---------------------------------------------------------------------------
# config


@pytest.mark.train
@pytest.mark.parametrize("key, value", [("model.norm", '"batchnorm"'), ("model.mlp", '"tanh"'),
                                        ("optimizer.name", '"sgd"'), ("scheduler.kind", '"step"'),
                                        ("scheduler.decay_fraction", "0"), ("optimizer.muon_momentum", "1.5"),
                                        ("model.qk_norm", '"yes"')])
def test_bad_values_of_the_new_keys_are_one_line_errors(tiny, capsys, key, value):
    code = main(["--run", "cpu", "--plain", "-o", f"{key}={value}", *sum((["-o", o] for o in tiny), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and key in err and "\n" not in err, err


@pytest.mark.unit
def test_head_learning_rate_needs_an_untied_head():
    cfg = config_from_dict({"optimizer": {"name": "muon", "head_learning_rate": 0.01}})
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert info.value.key == "optimizer.head_learning_rate"
    assert "model.tie_embeddings" in info.value.related
    cfg.model.tie_embeddings = False
    validate(cfg)


@pytest.mark.unit
def test_new_keys_reach_the_model():
    cfg = load_config(None, ['model.norm="rmsnorm"', 'model.mlp="swiglu"', "model.qk_norm=true",
                             "model.d_ff=96"])
    gc = gpt_config(cfg, 65)
    assert (gc.norm, gc.mlp, gc.qk_norm, gc.ff_width) == ("rmsnorm", "swiglu", True, 96)
    assert json.loads(json.dumps(cfg.to_dict()))["model"]["norm"] == "rmsnorm"
