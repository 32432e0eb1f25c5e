"""Training throughput of llmtui's engine, with each step split into its parts.

    .venv/bin/python bench/throughput.py                    # recipe + the presets this device runs
    .venv/bin/python bench/throughput.py --compile          # also torch.compile on vs off (recipe)
    .venv/bin/python bench/throughput.py --steps 20 --warmup 5 --preset-steps 10   # quick check

Configs: bench/nanogpt_recipe.toml on ../shared/data/tinyshakespeare.txt
(nanoGPT's CPU recipe) and every presets/*.toml. A preset made for other
hardware (its precision has no fast path here, e.g. bf16/fp16 on a CPU
without bf16/fp16 matrix instructions) is skipped and listed as skipped;
--all-presets runs it anyway.

Each config is set up by a real engine Trainer (`trainer.setup()`: data,
model, optimizer, placement, compile), then driven here in alternating blocks:

  split steps: the work of Trainer._train_step with a clock between the parts:
               data (sampler.next_batch + copy to the device), forward+backward,
               optimizer (unscale + grad clip + step + zero_grad);
  real steps:  Trainer.train_step() itself, timed as a whole.

tokens/s and MFU come from the real steps; "other" is the real step's mean
minus the sum of the split parts (the loss bookkeeping, lr setting; noise
can make it negative). MFU = flops_per_token (6N + 12LTd, the engine's own
figure) x tokens/s / matmul peak, the peak being the median of repeated
1024^2 matmuls in the run's precision, measured before and after in this run.
The loop around _train_step in Trainer.run (commands, logging) is not timed
here; bench/recipe.py times whole runs. One process, one device: not for torchrun.

Writes bench/out/throughput.json; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the engine of this checkout, wherever this is run from
RECIPE = REPO / "bench" / "nanogpt_recipe.toml"
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = REPO / "bench" / "out"
NANOGPT_MFU = 0.41  # nanoGPT on this recipe, ../shared/BASELINES.md

import torch  # noqa: E402

from llmtui.engine.config.loading import load_config  # noqa: E402
from llmtui.engine.config.presets import preset_names  # noqa: E402
from llmtui.engine.planning.device import DTYPES, place  # noqa: E402
from llmtui.engine.training.build import autocast, to_device  # noqa: E402
from llmtui.engine.training.schedule import lr_at  # noqa: E402
from llmtui.engine.training.trainer import Trainer  # noqa: E402


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 1024, repeats: int = 15) -> float:
    """FLOP/s of an n x n matmul: the median of `repeats` timed runs."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for i in range(repeats + 2):  # the first two warm up
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(config: str | Path, run_dir: Path, **settings) -> Trainer:
    cfg = load_config(config, **settings, run__out_dir=str(run_dir),
                      data__prepared_dir=str(OUT / "data"))
    trainer = Trainer(cfg, overwrite=True)
    trainer.setup()                # set up without a run: the steps are timed here
    return trainer


def split_step(trainer: Trainer) -> tuple[float, float, float]:
    """One optimizer step doing what Trainer.train_step does, returning
    (data, forward+backward, optimizer) seconds."""
    s = trainer.setup_done
    c, device = s.config, s.device
    t = c.training
    lr = lr_at(trainer.state.step, c.scheduler, c.optimizer.learning_rate, trainer.state.max_steps)
    s.optimizers.set_lr(lr, c.optimizer.learning_rate)
    data = fwd_bwd = 0.0
    for _ in range(t.grad_accum_steps):
        start = time.perf_counter()
        x, y = to_device(device, *s.sampler.next_batch())
        sync(device)
        loaded = time.perf_counter()
        with autocast(s):
            _, loss = s.model(x, y)
        s.scaler.scale(loss / t.grad_accum_steps).backward()
        sync(device)
        data += loaded - start
        fwd_bwd += time.perf_counter() - loaded
    start = time.perf_counter()
    if t.grad_clip > 0:
        for opt in s.optimizers:
            s.scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), t.grad_clip)
    for opt in s.optimizers:
        s.scaler.step(opt)
    s.scaler.update()
    s.optimizers.zero_grad()
    sync(device)
    optimizer = time.perf_counter() - start
    trainer.state.step += 1
    return data, fwd_bwd, optimizer


def real_step(trainer: Trainer) -> float:
    """One Trainer.train_step(), in seconds."""
    start = time.perf_counter()
    trainer.train_step()
    sync(trainer.setup_done.device)
    trainer.state.step += 1
    return time.perf_counter() - start


