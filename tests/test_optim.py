"""llmtui's optimizers (engine.model.optim) take torch.optim's steps bit for bit, read and
write torch.optim's state_dict, and a training start never imports torch._dynamo (which
every torch.optim optimizer imports, at about the CPU cost of importing torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from llmtui import load_config
from llmtui.engine.model.gpt import GPT, GPTConfig
from llmtui.engine.model.optim import Adam, AdamW, Muon, build_optimizers, optimizer_groups
from llmtui.engine.training.snapshot import optimizer_from_files, state_dict_to_files

BETAS = (0.9, 0.95)


def twin_models(**options) -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, n_layer=1, n_head=2, n_embd=16, block_size=8, **options))
    twin = GPT(model.config)
    twin.load_state_dict(model.state_dict())
    return model, twin


def same_groups(groups: list[dict], model: GPT, twin: GPT) -> list[dict]:
    """`groups` (of model's parameters) with twin's parameters in the same places."""
    name = {id(p): n for n, p in model.named_parameters()}
    twins = dict(twin.named_parameters())
    return [{**g, "params": [twins[name[id(p)]] for p in g["params"]]} for g in groups]


def train(pairs: list[tuple[GPT, list]], steps: int, seed: int = 1) -> None:
    """`steps` steps of each (model, optimizers) on the same random batches."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randint(0, 40, (2, 2, 8), generator=generator)
        for model, optimizers in pairs:
            _, loss = model(x, y)
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)


def assert_same(model: GPT, twin: GPT, ours, theirs) -> None:
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(a, b), name
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert mine["state"].keys() == torchs["state"].keys()
    for index, values in torchs["state"].items():
        assert mine["state"][index].keys() == values.keys()
        for key, value in values.items():
            got = mine["state"][index][key]
            assert got.dtype == value.dtype and got.device == value.device and torch.equal(got, value), (index, key)


@pytest.mark.unit
@pytest.mark.parametrize("ours, theirs, fused", [
    (AdamW, torch.optim.AdamW, True), (Adam, torch.optim.Adam, True), (AdamW, torch.optim.AdamW, False)])
def test_adam_steps_are_torch_optims_bit_for_bit(ours, theirs, fused):
    """Weight decay on the matrices only (two groups), three steps of a small GPT: the same
    weights, moments and step counts as torch.optim's fused kernel (or its per-tensor loop)."""
    model, twin = twin_models()
    groups = optimizer_groups(model, 0.1)
    mine = ours(groups, lr=3e-3, betas=BETAS, eps=1e-8, fused=fused)
    torch_opt = theirs(same_groups(groups, model, twin), lr=3e-3, betas=BETAS, eps=1e-8,
                       **(dict(fused=True) if fused else dict(foreach=False)))
    train([(model, [mine]), (twin, [torch_opt])], 3)
    assert_same(model, twin, mine, torch_opt)
    if fused:   # the very same param groups in a checkpoint
        assert mine.state_dict()["param_groups"] == torch_opt.state_dict()["param_groups"]


@pytest.mark.unit
def test_the_run_s_optimizers_default_to_the_fused_kernel_where_it_exists():
    model, _ = twin_models()
    optimizers = build_optimizers(model, load_config(None, ['optimizer.name="adamw"']).optimizer)
    assert isinstance(optimizers.adam, AdamW) and optimizers.adam.defaults["fused"] is True
    assert optimizers.adam._step_supports_amp_scaling
    with pytest.raises(ValueError, match="fused AdamW needs floating point parameters"):
        AdamW([torch.zeros(3, dtype=torch.int64)], fused=True)
    assert AdamW([torch.zeros(3, dtype=torch.int64)]).defaults["fused"] is False


@pytest.mark.unit
def test_muon_steps_and_state_are_torch_optim_muons_bit_for_bit():
    """The blocks' matrices in bf16 Newton-Schulz (torch.optim.Muon's), beside the AdamW groups."""
    model, twin = twin_models(norm="rmsnorm", tie_embeddings=False)
    cfg = load_config(None, ['optimizer.name="muon"', "optimizer.embedding_learning_rate=0.02"]).optimizer
    mine = build_optimizers(model, cfg, autocast_dtype=torch.bfloat16)
    assert isinstance(mine.muon, Muon) and mine.muon.ns_dtype == torch.bfloat16
    muon_group = {k: v for k, v in mine.muon.param_groups[0].items() if k != "params"}
    torch_muon = torch.optim.Muon(same_groups(mine.muon.param_groups, model, twin)[0]["params"], **muon_group)
    torch_adam = torch.optim.AdamW(same_groups(mine.adam.param_groups, model, twin), lr=cfg.learning_rate,
                                   betas=tuple(cfg.betas), eps=cfg.eps, fused=True)
    train([(model, list(mine)), (twin, [torch_adam, torch_muon])], 3)
    assert_same(model, twin, mine.muon, torch_muon)
    assert_same(model, twin, mine.adam, torch_adam)
    assert mine.muon.state_dict()["param_groups"] == torch_muon.state_dict()["param_groups"]


