"""What the live Textual monitor costs training: headless vs monitor, A/B/A/B.

    .venv/bin/python bench/monitor_overhead.py            # cpu preset, 600 steps, 2 rounds
    .venv/bin/python bench/monitor_overhead.py --quick    # 60 steps, 1 round (checks it works)

Each round trains the CPU preset (presets/cpu.toml, the nanoGPT recipe shape)
twice with the same seed, each time in a fresh Python process: once headless
(the engine Trainer on the main thread, as `llmtui --run` does) and once
inside the app (LlmtuiApp running headless Textual, training in its worker
thread, the monitor screen polling at its default rate, every panel drawn).
Rounds alternate headless/monitor so drift of the machine's speed hits both
alike. Fresh processes matter: once a process has trained on one thread,
training on another thread of the same process runs 25-30% slower here (a
second OpenMP thread team), which is no cost of the monitor.

tokens/s is the median of the train records' tokens_per_sec (eval and
checkpoint time excluded, first interval skipped). The ratio monitor/headless
is the mean over the monitor runs divided by the mean over the headless runs;
the pairwise ratios are listed too. Also reported: the UI thread's CPU time
per second of training, monitor polls and chart redraws.

Target: ratio >= 0.97 (the monitor costs under 3%). Writes
bench/out/monitor_overhead.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "out"
TARGET = 0.97


def make_config(steps: int, out_dir: Path, data_dir: Path, name: str):
    from llmtui.engine.config.loading import load_config
    return load_config("cpu", [f"training.max_steps={steps}", f'run.out_dir="{out_dir}"',
                               f'data.prepared_dir="{data_dir}"', f'run.name="{name}"',
                               'run.device="cpu"'])


def tokens_per_sec(metrics_path: Path) -> tuple[float, int]:
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["kind"] == "train"][1:]  # the first interval holds warm-up
    return statistics.median(r["tokens_per_sec"] for r in train), len(train)


def run_headless(cfg) -> dict:
    from llmtui.engine.training.trainer import Trainer

    start = time.perf_counter()
    result = Trainer(cfg, overwrite=True).run()
    wall = time.perf_counter() - start
    tps, n = tokens_per_sec(result.metrics_path)
    return {"mode": "headless", "tokens_per_sec": tps, "train_records": n, "wall_s": wall,
            "training_s": result.training_time}


def run_monitor(cfg, refresh: float | None) -> dict:
    from llmtui.tui.app import LlmtuiApp

    kwargs = {} if refresh is None else {"refresh_rate": refresh}
    app = LlmtuiApp(runs_dir=cfg.run.out_dir, **kwargs)
    stats: dict = {}

    async def drive():
        async with app.run_test(size=(100, 32)):
            await asyncio.sleep(0.5)
            cpu0 = time.thread_time()  # this thread runs Textual's event loop
            start = time.perf_counter()
            app.start_training(cfg, overwrite=True)
            monitor = app.screen
            while app.training.running:
                await asyncio.sleep(0.25)
            wall = time.perf_counter() - start
            ui_cpu = time.thread_time() - cpu0
            if app.training.error:
                raise RuntimeError(app.training.error)
            stats.update(wall_s=wall, ui_cpu_s=ui_cpu, polls=monitor.polls,
                         chart_redraws=monitor.query_one("#mon-chart").renders,
                         training_s=app.training.result.training_time,
                         refresh_rate_s=app.refresh_rate)
            await asyncio.sleep(0.3)

    asyncio.run(drive())
    tps, n = tokens_per_sec(Path(cfg.run.out_dir) / cfg.run.name / "metrics.jsonl")
    stats.update(mode="monitor", tokens_per_sec=tps, train_records=n,
                 ui_cpu_ms_per_s=1000 * stats["ui_cpu_s"] / stats["wall_s"])
    return stats


def other_cpu_percent(seconds: float = 1.0) -> float:
    """CPU used by other processes (percent of the machine) over `seconds`."""
    import os

    import psutil
    me = psutil.Process(os.getpid())
    before_me = sum(me.cpu_times()[:2])
    total = psutil.cpu_percent(interval=seconds)
    mine = 100 * (sum(me.cpu_times()[:2]) - before_me) / seconds / (psutil.cpu_count() or 1)
    return max(0.0, total - mine)


def run_arm_in_new_process(mode: str, steps: int, work: Path, data_dir: Path, name: str,
                           refresh: float | None) -> dict:
    cmd = [sys.executable, __file__, "--arm", mode, "--steps", str(steps), "--work", str(work),
           "--data-dir", str(data_dir), "--name", name]
    if refresh is not None:
        cmd += ["--refresh", str(refresh)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} arm failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def arm_main(args) -> int:
    """One arm in this (fresh) process; prints its result as the last line of JSON."""
    cfg = make_config(args.steps, args.work, args.data_dir, args.name)
    result = run_headless(cfg) if args.arm == "headless" else run_monitor(cfg, args.refresh)
    print(json.dumps(result))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", choices=["headless", "monitor"], help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--rounds", type=int, default=2, help="headless+monitor pairs (A/B/A/B...)")
    p.add_argument("--refresh", type=float, default=None,
                   help="monitor poll period in seconds (default: the app's default, 1 s)")
    p.add_argument("--quick", action="store_true", help="60 steps, 1 round: checks that it works")
    p.add_argument("--out", type=Path, default=OUT / "monitor_overhead.json")
    args = p.parse_args()
    if args.arm:
        return arm_main(args)
    if args.quick:
        args.steps, args.rounds = 60, 1

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llmtui-monitor-bench-"))
    data_dir = OUT / "data"
    load_before = other_cpu_percent()

    from llmtui.engine.data.prepare import prepare_data
    prepare_data(make_config(args.steps, work, data_dir, "prep"))  # tokenized once, not timed

    runs = []
    for i in range(args.rounds):
        for mode in ("headless", "monitor"):
            print(f"round {i + 1}/{args.rounds}: {mode} ...", flush=True)
            result = run_arm_in_new_process(mode, args.steps, work, data_dir, f"{mode}-{i}", args.refresh)
            result["round"] = i + 1
            runs.append(result)
            print(f"  {result['tokens_per_sec']:,.0f} tokens/s", flush=True)
    load_after = other_cpu_percent()

    headless = [r["tokens_per_sec"] for r in runs if r["mode"] == "headless"]
    monitor = [r["tokens_per_sec"] for r in runs if r["mode"] == "monitor"]
    ratio = statistics.mean(monitor) / statistics.mean(headless)
    pairs = [m / h for h, m in zip(headless, monitor)]
    ui = [r["ui_cpu_ms_per_s"] for r in runs if r["mode"] == "monitor"]

    print()
    print(f"{'round':>5}  {'mode':<9} {'tokens/s':>10} {'wall s':>7} {'UI ms/s':>8} {'polls':>6} {'redraws':>8}")
    for r in runs:
        extra = (f"{r['ui_cpu_ms_per_s']:>8.1f} {r['polls']:>6} {r['chart_redraws']:>8}"
                 if r["mode"] == "monitor" else f"{'':>8} {'':>6} {'':>8}")
        print(f"{r['round']:>5}  {r['mode']:<9} {r['tokens_per_sec']:>10,.0f} {r['wall_s']:>7.1f} {extra}")
    print()
    print(f"monitor/headless tokens/s: {ratio:.3f} (pairs: {', '.join(f'{x:.3f}' for x in pairs)}); "
          f"target >= {TARGET}: {'PASS' if ratio >= TARGET else 'FAIL'}")
    print(f"UI thread CPU: {statistics.mean(ui):.1f} ms per second of training")
    if max(load_before, load_after) > 10:
        print(f"note: other processes used {load_before:.0f}% / {load_after:.0f}% of the CPU before/after; "
              "the figures are noisy")

    report = {
        "steps": args.steps, "rounds": args.rounds, "config": "presets/cpu.toml",
        "refresh_rate_s": runs[1].get("refresh_rate_s"), "runs": runs,
        "headless_tokens_per_sec_mean": statistics.mean(headless),
        "monitor_tokens_per_sec_mean": statistics.mean(monitor),
        "ratio": ratio, "pair_ratios": pairs, "ui_cpu_ms_per_s_mean": statistics.mean(ui),
        "other_cpu_percent_before_after": [load_before, load_after],
        "checks": [{"name": "monitor/headless tokens/s", "value": round(ratio, 4), "unit": "ratio",
                    "target": f">= {TARGET}", "passed": ratio >= TARGET if not args.quick else None}],
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
