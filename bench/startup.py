"""Start-up times of the llmtui command, each in fresh processes.

    .venv/bin/python bench/startup.py                             # 5 repeats, medians
    .venv/bin/python bench/startup.py --repeats 1 --max-iters 2   # quick check

Measures (median of --repeats launches):

  import llmtui.cli   python -c "import llmtui.cli"
  llmtui --help       the installed `llmtui` script (python -m llmtui if there is none)
  import torch        python -c "import torch": the floor under any training start
  first train line    llmtui --run CONFIG --max-iters N -o logging.every_n_steps=1 ...
                      for the nanoGPT recipe (bench/nanogpt_recipe.toml on
                      ../shared/data/tinyshakespeare.txt) and the cpu preset: from
                      launch to the first `train` record of the run's metrics.jsonl
                      (its "time" stamp), and to the `start` record (set-up done).
                      Data is prepared by one launch before the timed ones, whose
                      time is reported as "first launch".

and whether `llmtui --help` imports torch (it must not), from `python -X
importtime -m llmtui --help`, with the slowest imports it does make. If
bench/first_paint.py exists it is run too (--no-first-paint skips it) and its
bench/out/first_paint.json is included.

Target: first train line within 3 s. Writes bench/out/startup.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "bench" / "nanogpt_recipe.toml"
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = REPO / "bench" / "out"
FIRST_TRAIN_TARGET_S = 3.0


def other_cpu_load(seconds: float = 1.0) -> float:
    """System-wide CPU use in percent over `seconds` while this script idles:
    other people's work, which makes every timing here unreliable."""
    import psutil
    return psutil.cpu_percent(interval=seconds)


def llmtui_command() -> list[str]:
    script = Path(sys.executable).parent / "llmtui"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "llmtui"]


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def median_wall(cmd: list[str], repeats: int) -> dict:
    times = [wall_time(cmd) for _ in range(repeats)]
    return {"command": " ".join(cmd), "median_s": statistics.median(times), "all_s": times}


def first_train(config: str, extra: list[str], max_iters: int) -> dict:
    """Launch one headless run in a fresh run directory; seconds from launch to
    its `start` and first `train` records, and to exit."""
    out_dir = Path(tempfile.mkdtemp(prefix="llmtui-startup-"))
    cmd = [*llmtui_command(), "--run", config, "--max-iters", str(max_iters), "--plain",
           "-o", "logging.every_n_steps=1", "-o", f"run.out_dir='{out_dir}'",
           "-o", f"data.prepared_dir='{OUT / 'data'}'",
           # after the first step: keep the rest of the run short
           "-o", "eval.max_batches=1", "-o", "eval.sample_tokens=0", "-o", "checkpoint.every_n_steps=0",
           *extra]
    try:
        launched = time.time()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        exited = time.time() - launched
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
        metrics = next(out_dir.glob("*/metrics.jsonl"))
        events = [json.loads(line) for line in metrics.read_text().splitlines()]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    start = next(e for e in events if e["kind"] == "start")
    train = next(e for e in events if e["kind"] == "train")
    return {"to_start_s": start["time"] - launched, "to_first_train_s": train["time"] - launched,
            "to_exit_s": exited, "command": " ".join(cmd)}


def time_runs(name: str, config: str, extra: list[str], max_iters: int, repeats: int) -> dict:
    print(f"{name}: first launch (prepares data if needed) ...", flush=True)
    first = first_train(config, extra, max_iters)
    print(f"{name}: {repeats} timed launches ...", flush=True)
    runs = [first_train(config, extra, max_iters) for _ in range(repeats)]
    return {"name": name, "command": runs[0]["command"], "first_launch": first, "runs": runs,
            "to_start_s": statistics.median(r["to_start_s"] for r in runs),
            "to_first_train_s": statistics.median(r["to_first_train_s"] for r in runs)}


