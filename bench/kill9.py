"""kill -9 at random instants: no trial may lose more than the save interval.

    .venv/bin/python bench/kill9.py              # 60 trials (~3 min)
    .venv/bin/python bench/kill9.py --trials 10  # a quick look

Each trial resumes the run left by the previous one (`llmtui --run ... --resume`),
waits until that process has saved a checkpoint of its own (a kill during start-up,
before it writes anything, proves nothing about saving), lets it train a random
0-2 s more, landing during steps, evaluations and checkpoint writes alike, then
SIGKILLs it. After every kill:

- the run directory must hold an intact checkpoint (manifest and sha256 check out,
  state.json parses), and
- the steps lost must be at most the save interval: the last step recorded in
  metrics.jsonl before the kill minus the newest intact checkpoint's step.

A last resume must then finish the run (exit 0). Writes bench/out/kill9.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
SAVE_EVERY = 5


def last_recorded_step(metrics: Path) -> int:
    step = 0
    if metrics.exists():
        for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue   # the line being written when the process died
            if record.get("kind") == "train":
                step = max(step, record["step"])
    return step


def newest_saved_step(run_dir: Path) -> int:
    """The step of the newest checkpoint in the run (-1 when none); each is renamed into
    place whole, so one that is listed is complete."""
    from llmtui.engine.training import checkpoint as ckpt

    return max((ckpt.checkpoint_step(p) for p in ckpt.candidates(run_dir)), default=-1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--out", type=Path, default=OUT / "kill9.json")
    args = p.parse_args()

    from llmtui.engine.training import checkpoint as ckpt

    work = Path(tempfile.mkdtemp(prefix="llmtui-kill9-"))
    run_dir = work / "runs" / "k9"
    rng = random.Random(args.seed)
    base = [sys.executable, "-m", "llmtui", "--run", "cpu", "--plain",
            "-o", f'run.out_dir="{work / "runs"}"', "-o", "run.name=k9",
            "-o", f'data.prepared_dir="{work / "data"}"', "-o", 'run.device="cpu"',
            "-o", "model.n_layer=2", "-o", "model.n_embd=64", "-o", "model.block_size=32",
            "-o", f"checkpoint.every_n_steps={SAVE_EVERY}", "-o", "checkpoint.keep_last=2",
            "-o", "eval.every_n_steps=7", "-o", "eval.max_batches=4", "-o", "logging.every_n_steps=1",
            "--max-iters", "1000000"]
    trials, failures = [], []
    for trial in range(args.trials):
        resume = ["--resume"] if ckpt.has_checkpoints(run_dir) else (["--overwrite"] if trial else [])
        before = newest_saved_step(run_dir)
        proc = subprocess.Popen(base + resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while newest_saved_step(run_dir) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if newest_saved_step(run_dir) <= before:
            proc.kill()
            failures.append(f"trial {trial}: saved no checkpoint within 120 s "
                            f"({proc.communicate()[1].decode(errors='replace').strip()[-200:]})")
            break
        time.sleep(rng.uniform(0.0, 2.0))
        proc.kill()
        proc.wait()
        recorded = last_recorded_step(run_dir / "metrics.jsonl")
        path, _ = ckpt.latest_intact(run_dir)
        if path is None:
            failures.append(f"trial {trial}: no intact checkpoint")
            continue
        saved = ckpt.load(path).state.run.step
        lost = max(0, recorded - saved)
        trials.append({"trial": trial, "recorded_step": recorded, "checkpoint_step": saved,
                       "checkpoint": path.name, "lost_steps": lost})
        if lost > SAVE_EVERY:
            failures.append(f"trial {trial}: lost {lost} steps (save interval {SAVE_EVERY})")
        print(f"trial {trial:>3}: recorded step {recorded:>5}, newest intact {path.name} "
              f"(step {saved}), lost {lost}", flush=True)
    final_step = (trials[-1]["checkpoint_step"] if trials else 0) + 3
    done = subprocess.run(base[:-1] + [str(final_step), "--resume"], capture_output=True, text=True)
    if done.returncode != 0:
        failures.append(f"final resume failed: {done.stderr.strip()[-300:]}")
    lost = [t["lost_steps"] for t in trials]
    report = {"trials": len(trials), "save_every": SAVE_EVERY, "max_lost_steps": max(lost, default=0),
              "failures": failures, "runs": trials,
              "checks": [{"name": f"kill -9 trials losing more than {SAVE_EVERY} steps",
                          "value": len(failures), "target": "0", "passed": not failures}]}
    OUT.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\n{len(trials)} trials, max steps lost {report['max_lost_steps']} (save interval "
          f"{SAVE_EVERY}); failures: {len(failures)}")
    for failure in failures:
        print("  " + failure)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
