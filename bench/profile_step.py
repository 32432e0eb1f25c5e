"""Where a training step of nanoGPT's CPU recipe goes, op by op (issue 21 item 3: MFU).

    .venv/bin/python bench/profile_step.py               # 15 warm-up steps, 30 profiled
    .venv/bin/python bench/profile_step.py --steps 60
    .venv/bin/python bench/profile_step.py --config cpu   # a preset (or TOML file) instead

The recipe (bench/nanogpt_recipe.toml) is set up by a real engine Trainer, as in
bench/throughput.py, and its split steps (data, forward+backward, optimizer) run under
torch.profiler. Prints the ops with the most self CPU time per step. Run it on a quiet
machine: shares are what to read, the profiler adds its own overhead to the totals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (bench's own helpers: make_trainer, split_step)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="profiled steps")
    p.add_argument("--warmup", type=int, default=15, help="steps before profiling")
    p.add_argument("--top", type=int, default=22, help="ops to list")
    p.add_argument("--config", default=str(throughput.RECIPE),
                   help="preset name or TOML file to profile (default: nanoGPT's recipe)")
    args = p.parse_args()
    trainer = throughput.make_trainer(args.config, throughput.OUT / "profile-run",
                                      data__source=str(throughput.DATA))
    for _ in range(args.warmup):
        throughput.split_step(trainer)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            throughput.split_step(trainer)
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops)
    for e in sorted(ops, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        print(f"{e.key[:45]:45s} {e.self_cpu_time_total / args.steps / 1000:7.2f} ms/step "
              f"{100 * e.self_cpu_time_total / total:5.1f}%  calls/step {e.count / args.steps:.0f}")
    print(f"total self CPU {total / args.steps / 1000:.1f} ms/step (profiler overhead included)")


if __name__ == "__main__":
    main()
