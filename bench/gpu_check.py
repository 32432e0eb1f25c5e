"""GPU check: everything llmtui does on a GPU, exercised on the one in front of you.

    .venv/bin/python bench/gpu_check.py                         # ~6-8 min on one GPU
    .venv/bin/python bench/gpu_check.py --nanogpt ~/nanoGPT     # also nanoGPT's train.py, same GPU
    .venv/bin/python bench/gpu_check.py --dry-run               # CPU, tiny shapes: the same code path

1. Detection: the GPUs NVML sees (engine.planning.hardware) against torch.cuda's
   own view: count, names, compute capability, memory.
2. Training: every GPU preset (presets/*.toml but cpu and the finetune-* ones,
   which download a model) for --steps steps (200) with the preset's micro-batch
   and no accumulation, in fp16 (with GradScaler) and bf16, with AdamW and Muon,
   eager and torch.compile'd. Each run is a real engine Trainer in this process.
   Checks per run: the loss decreases, no non-finite loss, peak
   torch.cuda.max_memory_allocated within 15% of the engine's estimate (its
   parts that are allocations: weights, gradients, optimizer, autocast copies,
   activations, logits); one run per preset resumes from its half-way checkpoint
   and must reproduce the losses of the straight run (exact, or within the
   noise of non-deterministic CUDA kernels, labelled as such).
   Throughput: tokens/s (log intervals after the first, so compile and warm-up
   are left out) and MFU against the GPU's published dense bf16 peak
   (engine.planning.gpu_table; measured when the card is not in the table).
3. nanoGPT (--nanogpt DIR, a clone outside this project): its own train.py on the
   same GPU, shape, batch, steps, dtype and tokens (llmtui's prepared train.bin
   and val.bin), beside llmtui with nanoGPT's architecture (learned positions,
   LayerNorm, GELU, AdamW).

Runs that would pass --budget-s (seconds, 450 by default) are listed as skipped.
--dry-run runs the same code on the CPU with tiny shapes and few steps, two runs of
one preset that take every path (--full and --presets for more): fp16 and bf16 fall
back to what the CPU runs (shown), compile uses torch.compile's "eager"
backend (no C++ toolchain needed), the memory check is n/a. Prints one table and
writes bench/out/gpu_check.json (--json). Exit code 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the engine of this checkout, wherever this is run from
OUT = REPO / "bench" / "out"
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"
if TIKTOKEN_CACHE.is_dir():   # GPU machines are often offline: tiktoken's gpt2 files from ../shared
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))

import torch  # noqa: E402

from llmtui.engine.config.loading import load_config  # noqa: E402
from llmtui.engine.config.presets import preset_names  # noqa: E402
from llmtui.engine.planning import hardware  # noqa: E402
from llmtui.engine.planning.device import matmul_peak_flops  # noqa: E402
from llmtui.engine.planning.estimate import estimate  # noqa: E402
from llmtui.engine.planning.gpu_table import find_gpu  # noqa: E402
from llmtui.engine.training.events import StartEvent, TrainEvent  # noqa: E402
from llmtui.engine.training.trainer import Trainer  # noqa: E402

MEMORY_TOLERANCE = 0.15       # |peak allocated / estimate - 1|
RESUME_NOISE = 1e-3           # relative loss difference still counted as GPU kernel noise
DRY_SHAPE = ["model.n_layer=1", "model.n_head=2", "model.n_kv_head=0", "model.n_embd=32",
             "model.block_size=16", "model.d_ff=0", "training.batch_size=2", 'tokenizer.kind="char"',
             "optimizer.learning_rate=3e-3", "optimizer.embedding_learning_rate=0",
             "optimizer.head_learning_rate=0", "optimizer.gain_learning_rate=0"]
NANOGPT_ARCH = ['model.pos_encoding="learned"', 'model.norm="layernorm"', 'model.mlp="gelu"',
                "model.qk_norm=false", "model.tie_embeddings=true", "model.n_kv_head=0", "model.d_ff=0",
                'optimizer.name="adamw"', 'scheduler.kind="cosine"', "model.dropout=0.0", "model.bias=false"]


@dataclass(frozen=True)
class Case:
    preset: str
    precision: str      # fp16 | bf16
    optimizer: str      # adamw | muon
    compile: bool
    resume: bool = False
    nanogpt_arch: bool = False

    @property
    def label(self) -> str:
        if self.nanogpt_arch:
            return f"{self.preset} nanoGPT-arch {self.precision}"
        return (f"{self.preset} {self.precision} {self.optimizer}"
                f"{' compile' if self.compile else ''}")


def gpu_presets() -> list[str]:
    return [p for p in preset_names() if p != "cpu" and not p.startswith("finetune")]


def plan(presets: list[str], nanogpt: bool, full: bool = True) -> list[Case]:
    """Every preset in each format and optimizer, eager; then compiled; resume checked on
    the first run of each preset. Cheap runs first, so a tight budget still covers every
    preset. Not `full` (--dry-run): two runs a preset that still take every path (bf16 Muon
    eager with the resume check, fp16 AdamW compiled)."""
    cases = []
    for compile_ in (False, True):
        for preset in presets:
            for precision in ("bf16", "fp16"):
                for optimizer in ("muon", "adamw"):
                    first = not compile_ and precision == "bf16" and optimizer == "muon"
                    last = compile_ and precision == "fp16" and optimizer == "adamw"
                    if full or first or last:
                        cases.append(Case(preset, precision, optimizer, compile_, resume=first))
    if nanogpt:
        cases += [Case(p, "bf16", "adamw", False, nanogpt_arch=True) for p in presets]
    return cases


# ---------------------------------------------------------------------------
# detection: NVML against torch.cuda

def detection() -> tuple[list[str], list[dict]]:
    info = hardware.detect()
    lines, checks = [], []
    nv_error = hardware.nvml_error()
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    lines.append(f"NVML: {len(info.gpus)} GPU(s)" + (f" ({nv_error})" if nv_error else "")
                 + f"; torch.cuda: {count} device(s), torch {torch.__version__}, CUDA {torch.version.cuda}")
    usable = {g.torch_index: g for g in info.gpus if g.usable_by_torch}
    ok = len(usable) == count
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        g = usable.get(i)
        if g is None:
            ok = False
            lines.append(f"  cuda:{i} {props.name}: torch only, NVML does not see it")
            continue
        same = (g.name == props.name and g.compute_capability == (props.major, props.minor)
                and abs(g.total_memory_bytes - props.total_memory) <= 0.02 * props.total_memory)
        ok = ok and same
        lines.append(f"  cuda:{i} NVML {g.name} cc {g.compute_capability} {g.total_memory_bytes / 2**30:.1f} GiB"
                     f" driver {g.driver_version} | torch {props.name} cc ({props.major}, {props.minor}) "
                     f"{props.total_memory / 2**30:.1f} GiB, bf16 {g.bf16}" + ("" if same else "  MISMATCH"))
    checks.append({"name": "NVML and torch.cuda see the same GPUs", "passed": ok,
                   "value": f"{len(usable)} vs {count}"})
    return lines, checks


@functools.cache
def bf16_peak(device_type: str) -> tuple[float, str]:
    """The MFU denominator: the GPU's published dense bf16 peak (measured when unknown);
    on the CPU (--dry-run) its measured fp32 matmul peak."""
    if device_type == "cuda":
        name = torch.cuda.get_device_name(0)
        known = find_gpu(name)
        if known is not None and known.tensor_tflops:
            return known.tensor_tflops * 1e12, f"{name}: published dense bf16 peak"
        return matmul_peak_flops("cuda", "bf16", 0), f"{name}: measured bf16 matmul peak"
    return matmul_peak_flops("cpu", "fp32", 0), "CPU: measured fp32 matmul peak (dry run)"


# ---------------------------------------------------------------------------
# one llmtui run

def overrides_for(case: Case, args, out: Path, name: str) -> list[str]:
    steps = args.steps
    o = [f'run.name="{name}"', f'run.out_dir="{out}"', f'run.device="{args.device}"',
         f'training.precision="{case.precision}"', f'optimizer.name="{case.optimizer}"',
         f"training.compile={str(case.compile).lower()}", f"training.max_steps={steps}",
         "training.grad_accum_steps=1", "training.epochs=0", f"logging.every_n_steps={args.log_every}",
         f"eval.every_n_steps={steps}", f"eval.max_batches={args.eval_batches}", "eval.sample_tokens=0",
         f"checkpoint.every_n_steps={steps // 2}", f"scheduler.warmup_steps={max(1, steps // 10)}",
         "training.early_stopping=false", f'data.prepared_dir="{args.data_dir}"']
    if args.dry_run:
        o += DRY_SHAPE
    if case.nanogpt_arch:
        o += NANOGPT_ARCH
    return o


def train(cfg, resume_from=None) -> tuple[Trainer, list, int | None]:
    events: list = []
    trainer = Trainer(cfg, resume_from=resume_from, listeners=[events.append])
    trainer.plan()
    setup = trainer.setup()        # the MFU matmul probe runs here: not part of the run's peak
    if setup.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    trainer.run()
    peak = torch.cuda.max_memory_allocated() if setup.device.type == "cuda" else None
    return trainer, events, peak


def run_case(case: Case, args, out: Path) -> dict:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", case.label)
    cfg = load_config(case.preset, overrides_for(case, args, out, name))
    started = time.perf_counter()
    trainer, events, peak = train(cfg)
    setup = trainer.setup_done
    start = next(e for e in events if isinstance(e, StartEvent))
    logs = [e for e in events if isinstance(e, TrainEvent)]
    losses = {e.step: e.loss for e in logs}
    later = logs[1:] or logs
    tps = sum(e.tokens_per_sec for e in later) / len(later)
    peak_flops, _ = bf16_peak(setup.device.type)
    row = {"case": case.label, "preset": case.preset, "asked": case.precision, "ran": start.precision,
           "optimizer": case.optimizer, "compile": case.compile, "nanogpt_arch": case.nanogpt_arch,
           "device": start.device, "params": start.n_params, "tokens_per_step": start.tokens_per_step,
           "first_loss": logs[0].loss, "last_loss": logs[-1].loss, "tokens_per_sec": tps,
           "mfu": setup.flops_per_token * tps / peak_flops, "wall_s": time.perf_counter() - started,
           "grad_scaler": setup.scaler.is_enabled(), "data_dir": start.data_dir}
    row["finite"] = all(math.isfinite(v) for v in losses.values()) and trainer.result.stop_reason == "max_steps"
    row["decreases"] = row["finite"] and row["last_loss"] < row["first_loss"] - args.min_drop
    est = estimate(setup.config, setup.gpt_config.vocab_size, hardware.detect())
    allocations = est.memory_total - est.memory.get("runtime", 0) - est.memory.get("allocator", 0)
    row["memory_estimate_mb"] = allocations / 2**20
    row["memory_peak_mb"] = None if peak is None else peak / 2**20
    row["memory_ok"] = None if peak is None else abs(peak / allocations - 1) <= MEMORY_TOLERANCE
    del trainer, setup
    if case.resume:
        row["resume"] = resume_check(cfg, out / name, losses, args)
    return row


def resume_check(cfg, run_dir: Path, straight: dict[int, float], args) -> dict:
    """Resume a copy of the run from its half-way checkpoint; its losses must be the
    straight run's."""
    half = args.steps // 2
    copy = run_dir.with_name(run_dir.name + "-resumed")
    shutil.copytree(run_dir, copy)
    cfg.run.name = copy.name
    _, events, _ = train(cfg, resume_from=copy / f"step_{half}")
    again = {e.step: e.loss for e in events if isinstance(e, TrainEvent)}
    common = sorted(set(again) & {s for s in straight if s > half})
    diffs = [abs(again[s] - straight[s]) / max(abs(straight[s]), 1e-12) for s in common]
    worst = max(diffs, default=float("nan"))
    exact = bool(common) and all(again[s] == straight[s] for s in common)
    return {"steps_compared": common, "max_rel_diff": worst, "exact": exact,
            "passed": exact or (bool(common) and worst <= RESUME_NOISE)}


