"""nanoGPT's README CPU recipe, trained by llmtui (and by nanoGPT, if given).

    python bench/recipe.py                       # llmtui only
    python bench/recipe.py --nanogpt ~/nanoGPT   # also time a nanoGPT checkout, same run

Reports, as a table and as JSON (bench/out/recipe.json): ms per step (mean,
eval steps and the first 10 steps excluded), tokens/s, MFU against a float32 matmul peak measured in
this same run, val loss at steps 500/1000/1500/2000, wall time and peak RSS,
and pass/fail checks against nanoGPT (bench/README.md describes them).
Both trainers run one after the other as child processes, so neither slows
the other; compare ratios, since the machine's speed drifts between sessions.
nanoGPT needs its data prepared first (data/shakespeare_char/prepare.py).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "bench" / "nanogpt_recipe.toml"
OUT = REPO / "bench" / "out"
CHECK_STEPS = (500, 1000, 1500, 2000)
NANOGPT_MFU = 0.41       # nanoGPT on this recipe, ../shared/BASELINES.md
VAL_LOSS_NOISE = 0.05    # |llmtui - nanoGPT| val loss counted as the same (our choice)
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                "--n_layer=4", "--n_head=4", "--n_embd=128", "--max_iters=2000",
                "--lr_decay_iters=2000", "--dropout=0.0"]


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times) / 1e9


_MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:]).returncode; "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
            "sys.exit(rc)")


def run_child(cmd: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """Run a command; return (wall seconds, its peak RSS in MB). A fresh
    intermediate process reads the peak, so earlier children do not count."""
    rss_file = log.with_suffix(".rss")
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(rss_file), *cmd], cwd=cwd,
                              stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed with exit code {proc.returncode}; see {log}")
    return wall, int(rss_file.read_text()) / 1024


def run_llmtui(steps: int, data: Path) -> dict:
    overrides = ["--override", f"training.max_steps={steps}", "--override", f'data.source="{data}"',
                 "--overwrite", "--plain"]
    log = OUT / "llmtui.log"
    wall, rss = run_child([sys.executable, "-m", "llmtui", "--run", str(RECIPE), *overrides], REPO, log)
    events = [json.loads(line) for line in
              (REPO / "bench/out/runs/nanogpt-recipe/metrics.jsonl").read_text().splitlines()]
    train = [e for e in events if e["kind"] == "train"]
    start = next(e for e in events if e["kind"] == "start")
    # mean over every step after the first log interval (warm-up); eval time is excluded
    # by the trainer. Means, not medians: a user waits for the slow steps too.
    later = train[1:]
    ms = sum(e["ms_per_step"] * (e["step"] - prev["step"]) for prev, e in zip(train, later)) / (
        later[-1]["step"] - train[0]["step"])
    tokens_per_step = start["tokens_per_step"]
    val = {e["step"]: e["val_loss"] for e in events if e["kind"] == "eval"}
    return {"ms_per_step": ms, "tokens_per_sec": tokens_per_step * 1000 / ms, "val_loss": val,
            "wall_s": wall, "peak_rss_mb": rss, "n_params": start["n_params"],
            "n_params_non_embedding": start["n_params_non_embedding"]}


def run_nanogpt(directory: Path, steps: int) -> dict:
    log = OUT / "nanogpt.log"
    args = [a if not a.startswith(("--max_iters", "--lr_decay_iters")) else a.split("=")[0] + f"={steps}"
            for a in NANOGPT_ARGS]
    wall, rss = run_child([sys.executable, "train.py", *args], directory, log)
    text = log.read_text()
    iters = [(int(i), float(t)) for i, t in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", text)]
    # eval iterations and the first 10 (start-up, warm-up) are excluded
    ms = statistics.mean(t for i, t in iters if i % 250 and i > 10)
    val = {int(s): float(v) for s, v in re.findall(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)", text)}
    return {"ms_per_step": ms, "tokens_per_sec": 12 * 64 * 1000 / ms, "val_loss": val,
            "wall_s": wall, "peak_rss_mb": rss}


def mfu(result: dict, n_params_non_embedding: int, peak_gflops: float) -> float:
    flops_per_token = 6 * n_params_non_embedding + 12 * 4 * 64 * 128
    return flops_per_token * result["tokens_per_sec"] / (peak_gflops * 1e9)


def checks(results: dict) -> list[dict]:
    """Pass/fail rows for bench/run_all.py's summary (see bench/README.md)."""
    mine = results["llmtui"]
    if "nanogpt" not in results:
        return [{"name": "recipe MFU (whole run) vs nanoGPT's (BASELINES.md)", "value": round(mine["mfu"], 3),
                 "unit": "", "target": f">= {NANOGPT_MFU}", "passed": mine["mfu"] >= NANOGPT_MFU}]
    theirs = results["nanogpt"]
    ratio = mine["tokens_per_sec"] / theirs["tokens_per_sec"]
    rows = [{"name": "recipe tokens/s, llmtui / nanoGPT (same session)", "value": round(ratio, 3),
             "unit": "x", "target": "> 1", "passed": ratio > 1}]
    for step in sorted(set(mine["val_loss"]) & set(theirs["val_loss"]) - {0}):
        diff = mine["val_loss"][step] - theirs["val_loss"][step]
        rows.append({"name": f"recipe val loss at step {step}, llmtui - nanoGPT", "value": round(diff, 3),
                     "unit": "", "target": f"within ±{VAL_LOSS_NOISE}", "passed": abs(diff) <= VAL_LOSS_NOISE})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout with shakespeare_char prepared")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "tinyshakespeare.txt")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)

    peak_before = matmul_peak_gflops()
    results = {"llmtui": run_llmtui(args.steps, args.data.resolve())}
    if args.nanogpt:
        results["nanogpt"] = run_nanogpt(args.nanogpt.resolve(), args.steps)
    peak_after = matmul_peak_gflops()
    peak = statistics.mean([peak_before, peak_after])
    n = results["llmtui"]["n_params_non_embedding"]
    for r in results.values():
        r["mfu"] = mfu(r, n, peak)

    print(f"float32 matmul peak (1024^2): {peak_before:.0f} / {peak_after:.0f} GFLOP/s before / after")
    header = f"{'':10s}{'ms/step':>9s}{'tok/s':>9s}{'MFU':>7s}" + "".join(
        f"{'val@' + str(s):>10s}" for s in CHECK_STEPS) + f"{'wall s':>8s}{'RSS MB':>8s}"
    print(header)
    for name, r in results.items():
        vals = "".join(f"{r['val_loss'].get(s, float('nan')):>10.4f}" for s in CHECK_STEPS)
        print(f"{name:10s}{r['ms_per_step']:>9.1f}{r['tokens_per_sec']:>9.0f}{100 * r['mfu']:>6.1f}%"
              f"{vals}{r['wall_s']:>8.1f}{r['peak_rss_mb']:>8.0f}")
    if "nanogpt" in results:
        a, b = results["llmtui"], results["nanogpt"]
        print(f"llmtui / nanoGPT tokens/s: {a['tokens_per_sec'] / b['tokens_per_sec']:.2f}x; "
              "val loss difference: " + ", ".join(
                  f"{s}: {a['val_loss'][s] - b['val_loss'][s]:+.3f}"
                  for s in CHECK_STEPS if s in a["val_loss"] and s in b["val_loss"]))
    report = {"matmul_peak_gflops": [peak_before, peak_after], "results": results, "checks": checks(results)}
    (OUT / "recipe.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {OUT / 'recipe.json'}")


if __name__ == "__main__":
    main()
