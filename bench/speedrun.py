"""Speedrun: llmtui's `cpu` preset against nanoGPT's README CPU recipe, same data, same machine.

    python bench/speedrun.py                        # 3 runs of each, about 15 minutes on a quiet machine
    python bench/speedrun.py --runs 5 --nanogpt ~/nanoGPT
    python bench/speedrun.py --quick                # about a minute: checks the pipeline, no verdict

Both trainers train on tinyshakespeare, char tokens: nanoGPT with its README CPU recipe
(config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 --log_interval=1
--block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000
--lr_decay_iters=2000 --dropout=0.0), llmtui with `llmtui --run cpu` on the same file. Runs
alternate (nanoGPT, llmtui, nanoGPT, ...) as child processes, so both see the same machine.

Clocks: from launch, as a user sees it (issue 21): each child process's stdout is read line by
line and stamped with the seconds since it was started, so a snapshot's time is the stamp of the
line that reports it saved (nanoGPT's "saving checkpoint", llmtui's "saved step checkpoint"):
start-up, evaluations, samples and checkpoint writes all count. llmtui runs its preset as shipped
(its evaluations and samples) with a step_N checkpoint every 100 steps added for the snapshots;
its data is prepared once before the runs, as nanoGPT's prepare.py is. The training-only clock
of earlier sessions (evaluations, checkpoints and start-up taken out) is reported beside it.

Loss: every snapshot (nanoGPT's checkpoint at each of its evaluations, kept by wrapping its
torch.save; llmtui's step_N checkpoints) is evaluated afterwards by the same code on the FULL
validation split (nanoGPT's: the last 10% of the characters): every token predicted once, in
consecutive windows of the model's own context length.

Reports, as medians over the runs: nanoGPT's time for its 2000 iterations (T) and its loss there,
the time each trainer takes to reach val loss 1.886 (interpolated between snapshots), and the
loss each reaches at time T, on both clocks. The bars (issue 21, launch clock): llmtui reaches
1.886 in at most 0.2 T, and its loss at T is at most 1.55. Writes bench/out/speedrun.json and bench/out/speedrun.png.
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
BAR_LOSS = 1.55           # llmtui's loss at nanoGPT's full time must be at most this (issue 21)
BAR_TIME = 0.2            # ... and it reaches TARGET within this share of nanoGPT's time (issue 21)
NANOGPT_ITERS = 2000
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False",
                "--eval_iters=20", "--log_interval=1", "--block_size=64", "--batch_size=12",
                "--n_layer=4", "--n_head=4", "--n_embd=128", f"--max_iters={NANOGPT_ITERS}",
                f"--lr_decay_iters={NANOGPT_ITERS}", "--dropout=0.0",
                # only to keep a snapshot at every evaluation: training is unchanged
                "--always_save_checkpoint=True"]
SNAPSHOT_EVERY = 100      # llmtui steps between snapshots (step_N checkpoints)


# ---------------------------------------------------------------------------
# running a child with its output stamped

def run_stamped(cmd: list[str], log: Path, cwd: Path | None = None) -> tuple[int, float, list[tuple[float, str]]]:
    """Run `cmd`, its stdout and stderr into `log`; return (exit code, wall seconds, lines with
    the seconds since launch at which each arrived). PYTHONUNBUFFERED: each line arrives when
    printed, not when a buffer fills."""
    start = time.perf_counter()
    lines = []
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    with open(log, "w") as f:
        for line in proc.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))
            f.write(line)
    code = proc.wait()
    return code, time.perf_counter() - start, lines


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
    code, wall, lines = run_stamped([sys.executable, __file__, "--nanogpt-child", str(nanogpt), str(out_dir), *args], log)
    if code:
        sys.exit(f"nanoGPT failed (exit {code}); see {log}")
    text = "\n".join(line for _, line in lines)   # the log, as read while it ran
    saved_at, evaluated = {}, None       # launch seconds at which the checkpoint of step k was saved
    for t, line in lines:
        if m := re.match(r"step (\d+): train loss", line):
            evaluated = int(m.group(1))
        elif line.startswith("saving checkpoint") and evaluated is not None:
            saved_at[evaluated] = t
    dt = {int(i): float(t) / 1000 for i, t in re.findall(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", text)}
    evals = {int(s) for s in re.findall(r"step (\d+): train loss", text)}
    median = statistics.median(t for i, t in dt.items() if i not in evals)
    # iteration i's time covers the evaluation (and checkpoint) at its start: replace those
    step_time = {i: (median if i in evals else t) for i, t in dt.items()}
    snapshots = []
    for path in sorted(out_dir.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        k = int(path.stem.split("_")[1])          # k updates done (iterations 0..k-1)
        snapshots.append({"step": k, "train_seconds": sum(step_time[i] for i in range(k)),
                          "launch_seconds": saved_at[k], "path": str(path)})
    return {"trainer": "nanogpt", "snapshots": snapshots, "wall_seconds": wall,
            "train_seconds": sum(step_time[i] for i in range(iters)),
            "median_step_ms": 1000 * median, "evaluations_removed": len(evals & set(dt))}


# ---------------------------------------------------------------------------
# running llmtui

def llmtui_overrides(out_dir: Path, prepared: Path, max_steps: int | None) -> list[str]:
    """The preset as shipped (its evaluations and samples included) on tinyshakespeare, with a
    snapshot every SNAPSHOT_EVERY steps."""
    overrides = [f'data.source="{DATA}"', f'data.prepared_dir="{prepared}"', f'run.out_dir="{out_dir}"',
                 'run.name="speedrun"', 'run.device="cpu"', f"checkpoint.every_n_steps={SNAPSHOT_EVERY}",
                 "checkpoint.keep_last=100000", 'logging.progress="plain"']
    return overrides + ([f"training.max_steps={max_steps}"] if max_steps else [])


def prepare_llmtui_data(preset: str, prepared: Path) -> None:
    """Prepare the preset's tokens once before the runs (nanoGPT's prepare.py runs before too)."""
    from llmtui import load_config
    from llmtui.engine.data.prepare import prepare_data

    prepare_data(load_config(preset, llmtui_overrides(OUT / "speedrun" / "prepare", prepared, None)))


def run_llmtui(preset: str, out_dir: Path, prepared: Path, max_steps: int | None) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "llmtui", "--run", preset, "--overwrite"]
    for o in llmtui_overrides(out_dir, prepared, max_steps):
        cmd += ["-o", o]
    out_dir.mkdir(parents=True)
    log = out_dir / "train.log"
    code, wall, lines = run_stamped(cmd, log, cwd=REPO)
    if code:
        sys.exit(f"llmtui failed (exit {code}); see {log}")
    saved_at = {int(m.group(1)): t for t, line in lines
                if (m := re.match(r"saved step checkpoint .*step_(\d+)$", line))}
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
    if steps not in checkpoints:       # a length that is no multiple of the interval: its end
        checkpoints[steps], saved_at[steps] = run_dir / "last", wall
    snapshots = [{"step": k, "train_seconds": at_step[k], "launch_seconds": saved_at[k], "path": str(path)}
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

def time_to(snapshots: list[dict], target: float, clock: str = "launch_seconds") -> float | None:
    """Seconds (on `clock`) at which the loss first reaches `target` (linear between snapshots)."""
    points = [(0.0, float("inf"))] + [(s[clock], s["val_loss"]) for s in snapshots]
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if l1 <= target:
            if l0 == float("inf"):
                return t1
            return t0 + (t1 - t0) * (l0 - target) / (l0 - l1)
    return None


def loss_at(snapshots: list[dict], seconds: float, clock: str = "launch_seconds") -> float | None:
    """The loss of the model a trainer had `seconds` (on `clock`) after it started: interpolated
    between snapshots; after its last one, the last (the run had finished); None before its
    first one (no snapshot yet to score)."""
    points = [(s[clock], s["val_loss"]) for s in snapshots]
    if seconds < points[0][0]:
        return None
    if seconds >= points[-1][0]:
        return points[-1][1]
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if t0 <= seconds <= t1:
            return l0 + (l1 - l0) * (seconds - t0) / (t1 - t0)
    return None


def fmt_round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


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
        ax.plot([x["launch_seconds"] for x in s], [x["val_loss"] for x in s], marker=".",
                color=colors[r["trainer"]], alpha=0.4 + 0.6 / (1 + r["index"]), label=label)
    t = report["summary"]["nanogpt_seconds"]
    ax.axhline(TARGET, color="tab:red", ls="--", lw=1, label=f"val loss {TARGET}")
    ax.axhline(BAR_LOSS, color="tab:green", ls="--", lw=1, label=f"bar at T: {BAR_LOSS}")
    if t:
        ax.axvline(t, color="black", ls=":", lw=1, label=f"T = nanoGPT's {report['nanogpt_iters']} iters ({t:.0f} s)")
        ax.axvline(BAR_TIME * t, color="black", ls="-.", lw=1, label=f"{BAR_TIME} T")
    ax.set_xlabel("seconds from launch (start-up, evaluations and samples included)")
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
    prepare_llmtui_data(args.preset, work / "data")
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
    t_full = median(r["wall_seconds"] for r in by["nanogpt"])          # T: launch to exit
    t_train = median(r["train_seconds"] for r in by["nanogpt"])        # the training-only clock's T
    rows = {}
    for name, rs in by.items():
        rows[name] = {"time_to_target": [time_to(r["snapshots"], TARGET) for r in rs],
                      "loss_at_T": [loss_at(r["snapshots"], t_full) for r in rs],
                      "loss_at_T_fifth": [loss_at(r["snapshots"], BAR_TIME * t_full) for r in rs],
                      "train_time_to_target": [time_to(r["snapshots"], TARGET, "train_seconds") for r in rs],
                      "train_loss_at_T": [loss_at(r["snapshots"], t_train, "train_seconds") for r in rs],
                      "final_loss": [r["snapshots"][-1]["val_loss"] for r in rs],
                      "wall_seconds": [r["wall_seconds"] for r in rs],
                      "train_seconds": [r["train_seconds"] for r in rs],
                      "median_step_ms": [r["median_step_ms"] for r in rs]}
    summary = {"nanogpt_seconds": t_full, "nanogpt_train_seconds": t_train,
               **{f"{n}_{k}": median(v) for n, row in rows.items() for k, v in row.items()}}
    ttt = summary["llmtui_time_to_target"]
    passed_time = ttt is not None and t_full is not None and ttt <= BAR_TIME * t_full
    passed_loss = summary["llmtui_loss_at_T"] is not None and summary["llmtui_loss_at_T"] <= BAR_LOSS
    noisy = max(load_before, load_after) > 0.10
    report = {"quick": args.quick, "nanogpt_iters": iters, "runs": results, "per_run": rows, "summary": summary,
              "other_cpu_load": [load_before, load_after], "target": TARGET, "bar_loss": BAR_LOSS,
              "bar_time": BAR_TIME,
              "checks": [] if args.quick else [
                  {"name": f"llmtui time to val {TARGET} / nanoGPT's {iters}-iteration time, from launch",
                   "unit": "x", "value": round(ttt / t_full, 3) if ttt else None, "target": f"<= {BAR_TIME}",
                   "passed": passed_time},
                  {"name": f"llmtui val loss at nanoGPT's {iters}-iteration time, from launch", "unit": "",
                   "value": fmt_round(summary["llmtui_loss_at_T"]), "target": f"<= {BAR_LOSS}",
                   "passed": passed_loss}]}
    (OUT / "speedrun.json").write_text(json.dumps(report, indent=1))
    plot(report, OUT / "speedrun.png")

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)
    print(f"\nmedians of {runs} run(s) each; seconds from launch (start-up, evaluations, samples and "
          f"checkpoints included); val loss on the full validation split ({len(text):,} characters)")
    print(f"{'':9s}{'ms/step':>9s}{'wall s':>8s}{'final loss':>12s}{'s to ' + str(TARGET):>12s}"
          f"{'loss at T/5':>13s}{'loss at T':>11s}   (training clock: s to target, loss at T)")
    for name in ("nanogpt", "llmtui"):
        row = rows[name]
        print(f"{name:9s}{fmt(median(row['median_step_ms']), '.1f'):>9s}{fmt(median(row['wall_seconds']), '.1f'):>8s}"
              f"{fmt(median(row['final_loss'])):>12s}{fmt(median(row['time_to_target']), '.1f'):>12s}"
              f"{fmt(median(row['loss_at_T_fifth'])):>13s}{fmt(median(row['loss_at_T'])):>11s}"
              f"   ({fmt(median(row['train_time_to_target']), '.1f')}, {fmt(median(row['train_loss_at_T']))})")
    for name in ("nanogpt", "llmtui"):
        row = rows[name]
        print(f"  {name} per run: s to {TARGET}: " + ", ".join(fmt(v, ".1f") for v in row["time_to_target"])
              + "; loss at T: " + ", ".join(fmt(v) for v in row["loss_at_T"]))
    print(f"T = nanoGPT's {iters} iterations from launch = {fmt(t_full, '.1f')} s (per run: "
          + ", ".join(fmt(v, ".1f") for v in rows["nanogpt"]["wall_seconds"])
          + f"); its training clock {fmt(t_train, '.1f')} s")
    if noisy:
        print(f"note: other processes used {100 * max(load_before, load_after):.0f}% of the CPUs; timings are noisy")
    if args.quick:
        print("quick mode: pipeline checked, no verdict")
    else:
        print(f"bar: {TARGET} in <= {BAR_TIME} T ({fmt(BAR_TIME * t_full if t_full else None, '.1f')} s): "
              f"{'PASS' if passed_time else 'FAIL'} ({fmt(ttt, '.1f')} s = {fmt(ttt / t_full if ttt and t_full else None)} T); "
              f"loss at T <= {BAR_LOSS}: {'PASS' if passed_loss else 'FAIL'} ({fmt(summary['llmtui_loss_at_T'])})")
        print("VERDICT: " + ("PASS" if passed_time and passed_loss else "FAIL"))
    print(f"wrote {OUT / 'speedrun.json'} and {OUT / 'speedrun.png'}")


if __name__ == "__main__":
    main()