# ---------------------------------------------------------------------------
# nanoGPT's own train.py

def run_nanogpt(case: Case, args, llmtui_row: dict, out: Path) -> dict:
    """nanoGPT's train.py on llmtui's prepared tokens of this preset, same shape and batch."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", case.label)
    cfg = load_config(case.preset, overrides_for(case, args, out, name))
    data_dir = Path(llmtui_row["data_dir"])
    nano_data = out / f"nanogpt-data-{case.preset}"
    nano_data.mkdir(parents=True, exist_ok=True)
    for f in ("train.bin", "val.bin"):
        shutil.copyfile(data_dir / f, nano_data / f)
    m, t = cfg.model, cfg.training
    dtype = {"bf16": "bfloat16", "fp16": "float16"}[llmtui_row["ran"]] if llmtui_row["ran"] != "fp32" else "float32"
    cmd = [sys.executable, "train.py", f"--dataset={nano_data}", f"--out_dir={out / ('nanogpt-' + name)}",
           f"--device={args.device}", f"--dtype={dtype}", "--compile=False", f"--n_layer={m.n_layer}",
           f"--n_head={m.n_head}", f"--n_embd={m.n_embd}", f"--block_size={m.block_size}",
           f"--batch_size={t.batch_size}", "--gradient_accumulation_steps=1", "--dropout=0.0", "--bias=False",
           f"--max_iters={args.steps}", f"--lr_decay_iters={args.steps}", f"--warmup_iters={max(1, args.steps // 10)}",
           f"--learning_rate={cfg.optimizer.learning_rate}", f"--min_lr={cfg.scheduler.min_learning_rate}",
           f"--eval_interval={args.steps * 10}", "--eval_iters=1", "--log_interval=1",
           "--always_save_checkpoint=False", "--wandb_log=False", "--init_from=scratch"]
    proc = subprocess.run(cmd, cwd=args.nanogpt, capture_output=True, text=True, timeout=900)
    iters = [(int(i), float(loss), float(ms)) for i, loss, ms in
             re.findall(r"iter (\d+): loss ([\d.]+), time ([\d.]+)ms", proc.stdout)]
    if proc.returncode != 0 or not iters:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
    timed = [ms for i, _, ms in iters if i >= args.log_every] or [ms for _, _, ms in iters]
    tps = t.batch_size * m.block_size * 1000 / (sum(timed) / len(timed))
    return {"tokens_per_sec": tps, "first_loss": iters[0][1], "last_loss": iters[-1][1],
            "ratio": llmtui_row["tokens_per_sec"] / tps}


# ---------------------------------------------------------------------------

def fmt_row(r: dict) -> str:
    if "skipped" in r:
        return f"{r['case']:<34} skipped ({r['skipped']})"
    if "error" in r:
        return f"{r['case']:<34} FAILED: {r['error']}"
    ran = r["ran"] + ("+scaler" if r["grad_scaler"] else "") + ("" if r["ran"] == r["asked"] else f" ({r['asked']} asked)")
    mem = ("n/a" if r["memory_peak_mb"] is None else
           f"{r['memory_peak_mb']:.0f}/{r['memory_estimate_mb']:.0f} MB {'ok' if r['memory_ok'] else 'OFF'}")
    resume = r.get("resume")
    res = "-" if resume is None else ("exact" if resume["exact"] else
                                      f"{'~' if resume['passed'] else 'DIFF'} {resume['max_rel_diff']:.1e}")
    loss = f"{r['first_loss']:.2f}->{r['last_loss']:.2f}" + ("" if r["decreases"] else " NO")
    line = (f"{r['case']:<34}{ran:<22}{loss:<16}{'yes' if r['finite'] else 'NO':<7}{res:<13}{mem:<22}"
            f"{r['tokens_per_sec']:>11,.0f}{100 * r['mfu']:>7.1f}%")
    if "nanogpt" in r:
        n = r["nanogpt"]
        line += (f"   nanoGPT: {n['tokens_per_sec']:,.0f} tok/s ({n['ratio']:.2f}x), loss "
                 f"{n['first_loss']:.2f}->{n['last_loss']:.2f}" if "error" not in n else f"   nanoGPT failed: {n['error']}")
    return line


def row_checks(r: dict) -> list[tuple[str, bool]]:
    if "skipped" in r:
        return []
    if "error" in r:
        return [(f"{r['case']}: runs", False)]
    out = [(f"{r['case']}: loss decreases", r["decreases"]), (f"{r['case']}: no NaN", r["finite"])]
    if r["memory_ok"] is not None:
        out.append((f"{r['case']}: peak memory within {MEMORY_TOLERANCE:.0%} of the estimate", r["memory_ok"]))
    if r.get("resume"):
        out.append((f"{r['case']}: resume reproduces the losses", r["resume"]["passed"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, few steps (the tests run this)")
    p.add_argument("--steps", type=int, help="steps per run (200; --dry-run: 8)")
    p.add_argument("--presets", nargs="*", help="GPU presets to train (all of them; --dry-run: rtx4060)")
    p.add_argument("--full", action="store_true", help="with --dry-run: the whole matrix, not two runs a preset")
    p.add_argument("--nanogpt", type=Path, help="a nanoGPT clone: also run its train.py")
    p.add_argument("--budget-s", type=float, default=450.0, help="skip runs that would start after this")
    p.add_argument("--data-dir", type=Path, help="prepared-data folder (default: a temporary one)")
    p.add_argument("--json", type=Path, default=OUT / "gpu_check.json", help="where the report goes")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile runs")
    args = p.parse_args(argv)
    args.steps = args.steps or (6 if args.dry_run else 200)
    # a divisor of the half-way step: the resumed run logs the same intervals as the straight one
    args.log_every = 1 if args.dry_run else math.gcd(20, args.steps // 2) or 1
    args.eval_batches = 2 if args.dry_run else 10
    args.min_drop = 0.0 if args.dry_run else 0.1
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device here: run with --dry-run to check the code path on the CPU", file=sys.stderr)
        return 2
    args.device = "cpu" if args.dry_run else "cuda"
    presets = args.presets or (["rtx4060"] if args.dry_run else gpu_presets())
    unknown = sorted(set(presets) - set(preset_names()))
    if unknown:
        print(f"--presets: no preset named {', '.join(unknown)} (there are {', '.join(gpu_presets())})",
              file=sys.stderr)
        return 2
    if args.nanogpt is not None and not (args.nanogpt / "train.py").is_file():
        print(f"--nanogpt {args.nanogpt}: no train.py there (a nanoGPT clone is needed)", file=sys.stderr)
        return 2
    if args.dry_run:   # compile's code path without a C++ toolchain: dynamo with the eager backend
        torch.compile = functools.partial(torch.compile, backend="eager")
    torch.manual_seed(0)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="llmtui-gpu-check-"))
    args.data_dir = (args.data_dir or work / "data").resolve()
    lines, checks = detection()
    cases = [c for c in plan(presets, args.nanogpt is not None, full=args.full or not args.dry_run)
             if not (args.no_compile and c.compile)]
    rows = []
    try:
        for case in cases:
            if time.perf_counter() - started > args.budget_s:
                rows.append({"case": case.label, "skipped": f"past --budget-s {args.budget_s:g}"})
                continue
            try:
                row = run_case(case, args, work)
                if case.nanogpt_arch:
                    row["nanogpt"] = run_nanogpt(case, args, row, work)
            except Exception as exc:  # noqa: BLE001 - one failed run is a row, not the end of the check
                row = {"case": case.label, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            rows.append(row)
            print(fmt_row(row), flush=True)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak, peak_label = bf16_peak(args.device)
    print()
    print("\n".join(lines))
    print(f"MFU against {peak / 1e12:.2f} TFLOP/s ({peak_label}); {args.steps} steps a run"
          f"{' (dry run: CPU, tiny shapes)' if args.dry_run else ''}")
    print(f"{'run':<34}{'precision':<22}{'loss':<16}{'finite':<7}{'resume':<13}{'peak/est. memory':<22}"
          f"{'tokens/s':>11}{'MFU':>8}")
    for row in rows:
        print(fmt_row(row))
    for r in rows:
        checks += [{"name": n, "passed": ok} for n, ok in row_checks(r)]
    failed = [c for c in checks if not c["passed"]]
    skipped = sum("skipped" in r for r in rows)
    print(f"checks: {len(checks) - len(failed)} of {len(checks)} passed"
          + (f", {skipped} run(s) skipped (time budget)" if skipped else "")
          + f"; {time.perf_counter() - started:.0f} s")
    for c in failed:
        print(f"  FAILED {c['name']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"detection": lines, "peak_flops": peak,
                                                    "peak": peak_label, "rows": rows, "checks": checks},
                                                   indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
