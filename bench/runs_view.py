"""The runs view on a big folder: 100 runs of 10,000 metric lines each.

    .venv/bin/python bench/runs_view.py              # 100 runs x 10,000 lines
    .venv/bin/python bench/runs_view.py --runs 20    # a quick look

Builds the folder once (each run: config.toml, train_log.json, a `last`
checkpoint's state.json and manifest, a metrics.jsonl of N lines), then times,
medians of --repeats:

- `list_runs(folder)`: what the runs view and `llmtui runs` read (metrics are
  never read for the list);
- the runs view in the app: from pushing RunsScreen to its table holding every
  run (headless Textual, the real screen);
- opening one run: its whole metrics.jsonl read into curves (read_history).

Target: the runs view opens the folder in under 1 s. Writes bench/out/runs_view.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TARGET_S = 1.0


def build(folder: Path, runs: int, lines: int) -> None:
    from llmtui.engine.config.loading import config_to_toml, load_config

    config = config_to_toml(load_config("cpu"))
    for i in range(runs):
        run = folder / f"run-{i:03d}"
        (run / "last").mkdir(parents=True)
        (run / ".llmtui-run").write_text('{"format": "llmtui-run", "version": 1}\n')
        (run / "config.toml").write_text(config)
        steps = lines * 10
        (run / "train_log.json").write_text(json.dumps({
            "final_train_loss": 1.5, "final_val_loss": 1.6, "best_val_loss": 1.55,
            "training_time": 100.0 + i, "steps": steps, "tokens_seen": steps * 768,
            "stop_reason": "max_steps", "run_dir": str(run), "last_checkpoint": str(run / "last"),
            "best_checkpoint": None, "metrics_path": str(run / "metrics.jsonl"), "n_params": 800640,
            "device": "cpu", "precision": "fp32", "total_training_time": None}))
        (run / "last" / "state.json").write_text(json.dumps({"step": steps, "val_loss": 1.6,
                                                             "best_val_loss": 1.55, "tokens_seen": 1}))
        (run / "last" / "manifest.json").write_text("{}")
        with open(run / "metrics.jsonl", "w") as f:
            for n in range(lines):
                step = (n + 1) * 10
                f.write(json.dumps({"kind": "train", "step": step, "time": 1.7e9 + n, "loss": 3.0 - n / lines,
                                    "lr": 1e-3, "grad_norm": 0.5, "tokens_per_sec": 12000.0,
                                    "ms_per_step": 64.0, "mfu": 0.4, "tokens_seen": step * 768,
                                    "max_steps": steps, "memory_rss_mb": 370.0}) + "\n")


def time_list(folder: Path, repeats: int) -> list[float]:
    from llmtui.engine.training.runs import list_runs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        found = list_runs(folder)
        times.append(time.perf_counter() - start)
    assert found
    return times


def time_view(folder: Path, runs: int, repeats: int) -> list[float]:
    sys.path.insert(0, str(REPO / "tests"))
    from fakes import fake_hardware_cpu_only, fixed_memory_probe, fixed_recommendation
    from llmtui.tui.app import LlmtuiApp
    from llmtui.tui.screens.runs import RunsScreen

    times = []
    for _ in range(repeats):
        hw = fake_hardware_cpu_only()
        app = LlmtuiApp(hardware=hw, recommendation=fixed_recommendation(hw), memory_probe=fixed_memory_probe,
                        runs_dir=folder)

        async def drive():
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.pause()
                start = time.perf_counter()
                screen = RunsScreen(folder)
                app.push_screen(screen)
                while True:
                    tables = screen.query("DataTable")
                    if tables and tables.first().row_count >= runs:
                        break
                    await asyncio.sleep(0.005)
                times.append(time.perf_counter() - start)

        asyncio.run(drive())
    return times


def time_open(run: Path, repeats: int) -> list[float]:
    from llmtui.engine.training.history import read_history
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        history = read_history(run)
        times.append(time.perf_counter() - start)
    assert history.train
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--lines", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=OUT / "runs_view.json")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="llmtui-runs-bench-"))
    try:
        print(f"building {args.runs} runs x {args.lines:,} metric lines in {folder} ...", flush=True)
        build(folder, args.runs, args.lines)
        listing = time_list(folder, args.repeats)
        view = time_view(folder, args.runs, args.repeats)
        opening = time_open(folder / "run-000", args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    med = statistics.median
    print(f"list_runs:                 {1000 * med(listing):7.1f} ms (median of {args.repeats})")
    print(f"runs view, table filled:   {1000 * med(view):7.1f} ms  target < {1000 * TARGET_S:.0f} ms: "
          f"{'PASS' if med(view) < TARGET_S else 'FAIL'}")
    print(f"open one run ({args.lines:,} lines): {1000 * med(opening):7.1f} ms")
    report = {"runs": args.runs, "lines_per_run": args.lines, "list_runs_s": listing, "view_s": view,
              "open_run_s": opening,
              "checks": [{"name": f"runs view opens {args.runs} runs x {args.lines:,} lines",
                          "value": round(med(view), 3), "unit": "s", "target": f"< {TARGET_S}",
                          "passed": med(view) < TARGET_S}]}
    OUT.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