def through_checkpoint_files(optimizer, target) -> dict:
    """optimizer's state_dict as a checkpoint stores it (safetensors tensors and state.json),
    read back for `target` by the checks resume runs."""
    tensors, meta = state_dict_to_files(optimizer.state_dict())
    tensors = {k: v.clone() for k, v in tensors.items()}
    return optimizer_from_files(target, tensors, json.loads(json.dumps(meta)), "ckpt")


@pytest.mark.unit
@pytest.mark.parametrize("name", ["adamw", "adam", "muon"])
def test_a_checkpoint_of_torch_optim_resumes_bit_for_bit_and_ours_loads_into_torch(name):
    """A checkpoint written while llmtui trained with torch.optim's optimizers resumes into
    llmtui's optimizers and continues exactly as torch.optim would; and the other way round,
    a checkpoint of ours loads into torch.optim: one format."""
    model, twin = twin_models(tie_embeddings=False)
    cfg = load_config(None, [f'optimizer.name="{name}"']).optimizer
    ours = list(build_optimizers(model, cfg, autocast_dtype=torch.bfloat16))
    torch_class = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "muon": torch.optim.AdamW}[name]
    theirs = [torch_class(same_groups(ours[0].param_groups, model, twin), lr=cfg.learning_rate,
                          betas=tuple(cfg.betas), eps=cfg.eps, fused=True)]
    if name == "muon":
        group = {k: v for k, v in ours[1].param_groups[0].items() if k != "params"}
        theirs.append(torch.optim.Muon(same_groups(ours[1].param_groups, model, twin)[0]["params"], **group))
    train([(twin, theirs)], 2)
    # resume: our optimizers on a copy of torch's trained weights, from torch's checkpoint
    model.load_state_dict(twin.state_dict())
    for mine, torch_opt in zip(ours, theirs):
        mine.load_state_dict(through_checkpoint_files(torch_opt, mine))
    train([(model, ours), (twin, theirs)], 3, seed=2)
    for mine, torch_opt in zip(ours, theirs):
        assert_same(model, twin, mine, torch_opt)
    # and ours, checkpointed, into fresh torch optimizers that then take the same steps
    for mine, torch_opt in zip(ours, theirs):
        torch_opt.load_state_dict(through_checkpoint_files(mine, torch_opt))
    train([(model, ours), (twin, theirs)], 2, seed=3)
    for mine, torch_opt in zip(ours, theirs):
        assert_same(model, twin, mine, torch_opt)


@pytest.mark.unit
def test_a_loaded_state_keeps_how_the_optimizer_computes():
    """A state_dict's hyperparameters are loaded (lr, betas, ...), but not the flags that
    choose the algorithm: a crafted checkpoint cannot turn on amsgrad, whose state it lacks."""
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = AdamW([p], lr=0.1)
    p.grad = torch.ones(3)
    optimizer.step()
    state = optimizer.state_dict()
    state["param_groups"][0].update(lr=0.5, amsgrad=True, fused=False, decoupled_weight_decay=False)
    optimizer.load_state_dict(state)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["amsgrad"], group["fused"], group["decoupled_weight_decay"]) == (0.5, False, True, True)
    assert group["params"] == [p]
    optimizer.step()   # the fused kernel with the loaded moments
    assert optimizer.state[p]["step"].item() == 2.0
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optimizer.load_state_dict({"state": {}, "param_groups": []})


@pytest.mark.unit
def test_grad_scaler_steps_through_the_fused_kernel_as_with_torch_optim():
    """torch.amp.GradScaler hands the fused AdamW its scale and inf flag: scaled gradients
    are unscaled inside the kernel, and a step with an inf gradient leaves everything as it
    was (step counts too), the same as torch.optim.AdamW(fused=True)."""
    ours, theirs = torch.nn.Parameter(torch.ones(4, 4)), torch.nn.Parameter(torch.ones(4, 4))
    mine, torch_opt = AdamW([ours], lr=0.1, fused=True), torch.optim.AdamW([theirs], lr=0.1, fused=True)
    scalers = [torch.amp.GradScaler("cpu", init_scale=1024.0), torch.amp.GradScaler("cpu", init_scale=1024.0)]
    for grad in (torch.full((4, 4), 0.5), torch.full((4, 4), float("inf")), torch.full((4, 4), -0.25)):
        for p, optimizer, scaler in ((ours, mine, scalers[0]), (theirs, torch_opt, scalers[1])):
            scaler.scale((p * grad).sum()).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
    assert torch.equal(ours, theirs) and not torch.equal(ours, torch.ones(4, 4))
    assert mine.state[ours]["step"].item() == torch_opt.state[theirs]["step"].item() == 2.0
    assert scalers[0].get_scale() == scalers[1].get_scale() == 512.0


