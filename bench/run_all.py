"""Run every benchmark in bench/ in turn; print one summary table of each
figure with its target and whether it passed.

    .venv/bin/python bench/run_all.py                          # full runs (tens of minutes)
    .venv/bin/python bench/run_all.py --nanogpt /tmp/nanogpt   # + nanoGPT vs llmtui on the recipe
    .venv/bin/python bench/run_all.py --quick                  # small sizes: checks the scripts work
    .venv/bin/python bench/run_all.py --only throughput startup

In order: throughput.py (with --compile), startup.py, data_prep.py, then
recipe.py if --nanogpt PATH or --recipe is given, then monitor_overhead.py,
first_paint.py, estimate_memory.py, estimate_speed.py and generate_speed.py where they exist (they get --quick
under --quick if their --help offers it). Each runs as its own process, one
after the other, so none slows another. Run it on a quiet machine: the
benchmarks time CPU work, and other work on the machine shows in every figure.

Each script writes bench/out/<name>.json; all of them are gathered into
bench/out/all.json. A script's JSON may hold "checks": a list of
{"name", "value", "unit", "target", "passed"} (passed null = no target);
those are the rows of the summary; a script without them gets one row
saying it ran. Exits 1 if a script failed to run, else 0 (failed checks are printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
OUT = BENCH / "out"


def steps(args) -> list[tuple[str, list[str]]]:
    """(name, arguments) of each script to run; name.py is the script, name.json its output."""
    quick = args.quick
    plan = [
        ("throughput", ["--steps", "20", "--warmup", "5", "--preset-steps", "10", "--preset-warmup", "2"]
         if quick else ["--compile"]),
        ("startup", ["--no-first-paint"] + (["--repeats", "1", "--max-iters", "2"] if quick else [])),
        ("data_prep", ["--size-mb", "20"] if quick else []),
    ]
    if args.nanogpt or args.recipe:
        plan.append(("recipe", (["--nanogpt", str(args.nanogpt)] if args.nanogpt else [])
                     + (["--steps", "50"] if quick else [])))
    for name in ("monitor_overhead", "first_paint", "estimate_memory", "estimate_speed", "generate_speed"):
        if (BENCH / f"{name}.py").is_file():
            plan.append((name, ["--quick"] if quick and offers_quick(name) else []))
    if args.only:
        plan = [s for s in plan if s[0] in args.only]
    return plan


def offers_quick(name: str) -> bool:
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--help"], cwd=REPO,
                          capture_output=True, text=True)
    return "--quick" in proc.stdout


def run_step(name: str, arguments: list[str]) -> dict:
    cmd = [sys.executable, str(BENCH / f"{name}.py"), *arguments]
    json_path = OUT / f"{name}.json"
    print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.time()
    returncode = subprocess.run(cmd, cwd=REPO).returncode
    result = {"command": " ".join(cmd), "returncode": returncode, "seconds": time.time() - started}
    if json_path.exists() and json_path.stat().st_mtime >= started:
        result["json"] = json.loads(json_path.read_text())
    return result


def summary_rows(results: dict) -> list[tuple[str, dict]]:
    rows = []
    for name, result in results.items():
        report = result.get("json")
        if result["returncode"] != 0 or report is None:
            rows.append((name, {"name": "script ran", "value": f"exit {result['returncode']}"
                                + ("" if report else ", no JSON"), "unit": "", "target": "exit 0, JSON",
                                "passed": False}))
            continue
        checks = report.get("checks")
        if not checks:
            rows.append((name, {"name": f"ran; figures in bench/out/{name}.json", "value": "",
                                "unit": "", "target": None, "passed": None}))
        rows += [(name, c) for c in checks or []]
    return rows


def print_summary(rows: list[tuple[str, dict]]) -> None:
    print(f"\n{'benchmark':18s}{'figure':64s}{'value':>12s}  {'target':14s}result")
    print("-" * 116)
    for name, c in rows:
        value = f"{c['value']} {c['unit']}".strip() if c["value"] != "" else ""
        result = "—" if c["passed"] is None else "PASS" if c["passed"] else "FAIL"
        print(f"{name:18s}{c['name'][:63]:64s}{value:>12s}  {str(c['target'] or '—'):14s}{result}")
    failed = sum(1 for _, c in rows if c["passed"] is False)
    judged = sum(1 for _, c in rows if c["passed"] is not None)
    print(f"{judged - failed} of {judged} checks passed")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: seconds per script, figures not meaningful")
    p.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout: run bench/recipe.py --nanogpt PATH")
    p.add_argument("--recipe", action="store_true", help="run bench/recipe.py (llmtui only) without --nanogpt")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these (throughput, startup, ...)")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    started = time.time()
    results = {name: run_step(name, arguments) for name, arguments in steps(args)}
    rows = summary_rows(results)
    report = {"started": started, "seconds": time.time() - started, "quick": args.quick,
              "steps": results, "summary": [{"benchmark": name, **c} for name, c in rows]}
    (OUT / "all.json").write_text(json.dumps(report, indent=1))
    print_summary(rows)
    if args.quick:
        print("(--quick: small sizes, so the figures only show that the scripts work)")
    print(f"wrote {OUT / 'all.json'}")
    return 1 if any(r["returncode"] != 0 for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
