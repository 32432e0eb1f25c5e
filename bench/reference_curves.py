"""Measure a shipped preset's val-loss curve and ship it as its reference curve.

    .venv/bin/python bench/reference_curves.py cpu          # the whole run (~2-4 min here)
    .venv/bin/python bench/reference_curves.py cpu --steps 300 --out /tmp/c.json   # a look

Trains the preset exactly as shipped, on its default corpus, evaluating every
--every steps (evaluation draws no random numbers, so its cadence does not change
the trajectory), and writes presets/<name>.curve.json: the (step, val loss)
points, the recipe fingerprint that decides which runs it is drawn behind, the
machine and the versions it ran on. The monitor and the run view draw it
faintly behind a run of the same recipe.

Only presets this machine can run as designed should be measured here: a GPU
preset run on a CPU would take days and would not be the preset's curve.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(preset: str, steps: int | None, every: int) -> dict:
    import torch

    from llmtui import load_config
    from llmtui.engine.config.reference import recipe_fingerprint
    from llmtui.engine.planning.hardware import detect
    from llmtui.engine.training.events import EvalEvent
    from llmtui.engine.training.trainer import Trainer

    shipped = load_config(preset)
    work = Path(tempfile.mkdtemp(prefix="llmtui-reference-"))
    overrides = [f'run.out_dir="{work}"', f"eval.every_n_steps={every}", "checkpoint.every_n_steps=0",
                 "training.save_best=false", "eval.sample_tokens=0"]
    if steps is not None:
        overrides.append(f"training.max_steps={steps}")
    cfg = load_config(preset, overrides)
    points: list[tuple[int, float]] = []
    trainer = Trainer(cfg, listeners=[lambda e: points.append((e.step, round(e.val_loss, 5)))
                                      if isinstance(e, EvalEvent) else None])
    started = time.perf_counter()
    trainer.run()
    cpu = detect().cpu
    return {
        "preset": preset,
        # the fingerprint of the preset as shipped (a shortened --steps run is only a look)
        "recipe": recipe_fingerprint(shipped),
        "points": points,
        "machine": f"{cpu.model}, {cpu.physical_cores} cores, torch threads {torch.get_num_threads()}, "
                   f"{trainer.setup_done.placement.device} {trainer.setup_done.placement.precision}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}",
        "measured": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("preset")
    p.add_argument("--every", type=int, default=50, help="evaluate every N steps (default 50)")
    p.add_argument("--steps", type=int, default=None, help="stop early (a look; not a reference)")
    p.add_argument("--out", type=Path, default=None, help="default: presets/<preset>.curve.json")
    args = p.parse_args()
    result = measure(args.preset, args.steps, args.every)
    out = args.out or (REPO / "presets" / f"{args.preset}.curve.json")
    if args.steps is not None and args.out is None:
        sys.exit("--steps measures a shortened run: give --out, it is not the preset's curve")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.preset}: {len(result['points'])} points, val loss {result['points'][0][1]} at step "
          f"{result['points'][0][0]} -> {result['points'][-1][1]} at step {result['points'][-1][0]}, "
          f"{result['seconds']} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