def measure(trainer: Trainer, steps: int, warmup: int, block: int = 10) -> dict:
    """Warm up, then alternate blocks of split and real steps (`steps` of each),
    so that drift in the machine's speed affects both alike."""
    trainer.setup_done.model.train()
    for _ in range(warmup):
        real_step(trainer)
    splits, reals = [], []
    while len(reals) < steps:
        n = min(block, steps - len(reals))
        splits += [split_step(trainer) for _ in range(n)]
        reals += [real_step(trainer) for _ in range(n)]
    data, fwd_bwd, opt = (1000 * statistics.mean(part) for part in zip(*splits))
    ms = 1000 * statistics.mean(reals)
    return {"steps": steps, "warmup": warmup, "ms_per_step": ms,
            "ms_per_step_median": 1000 * statistics.median(reals),
            "ms_per_step_stdev": 1000 * statistics.stdev(reals) if len(reals) > 1 else 0.0,
            "tokens_per_sec": trainer.setup_done.tokens_per_step * 1000 / ms,
            "split_ms": {"data": data, "forward_backward": fwd_bwd, "optimizer": opt,
                         "other": ms - (data + fwd_bwd + opt)}}


def describe(trainer: Trainer) -> dict:
    s = trainer.setup_done
    return {"device": str(s.device), "precision": s.placement.precision,
            "threads": torch.get_num_threads(), "n_params": s.n_params,
            "n_params_non_embedding": s.n_params_non_embedding,
            "flops_per_token": s.flops_per_token, "tokens_per_step": s.tokens_per_step,
            "compile": s.config.training.compile, "engine_peak_flops": s.peak_flops}


def run_config(name: str, config, run_dir: Path, steps: int, warmup: int, **settings) -> dict:
    print(f"{name}: setting up ...", flush=True)
    start = time.perf_counter()
    trainer = make_trainer(config, run_dir, **settings)
    setup_s = time.perf_counter() - start
    result = {"name": name, "config": str(config), "setup_s": setup_s, **describe(trainer)}
    if trainer.setup_done.config.training.compile:
        # the first step compiles (forward and backward graphs); timed on its own
        start = time.perf_counter()
        real_step(trainer)
        result["first_step_s"] = time.perf_counter() - start
    print(f"{name}: {warmup} warm-up + 2 x {steps} steps ...", flush=True)
    result.update(measure(trainer, steps, warmup))
    return result