def help_imports() -> dict:
    """What `python -m llmtui --help` imports: whether torch, and the slowest."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "llmtui", "--help"], cwd=REPO,
                          capture_output=True, text=True)
    modules = []  # (cumulative microseconds, module name)
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            if cumulative.strip().isdigit():
                modules.append((int(cumulative), name.strip()))
    names = {name for _, name in modules}
    heavy = sorted(n for n in names if n.split(".")[0] in ("torch", "numpy", "textual", "tiktoken", "rich"))
    top = sorted((m for m in modules if "." not in m[1]), reverse=True)[:8]
    return {"imports_torch": "torch" in names, "heavy_modules": heavy,
            "slowest_top_level": [{"module": n, "cumulative_ms": us / 1000} for us, n in top]}


def first_paint() -> dict | None:
    script = REPO / "bench" / "first_paint.py"
    if not script.is_file():
        return None
    print("bench/first_paint.py ...", flush=True)
    json_path = OUT / "first_paint.json"
    before = json_path.stat().st_mtime if json_path.exists() else 0
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True)
    result = {"returncode": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-1500:]}
    if json_path.exists() and json_path.stat().st_mtime > before:
        result["json"] = json.loads(json_path.read_text())
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-iters", type=int, default=3)
    p.add_argument("--data", type=Path, default=DATA, help="corpus for the recipe")
    p.add_argument("--no-first-paint", action="store_true", help="do not run bench/first_paint.py")
    p.add_argument("--out", type=Path, default=OUT / "startup.json")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    load_before = other_cpu_load()

    python = sys.executable
    print("import / --help timings ...", flush=True)
    commands = {"import llmtui.cli": median_wall([python, "-c", "import llmtui.cli"], args.repeats),
                "llmtui --help": median_wall([*llmtui_command(), "--help"], args.repeats),
                "import torch": median_wall([python, "-c", "import torch"], args.repeats)}
    imports = help_imports()
    runs = [time_runs("recipe", str(RECIPE), ["-o", f"data.source='{args.data.resolve()}'"],
                      args.max_iters, args.repeats),
            time_runs("preset cpu", "cpu", [], args.max_iters, args.repeats)]
    paint = None if args.no_first_paint else first_paint()

    checks = [{"name": f"first train line, {r['name']} (data prepared)", "value": round(r["to_first_train_s"], 2),
               "unit": "s", "target": f"<= {FIRST_TRAIN_TARGET_S:g}",
               "passed": r["to_first_train_s"] <= FIRST_TRAIN_TARGET_S} for r in runs]
    checks.append({"name": "llmtui --help does not import torch", "value": not imports["imports_torch"],
                   "unit": "", "target": True, "passed": not imports["imports_torch"]})
    checks.append({"name": "llmtui --help wall time", "value": round(commands["llmtui --help"]["median_s"], 2),
                   "unit": "s", "target": None, "passed": None})

    print(f"\n{'what':40s}{'median s':>10s}")
    for name, r in commands.items():
        print(f"{name:40s}{r['median_s']:>10.2f}")
    for r in runs:
        print(f"{r['name'] + ': launch -> start record':40s}{r['to_start_s']:>10.2f}")
        print(f"{r['name'] + ': launch -> first train line':40s}{r['to_first_train_s']:>10.2f}"
              f"   (first launch: {r['first_launch']['to_first_train_s']:.2f})")
    print(f"llmtui --help imports torch: {'YES' if imports['imports_torch'] else 'no'}; "
          f"heavy modules it imports: {', '.join(imports['heavy_modules']) or 'none'}")
    print("slowest top-level imports of --help: " + ", ".join(
        f"{m['module']} {m['cumulative_ms']:.0f} ms" for m in imports["slowest_top_level"][:5]))
    if paint is not None:
        print(f"bench/first_paint.py: exit {paint['returncode']}; "
              f"{'see first_paint.json' if 'json' in paint else paint['output_tail'][-300:]}")
    for c in checks:
        if c["passed"] is not None:
            print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}: {c['value']} (target {c['target']})")
    load_after = other_cpu_load()
    if max(load_before, load_after) > 10:
        print(f"note: other processes used {load_before:.0f}% / {load_after:.0f}% of the CPUs "
              "before / after: the machine was busy and these figures are unreliable")

    report = {"other_cpu_percent": [load_before, load_after], "commands": commands, "help_imports": imports,
              "runs": runs, "first_paint": paint, "checks": checks}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
