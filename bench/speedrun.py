"""Speedrun: llmtui's `cpu` preset against nanoGPT's README CPU recipe, same data, same machine.

    python bench/speedrun.py                        # 3 runs of each, about 15 minutes on a quiet machine
    python bench/speedrun.py --runs 5 --nanogpt ~/nanoGPT
    python bench/speedrun.py --quick                # about a minute: checks the pipeline, no verdict

Both trainers train on tinyshakespeare, char tokens: nanoGPT with its README CPU recipe
(config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0), llmtui with `llmtui --run cpu` on the same file. Runs
alternate (nanoGPT, llmtui, nanoGPT, ...) as child processes, so both see the same machine.

Clocks: training time only. Each trainer's evaluations and checkpoint writes are taken out:
nanoGPT's per-iteration times (log_interval=1) with the iterations that evaluate and save
replaced by the median iteration; llmtui's ms_per_step, which excludes them already. Start-up
(imports, data loading) is not counted for either.

Loss: every snapshot (nanoGPT's checkpoint at each of its evaluations, kept by wrapping its
torch.save; llmtui's step_N checkpoints) is evaluated afterwards by the same code on the FULL
validation split (nanoGPT's: the last 10% of the characters): every token predicted once, in
consecutive windows of the model's own context length.

Reports, as medians over the runs: nanoGPT's time for its 2000 iterations (T) and its loss there,
the time each trainer takes to reach val loss 1.886 (interpolated between snapshots), and the
loss each reaches at time T. The bar (issue 12): llmtui reaches 1.886 in at most T/2, and its
loss at T is at most 1.75. Writes bench/out/speedrun.json and bench/out/speedrun.png.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
TARGET = 1.886            # nanoGPT's recipe at 2000 iterations (its README, ../shared/BASELINES.md)
BAR_LOSS = 1.75           # llmtui's loss at nanoGPT's full time must be at most this
NANOGPT_ITERS = 2000
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                "--n_layer=4", "--n_head=4", "--n_embd=128", f"--max_iters={NANOGPT_ITERS}",
                f"--lr_decay_iters={NANOGPT_ITERS}", "--dropout=0.0",
                # only to keep a snapshot at every evaluation: training is unchanged
                "--always_save_checkpoint=True"]
SNAPSHOT_EVERY = 100      # llmtui steps between snapshots (step_N checkpoints)


# ---------------------------------------------------------------------------
# running nanoGPT

def nanogpt_child(nanogpt: Path, out_dir: Path, args: list[str]) -> None:
    """Run nanoGPT's train.py unchanged, keeping every checkpoint it saves (it overwrites
    ckpt.pt at each evaluation) as ckpt_<iter>.pt."""
    import runpy

    import torch

    save = torch.save

    def keep_all(obj, f, *a, **kw):
        if isinstance(obj, dict) and "iter_num" in obj:
            f = os.path.join(os.path.dirname(str(f)), f"ckpt_{obj['iter_num']}.pt")
        return save(obj, f, *a, **kw)

    torch.save = keep_all
    os.chdir(nanogpt)
    sys.argv = ["train.py", *args, f"--out_dir={out_dir}"]
    sys.path.insert(0, str(nanogpt))
    runpy.run_path("train.py", run_name="__main__")


def run_nanogpt(nanogpt: Path, out_dir: Path, iters: int, eval_interval: int | None) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    args = [a if not a.startswith(("--max_iters", "--lr_decay_iters")) else a.split("=")[0] + f"={iters}"
            for a in NANOGPT_ARGS]
    if iters != NANOGPT_ITERS:   # --quick: the schedule of the full recipe, stopped early
        args = [a if not a.startswith("--lr_decay_iters") else f"--lr_decay_iters={NANOGPT_ITERS}"
                for a in args]
    if eval_interval:
        args.append(f"--eval_interval={eval_interval}")
    log = out_dir / "train.log"
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, __file__, "--nanogpt-child", str(nanogpt), str(out_dir), *args],
                              stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"nanoGPT failed (exit {proc.returncode}); see {log}")
    text = log.read_text()
    dt = {int(i): float(t) / 1000 for i, t in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", text)}
    evals = {int(s) for s in re.findall(r"step (\d+): train loss", text)}
    median = statistics.median(t for i, t in dt.items() if i not in evals)
    # iteration i's time covers the evaluation (and checkpoint) at its start: replace those
    step_time = {i: (median if i in evals else t) for i, t in dt.items()}
    snapshots = []
    for path in sorted(out_dir.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        k = int(path.stem.split("_")[1])          # k updates done (iterations 0..k-1)
        snapshots.append({"step": k, "train_seconds": sum(step_time[i] for i in range(k)), "path": str(path)})
    return {"trainer": "nanogpt", "snapshots": snapshots, "wall_seconds": wall,
            "train_seconds": sum(step_time[i] for i in range(iters)),
            "median_step_ms": 1000 * median, "evaluations_removed": len(evals & set(dt))}


# ---------------------------------------------------------------------------
# running llmtui

def run_llmtui(preset: str, out_dir: Path, prepared: Path, max_steps: int | None) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    overrides = [f'data.source="{DATA}"', f'data.prepared_dir="{prepared}"', f'run.out_dir="{out_dir}"',
                 'run.name="speedrun"', 'run.device="cpu"', f"checkpoint.every_n_steps={SNAPSHOT_EVERY}",
                 "checkpoint.keep_last=100000", f"logging.every_n_steps={SNAPSHOT_EVERY // 4}",
                 "eval.every_n_steps=1000000000", "eval.max_batches=1", "training.save_best=false",
                 "eval.sample_tokens=0", 'logging.progress="plain"']
    if max_steps:
        overrides.append(f"training.max_steps={max_steps}")
    cmd = [sys.executable, "-m", "llmtui", "--run", preset, "--overwrite"]
    for o in overrides:
        cmd += ["-o", o]
    out_dir.mkdir(parents=True)
    log = out_dir / "train.log"
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"llmtui failed (exit {proc.returncode}); see {log}")
    run_dir = out_dir / "speedrun"
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    trains = [e for e in events if e["kind"] == "train"]
    # ms_per_step is the mean over the steps since the previous line, evaluations and
    # checkpoint writes excluded: the training clock at each logged step
    clock, previous, at_step = 0.0, 0, {0: 0.0}
    for e in trains:
        clock += e["ms_per_step"] / 1000 * (e["step"] - previous)
        previous = e["step"]
        at_step[e["step"]] = clock
    checkpoints = {int(p.name.split("_")[1]): p for p in run_dir.glob("step_*")}
    steps = trains[-1]["step"]
    checkpoints.setdefault(steps, run_dir / "last")   # a length that is no multiple of the interval
    snapshots = [{"step": k, "train_seconds": at_step[k], "path": str(path)}
                 for k, path in sorted(checkpoints.items())]
    start_event = next(e for e in events if e["kind"] == "start")
    return {"trainer": "llmtui", "snapshots": snapshots, "wall_seconds": wall, "train_seconds": clock,
            "median_step_ms": 1000 * clock / steps, "n_params": start_event["n_params"],
            "optimizer_flops_per_step": start_event.get("optimizer_flops_per_step", 0)}


# ---------------------------------------------------------------------------
# the same full-split evaluation for both

def val_text() -> str:
    text = DATA.read_text(encoding="utf-8")
    return text[int(len(text) * 0.9):]          # nanoGPT's split (data/shakespeare_char/prepare.py)


def full_split_loss(model, ids: np.ndarray, block_size: int, batch: int = 32) -> float:
    """Mean next-token cross-entropy over every token of `ids` after the first, each predicted
    once: consecutive windows of block_size tokens, the last one shifted back to end at the
    split's end (counting only the tokens not yet counted)."""
    import torch
    import torch.nn.functional as F

    n = len(ids)
    starts = list(range(0, n - 1 - block_size + 1, block_size))
    covered = starts[-1] + block_size if starts else 0
    windows = [(s, 0) for s in starts]
    if covered < n - 1:                            # the remainder, in one last full window
        windows.append((n - 1 - block_size, block_size - (n - 1 - covered)))
    total, count = 0.0, 0
    tokens = torch.from_numpy(ids.astype(np.int64))
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            chunk = windows[i:i + batch]
            x = torch.stack([tokens[s:s + block_size] for s, _ in chunk])
            y = torch.stack([tokens[s + 1:s + block_size + 1] for s, _ in chunk])
            logits, _ = model(x, y)
            losses = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                     reduction="none").view(len(chunk), block_size)
            for row, (_, skip) in enumerate(chunk):
                total += losses[row, skip:].double().sum().item()
                count += block_size - skip
    assert count == n - 1, (count, n)
    return total / count