def skip_reason(preset: str, max_step_seconds: float, peak_flops: float) -> str | None:
    """Why this device should not run the preset in a benchmark, or None."""
    cfg = load_config(preset)
    if cfg.model.init_from != "scratch":
        # a fine-tune preset: its architecture (and a download) come from the pretrained model
        return f"starts from {cfg.model.init_from} (time it with llmtui --run {preset})"
    placement = place(cfg.run.device, cfg.training.precision)
    asked = cfg.training.precision
    if placement.warnings or (asked != "auto" and placement.precision != asked):
        return "made for other hardware: " + "; ".join(placement.warnings)
    m, t = cfg.model, cfg.training
    if not isinstance(t.batch_size, int) or not isinstance(t.grad_accum_steps, int):
        return "batch size \"auto\" (sized from the device's free memory at the start)"
    vocab = 50257 if cfg.tokenizer.kind == "bpe" else 256
    params = 12 * m.n_layer * m.n_embd ** 2 + vocab * m.n_embd  # rough, for this decision only
    tokens = t.batch_size * t.grad_accum_steps * m.block_size
    estimate = 6 * params * tokens / (0.5 * peak_flops)  # at 50% MFU
    if placement.device.type == "cpu" and estimate > max_step_seconds:
        return f"about {estimate:.0f} s per step on this CPU (limit --max-step-seconds {max_step_seconds:g})"
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200, help="measured steps of each kind for the recipe")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--preset-steps", type=int, default=50, help="measured steps of each kind per preset")
    p.add_argument("--preset-warmup", type=int, default=5)
    p.add_argument("--presets", nargs="*", default=None,
                   help="preset names to run (default: all; give none to skip presets)")
    p.add_argument("--all-presets", action="store_true", help="run presets made for other hardware too")
    p.add_argument("--max-step-seconds", type=float, default=5.0,
                   help="on CPU, skip presets estimated slower than this per step")
    p.add_argument("--compile", action="store_true", help="also time the recipe with torch.compile")
    p.add_argument("--cold-compile", action="store_true",
                   help="with --compile: use an empty inductor cache (a first compile on a new machine)")
    p.add_argument("--data", type=Path, default=DATA, help="corpus for the recipe")
    p.add_argument("--out", type=Path, default=OUT / "throughput.json")
    args = p.parse_args()
    if args.cold_compile:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="llmtui-inductor-")
    if not args.data.is_file():
        sys.exit(f"{args.data}: no such corpus file (give --data)")
    OUT.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="llmtui-throughput-"))

    recipe_precision = load_config(RECIPE).training.precision
    device = place("cpu", recipe_precision).device
    peak_dtype = DTYPES[place("cpu", recipe_precision).precision]
    peak_before = matmul_peak(peak_dtype, device)
    print(f"matmul peak ({peak_dtype}, 1024^2, median): {peak_before / 1e9:.0f} GFLOP/s", flush=True)

    results, skipped = [], []
    try:
        recipe = {"data__source": str(args.data.resolve())}
        results.append(run_config("recipe", RECIPE, run_dir, args.steps, args.warmup, **recipe))
        if args.compile:
            results.append(run_config("recipe+compile", RECIPE, run_dir, args.steps, args.warmup,
                                      **recipe, training__compile=True))
        presets = preset_names() if args.presets is None else args.presets
        for name in presets:
            reason = None if args.all_presets else skip_reason(name, args.max_step_seconds, peak_before)
            if reason:
                print(f"preset {name}: skipped ({reason})", flush=True)
                skipped.append({"name": f"preset {name}", "reason": reason})
                continue
            results.append(run_config(f"preset {name}", name, run_dir,
                                      args.preset_steps, args.preset_warmup))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    peak_after = matmul_peak(peak_dtype, device)
    # MFU denominators: the recipe's (CPU) peak is the mean of before and after;
    # any other device or precision a preset ran in is measured once, now
    peaks = {("cpu", peak_dtype): (peak_before + peak_after) / 2}
    for r in results:
        key = (r["device"], DTYPES[r["precision"]])
        if key not in peaks:
            peaks[key] = matmul_peak(key[1], torch.device(key[0]), 1024 if key[0] == "cpu" else 8192)
        r["peak_flops"] = peaks[key]
        r["mfu"] = r["flops_per_token"] * r["tokens_per_sec"] / r["peak_flops"]

    print_table(results, skipped, peak_before, peak_after)
    report = {"machine": machine(), "matmul_peak_flops": {"before": peak_before, "after": peak_after},
              "results": results, "skipped": skipped, "checks": checks(results)}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def checks(results: list[dict]) -> list[dict]:
    out = []
    by_name = {r["name"]: r for r in results}
    if "recipe" in by_name:
        r = by_name["recipe"]
        if r["device"] == "cpu":
            out.append({"name": "recipe MFU vs nanoGPT's (BASELINES.md)", "value": round(r["mfu"], 3),
                        "unit": "", "target": f">= {NANOGPT_MFU}", "passed": r["mfu"] >= NANOGPT_MFU})
    if "recipe" in by_name and "recipe+compile" in by_name:
        off, on = by_name["recipe"], by_name["recipe+compile"]
        out.append({"name": "torch.compile speed-up on the recipe (tokens/s on / off)",
                    "value": round(on["tokens_per_sec"] / off["tokens_per_sec"], 3), "unit": "x",
                    "target": None, "passed": None})
        out.append({"name": "torch.compile first step (compile) time", "value": round(on["first_step_s"], 1),
                    "unit": "s", "target": None, "passed": None})
    return out


def print_table(results: list[dict], skipped: list[dict], peak_before: float, peak_after: float) -> None:
    print(f"\nmatmul peak before / after: {peak_before / 1e9:.0f} / {peak_after / 1e9:.0f} GFLOP/s")
    head = (f"{'config':16s}{'device':>7s}{'prec':>6s}{'params':>8s}{'tok/step':>9s}{'steps':>6s}"
            f"{'ms/step':>9s}{'±sd':>6s}{'tok/s':>9s}{'MFU':>7s} | {'data':>6s}{'fwd+bwd':>8s}{'optim':>7s}{'other':>7s}")
    print(head)
    print("-" * len(head))
    for r in results:
        s = r["split_ms"]
        print(f"{r['name']:16s}{r['device']:>7s}{r['precision']:>6s}{r['n_params'] / 1e6:>7.2f}M"
              f"{r['tokens_per_step']:>9d}{r['steps']:>6d}{r['ms_per_step']:>9.1f}{r['ms_per_step_stdev']:>6.1f}"
              f"{r['tokens_per_sec']:>9,.0f}{100 * r['mfu']:>6.1f}% | {s['data']:>6.2f}{s['forward_backward']:>8.1f}"
              f"{s['optimizer']:>7.2f}{s['other']:>7.2f}")
    for r in results:
        if "first_step_s" in r:
            print(f"{r['name']}: first step (torch.compile) {r['first_step_s']:.1f} s")
    for s in skipped:
        print(f"{s['name']}: skipped: {s['reason']}")
    print("(ms columns after | are means of the split steps; other = real step - their sum)")


if __name__ == "__main__":
    main()