@pytest.mark.subprocess
def test_a_training_run_imports_neither_torch_dynamo_nor_fsdp(tmp_path, shared_data_dir):
    """What a user sees as start-up: torch.optim's optimizers import torch._dynamo when they
    are made (about the CPU time of importing torch, before the first step), and FSDP's
    modules bring sympy. A whole short run (AdamW and Muon, evaluation, sample,
    checkpoints) that neither compiles nor shards imports none of them."""
    args = ["--run", "cpu", "--plain", "--max-iters", "2"]
    for override in ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
                     "training.batch_size=4", 'optimizer.name="muon"', "eval.every_n_steps=2",
                     "eval.max_batches=1", "eval.sample_tokens=4", "run.threads=1", 'run.device="cpu"',
                     f'run.out_dir="{tmp_path / "runs"}"', f'data.prepared_dir="{shared_data_dir}"']:
        args += ["-o", override]
    heavy = ["torch._dynamo", "torch.distributed.tensor", "torch.distributed.fsdp", "sympy"]
    code = ("import runpy, sys; sys.argv = ['llmtui', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('llmtui', run_name='__main__', alter_sys=True)\n"
            f"finally:\n    print('imported:', [m for m in {heavy!r} if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "saved last checkpoint" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "imported: []"


@pytest.mark.unit
@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (24, 24)])
def test_normuon_evens_the_neurons_updates_and_keeps_muons_step_size(shape):
    """NorMuon (optimizer.muon_beta2): each neuron's (row's; a wide matrix's column's) update
    is divided by its running RMS, and the update keeps its Frobenius norm. Fed the same
    update, every neuron's RMS comes out equal; the norm is the orthogonalized update's."""
    from llmtui.engine.model.optim import normalize_neurons

    generator = torch.Generator().manual_seed(0)
    update = torch.randn(shape, generator=generator) * torch.rand(shape[0], 1, generator=generator) \
        * torch.rand(1, shape[1], generator=generator) * 3
    neurons = -1 if shape[0] >= shape[1] else -2
    moment = torch.zeros((shape[0], 1) if neurons == -1 else (1, shape[1]))
    for _ in range(3):
        out = normalize_neurons(update, moment, 0.95)
        assert out.norm().item() == pytest.approx(update.norm().item(), rel=1e-5)
    rms = out.square().mean(dim=neurons)
    assert torch.allclose(rms, rms.mean().expand_as(rms), rtol=1e-4)
    before = update.square().mean(dim=neurons)
    assert before.max() / before.min() > 10        # it was uneven


@pytest.mark.unit
def test_normuon_resumes_bit_for_bit_through_a_checkpoint():
    """The per-neuron second moment is optimizer state: a checkpoint keeps it, and a run
    resumed from one takes the same steps as the run that went on."""
    model, twin = twin_models(norm="rmsnorm", tie_embeddings=False)
    cfg = load_config(None, ['optimizer.name="muon"', "optimizer.muon_beta2=0.95"]).optimizer
    going_on = build_optimizers(model, cfg)
    assert going_on.muon.param_groups[0]["beta2"] == 0.95
    train([(model, list(going_on))], 2)
    assert all("second_momentum_buffer" in s for s in going_on.muon.state.values())
    twin.load_state_dict(model.state_dict())
    resumed = build_optimizers(twin, cfg)
    for mine, saved in zip(resumed, going_on):
        mine.load_state_dict(through_checkpoint_files(saved, mine))
    train([(model, list(going_on)), (twin, list(resumed))], 3, seed=2)
    for mine, saved in zip(resumed, going_on):
        assert_same(twin, model, mine, saved)
    # and it is another optimizer than Muon: the same start without it ends elsewhere
    plain, plain_twin = twin_models(norm="rmsnorm", tie_embeddings=False)
    normuon = build_optimizers(plain_twin, cfg)
    train([(plain, list(build_optimizers(plain, load_config(None, ['optimizer.name="muon"']).optimizer))),
           (plain_twin, list(normuon))], 2)
    assert not torch.equal(plain.transformer.h[0].attn.c_attn.weight, plain_twin.transformer.h[0].attn.c_attn.weight)


@pytest.mark.unit
def test_normuon_on_a_stack_normalizes_each_matrix_as_alone():
    """Muon normalizes the matrices of one shape together (one stack, a few ops): each
    comes out as it would alone, its own norm kept, its own moment updated."""
    from llmtui.engine.model.optim import normalize_neurons

    generator = torch.Generator().manual_seed(1)
    updates = torch.randn(3, 40, 12, generator=generator) * torch.tensor([0.1, 1.0, 10.0]).view(3, 1, 1)
    moments = torch.rand(3, 40, 1, generator=generator)
    alone = [normalize_neurons(u, m.clone(), 0.9) for u, m in zip(updates, moments)]
    stacked_moments = moments.clone()
    together = normalize_neurons(updates, stacked_moments, 0.9)
    for i in range(3):
        assert torch.allclose(together[i], alone[i], rtol=1e-5, atol=1e-7)
        assert together[i].norm().item() == pytest.approx(updates[i].norm().item(), rel=1e-5)
        assert torch.allclose(stacked_moments[i], moments[i].lerp(updates[i].square().mean(-1, keepdim=True), 0.1))