def load_nanogpt(nanogpt: Path, path: str):
    import torch

    sys.path.insert(0, str(nanogpt))
    from model import GPT, GPTConfig  # nanoGPT's model.py, from the checkout

    ckpt = torch.load(path, map_location="cpu", weights_only=True)   # tensors and plain values only
    with contextlib.redirect_stdout(io.StringIO()):     # its "number of parameters" line
        model = GPT(GPTConfig(**ckpt["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.eval(), ckpt["model_args"]["block_size"]


def evaluate_snapshots(result: dict, nanogpt: Path, text: str) -> None:
    import torch

    torch.set_num_threads(2)
    if result["trainer"] == "nanogpt":
        chars = sorted(set(DATA.read_text(encoding="utf-8")))   # nanoGPT's vocabulary
        stoi = {c: i for i, c in enumerate(chars)}
        ids = np.array([stoi[c] for c in text], dtype=np.int64)
        for snap in result["snapshots"]:
            model, block = load_nanogpt(nanogpt, snap["path"])
            snap["val_loss"] = full_split_loss(model, ids, block)
    else:
        from llmtui.engine.training.loader import load_checkpoint_model
        for snap in result["snapshots"]:
            loaded = load_checkpoint_model(Path(snap["path"]), device="cpu")
            ids = np.asarray(loaded.tokenizer.encode(text), dtype=np.int64)
            snap["val_loss"] = full_split_loss(loaded.model, ids, loaded.model.config.block_size)


# ---------------------------------------------------------------------------
# reading the curves

def time_to(snapshots: list[dict], target: float) -> float | None:
    """Training seconds at which the loss first reaches `target` (linear between snapshots)."""
    points = [(0.0, float("inf"))] + [(s["train_seconds"], s["val_loss"]) for s in snapshots]
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if l1 <= target:
            if l0 == float("inf"):
                return t1
            return t0 + (t1 - t0) * (l0 - target) / (l0 - l1)
    return None


def loss_at(snapshots: list[dict], seconds: float) -> float:
    """The loss of the model a trainer had after `seconds` of training: interpolated between
    snapshots; after its last one, the last (the run had finished)."""
    points = [(s["train_seconds"], s["val_loss"]) for s in snapshots]
    if seconds >= points[-1][0]:
        return points[-1][1]
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if t0 <= seconds <= t1:
            return l0 + (l1 - l0) * (seconds - t0) / (t1 - t0)
    return points[0][1]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def other_load() -> float:
    """Share of the CPUs other processes used over the last second (a noisy machine warning)."""
    import psutil
    mine = psutil.Process()
    before = psutil.cpu_times()
    own = mine.cpu_times()
    time.sleep(1.0)
    after, own_after = psutil.cpu_times(), mine.cpu_times()
    busy = (after.user + after.system) - (before.user + before.system)
    busy -= (own_after.user + own_after.system) - (own.user + own.system)
    return max(0.0, busy / psutil.cpu_count())


def plot(report: dict, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:   # the figures are in speedrun.json and printed; the plot is extra
        print("no plot: matplotlib is not installed (pip install -e '.[bench]')", flush=True)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"nanogpt": "tab:gray", "llmtui": "tab:blue"}
    for r in report["runs"]:
        s = r["snapshots"]
        label = f"{r['trainer']} (run {r['index'] + 1})"
        ax.plot([x["train_seconds"] for x in s], [x["val_loss"] for x in s], marker=".",
                color=colors[r["trainer"]], alpha=0.4 + 0.6 / (1 + r["index"]), label=label)
    t = report["summary"]["nanogpt_seconds"]
    ax.axhline(TARGET, color="tab:red", ls="--", lw=1, label=f"val loss {TARGET}")
    ax.axhline(BAR_LOSS, color="tab:green", ls="--", lw=1, label=f"bar at T: {BAR_LOSS}")
    if t:
        ax.axvline(t, color="black", ls=":", lw=1, label=f"T = nanoGPT's {report['nanogpt_iters']} iters ({t:.0f} s)")
        ax.axvline(t / 2, color="black", ls="-.", lw=1, label="T / 2")
    ax.set_xlabel("training seconds (evaluation and start-up excluded)")
    ax.set_ylabel("val loss, full validation split")
    ax.set_ylim(1.4, 2.8)
    ax.set_title("tinyshakespeare (char): llmtui cpu preset vs nanoGPT README CPU recipe")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--nanogpt-child":
        nanogpt_child(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs of each trainer (medians are reported)")
    p.add_argument("--nanogpt", type=Path, default=Path("/tmp/nanogpt"), help="a nanoGPT checkout")
    p.add_argument("--preset", default="cpu", help="llmtui preset or config file (default: cpu)")
    p.add_argument("--quick", action="store_true", help="one short run of each (pipeline check, no verdict)")
    args = p.parse_args()
    nanogpt = args.nanogpt.resolve()
    prepared_ok = all((nanogpt / "data" / "shakespeare_char" / f).is_file() for f in ("train.bin", "val.bin", "meta.pkl"))
    if not (nanogpt / "train.py").is_file() or not prepared_ok:
        sys.exit(f"{nanogpt}: needs a nanoGPT checkout with data/shakespeare_char prepared: copy "
                 f"{DATA} to {nanogpt}/data/shakespeare_char/input.txt and run prepare.py there")
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "speedrun"
    runs = 1 if args.quick else args.runs
    iters = 100 if args.quick else NANOGPT_ITERS
    load_before = other_load()
    results = []
    for i in range(runs):
        print(f"run {i + 1}/{runs}: nanoGPT ...", flush=True)
        r = run_nanogpt(nanogpt, work / f"nanogpt_{i}", iters, 50 if args.quick else None)
        results.append(r | {"index": i})
        print(f"  {r['train_seconds']:.1f} s training ({r['median_step_ms']:.1f} ms/iter), "
              f"{r['wall_seconds']:.1f} s wall", flush=True)
        print(f"run {i + 1}/{runs}: llmtui ({args.preset}) ...", flush=True)
        r = run_llmtui(args.preset, work / f"llmtui_{i}", work / "data", 100 if args.quick else None)
        results.append(r | {"index": i})
        print(f"  {r['train_seconds']:.1f} s training ({r['median_step_ms']:.1f} ms/step), "
              f"{r['wall_seconds']:.1f} s wall", flush=True)
    load_after = other_load()
    print("evaluating every snapshot on the full validation split ...", flush=True)
    text = val_text()
    for r in results:
        evaluate_snapshots(r, nanogpt, text)

    by = {name: [r for r in results if r["trainer"] == name] for name in ("nanogpt", "llmtui")}
    t_full = median(r["train_seconds"] for r in by["nanogpt"])
    rows = {}
    for name, rs in by.items():
        rows[name] = {"time_to_target": [time_to(r["snapshots"], TARGET) for r in rs],
                      "loss_at_T": [loss_at(r["snapshots"], t_full) for r in rs],
                      "loss_at_T_half": [loss_at(r["snapshots"], t_full / 2) for r in rs],
                      "final_loss": [r["snapshots"][-1]["val_loss"] for r in rs],
                      "train_seconds": [r["train_seconds"] for r in rs],
                      "median_step_ms": [r["median_step_ms"] for r in rs]}
    summary = {"nanogpt_seconds": t_full,
               **{f"{n}_{k}": median(v) for n, row in rows.items() for k, v in row.items()}}
    ttt = summary["llmtui_time_to_target"]
    passed_time = ttt is not None and t_full is not None and ttt <= t_full / 2
    passed_loss = summary["llmtui_loss_at_T"] is not None and summary["llmtui_loss_at_T"] <= BAR_LOSS
    noisy = max(load_before, load_after) > 0.10
    report = {"quick": args.quick, "nanogpt_iters": iters, "runs": results, "per_run": rows, "summary": summary,
              "other_cpu_load": [load_before, load_after], "target": TARGET, "bar_loss": BAR_LOSS,
              "checks": [] if args.quick else [
                  {"name": "llmtui time to val 1.886 / nanoGPT 2000-iteration time", "unit": "x",
                   "value": round(ttt / t_full, 3) if ttt else None, "target": "<= 0.5", "passed": passed_time},
                  {"name": "llmtui val loss at nanoGPT's 2000-iteration time", "unit": "",
                   "value": round(summary["llmtui_loss_at_T"], 4), "target": f"<= {BAR_LOSS}",
                   "passed": passed_loss}]}
    (OUT / "speedrun.json").write_text(json.dumps(report, indent=1))
    plot(report, OUT / "speedrun.png")

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)
    print(f"\nmedians of {runs} run(s) each; training seconds (evaluation, checkpoints and start-up "
          f"excluded); val loss on the full validation split ({len(text):,} characters)")
    print(f"{'':9s}{'ms/step':>9s}{'train s':>9s}{'final loss':>12s}{'s to ' + str(TARGET):>12s}"
          f"{'loss at T/2':>13s}{'loss at T':>11s}")
    for name in ("nanogpt", "llmtui"):
        row = rows[name]
        print(f"{name:9s}{fmt(median(row['median_step_ms']), '.1f'):>9s}{fmt(median(row['train_seconds']), '.1f'):>9s}"
              f"{fmt(median(row['final_loss'])):>12s}{fmt(median(row['time_to_target']), '.1f'):>12s}"
              f"{fmt(median(row['loss_at_T_half'])):>13s}{fmt(median(row['loss_at_T'])):>11s}")
    for name in ("nanogpt", "llmtui"):
        row = rows[name]
        print(f"  {name} per run: s to {TARGET}: " + ", ".join(fmt(v, ".1f") for v in row["time_to_target"])
              + "; loss at T: " + ", ".join(fmt(v) for v in row["loss_at_T"]))
    print(f"T = nanoGPT's {iters} iterations = {fmt(t_full, '.1f')} s (per run: "
          + ", ".join(fmt(v, ".1f") for v in rows["nanogpt"]["train_seconds"]) + ")")
    if noisy:
        print(f"note: other processes used {100 * max(load_before, load_after):.0f}% of the CPUs; timings are noisy")
    if args.quick:
        print("quick mode: pipeline checked, no verdict")
    else:
        print(f"bar: 1.886 in <= T/2 ({fmt(t_full / 2 if t_full else None, '.1f')} s): "
              f"{'PASS' if passed_time else 'FAIL'} ({fmt(ttt, '.1f')} s); "
              f"loss at T <= {BAR_LOSS}: {'PASS' if passed_loss else 'FAIL'} ({fmt(summary['llmtui_loss_at_T'])})")
        print("VERDICT: " + ("PASS" if passed_time and passed_loss else "FAIL"))
    print(f"wrote {OUT / 'speedrun.json'} and {OUT / 'speedrun.png'}")


if __name__ == "__main__":
    main()
