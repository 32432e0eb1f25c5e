"""What each choice of the `cpu` preset buys: the preset, and the preset with one choice
reverted to nanoGPT's, trained for the same steps on several texts.

    python bench/ablation.py                                  # tinyshakespeare, builtin, every variant
    python bench/ablation.py --corpus builtin my.txt --jobs 2 # other texts, two at a time (1 thread each)
    python bench/ablation.py --only preset adamw --steps 500  # some variants, shorter
    python bench/ablation.py --equal-time 8 --only preset nanogpt-shape --corpus shakespeare
                                                              # each variant for the preset's time

Val loss is deterministic (the same at every run on a machine), so a difference between two
variants is the choice's effect at equal steps, whatever the machine's load. The time per step
is not: `--speed` measures each variant's ms/step round-robin in one process (the same load
for all), as a ratio to the preset. `--equal-time ROUNDS` measures those ratios first and
trains each variant for the steps that fit the preset's training time (the preset's steps times
its ms/step over the variant's): the comparison for choices that change the cost of a step
(shape, batch, context). Val loss is on (nearly) the whole validation split: the
trainer's evaluation with enough evenly spread windows to cover it. Writes
bench/out/ablation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
CORPORA = {"shakespeare": str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"), "builtin": "builtin"}

# each variant: the preset with these overrides (one choice back to nanoGPT's recipe)
VARIANTS = {
    "preset": [],
    "adamw": ['optimizer.name="adamw"', "optimizer.learning_rate=1e-3", "scheduler.min_learning_rate=1e-4"],
    "adamw-3e-3": ['optimizer.name="adamw"', "optimizer.learning_rate=3e-3", "scheduler.min_learning_rate=3e-4"],
    "learned-pos": ['model.pos_encoding="learned"'],
    "layernorm": ['model.norm="layernorm"'],
    "gelu": ['model.mlp="gelu"'],
    "no-qk-norm": ["model.qk_norm=false"],
    "tied-head": ["model.tie_embeddings=true", "optimizer.head_learning_rate=0"],
    "wsd": ['scheduler.kind="wsd"', "scheduler.decay_fraction=0.3"],   # measured: cosine wins, so the preset uses it
    # issue 21's candidates (bench/RESULTS.md): the momentum before, longer context and smaller
    # batches at the same steps, and wider, shallower models at about the same FLOPs
    "momentum-0.95": ["optimizer.muon_momentum=0.95"],
    "context-256": ["model.block_size=256", "training.batch_size=8"],   # the same tokens per step
    "batch-6": ["training.batch_size=6"],
    "wide-2x192": ["model.n_layer=2", "model.n_embd=192", "model.n_head=6"],
    "wide-3x160": ["model.n_layer=3", "model.n_embd=160", "model.n_head=5"],
    # the preset's shape against nanoGPT's README CPU shape (4 x 128, context 64, 12 sequences,
    # Muon at the 5e-3 tuned for it): compare with --equal-time, a step of it costs less
    "nanogpt-shape": ["model.n_embd=128", "model.block_size=64", "training.batch_size=12",
                      "optimizer.learning_rate=5e-3"],
    "batch-32": ["training.batch_size=32"],
    "width-64": ["model.n_embd=64"],
    "heads-2": ["model.n_head=2"],
    "lr-5e-3": ["optimizer.learning_rate=5e-3"],
    # the learning rate's decay: linear to zero (Bergsma et al. 2025, "straight to zero")
    # instead of the preset's cosine
    "linear-decay": ['scheduler.kind="linear"'],
    # Muon as PyTorch's, without NorMuon's per-neuron normalization (the preset's since
    # this session: -0.006 val loss at step 800 over 4 seeds; bench/RESULTS.md)
    "no-normuon": ["optimizer.muon_beta2=0"],
    # batches of random windows drawn with repeats (nanoGPT's get_batch) instead of the
    # default shuffled passes (-0.014 val loss at the end over 5 seeds; bench/RESULTS.md)
    "random-windows": ['training.sampling="random"'],
}


def child(name: str, source: str, steps: int | None, threads: int, out: Path) -> None:
    """Train one variant on one corpus; write its figures to `out`."""
    from llmtui import load_config
    from llmtui.engine.training.events import EvalEvent, TrainEvent
    from llmtui.engine.training.trainer import Trainer

    work = Path(tempfile.mkdtemp(prefix="ablation-"))
    overrides = VARIANTS[name] + [
        f'data.source="{source}"', f'data.prepared_dir="{OUT / "ablation-data"}"', f'run.out_dir="{work}"',
        f'run.name="{name}"', 'run.device="cpu"', f"run.threads={threads}", "checkpoint.every_n_steps=0",
        "training.save_best=false", "eval.sample_tokens=0", "logging.every_n_steps=50"]
    if steps:
        overrides.append(f"training.max_steps={steps}")
    cfg = load_config("cpu", overrides)
    probe = Trainer(cfg).setup()                 # the split's size, to cover it with windows
    t = probe.config.training
    cfg.eval.max_batches = math.ceil(len(probe.data.val) / (t.batch_size * probe.config.model.block_size))
    cfg.eval.every_n_steps = max(1, cfg.training.max_steps // 4)
    evals, ms = {}, []

    def listen(e):
        if isinstance(e, EvalEvent):
            evals[e.step] = e.val_loss
        elif isinstance(e, TrainEvent) and e.step > 50:
            ms.append(e.ms_per_step)
    trainer = Trainer(cfg, listeners=[listen])
    result = trainer.run()
    s = trainer.setup_done
    out.write_text(json.dumps({
        "variant": name, "source": source, "steps": result.steps, "val_loss": evals,
        "final_val_loss": result.final_val_loss, "n_params": s.n_params,
        "tokens_per_step": s.tokens_per_step, "model_gflop_per_step": s.flops_per_token * s.tokens_per_step / 1e9,
        "optimizer_gflop_per_step": s.optimizers.extra_flops_per_step / 1e9,
        "ms_per_step_median": statistics.median(ms) if ms else None}))


def load_preset_steps() -> int:
    from llmtui import load_config

    return load_config("cpu").training.max_steps


def speed(names: list[str], rounds: int) -> dict[str, float]:
    """ms/step of each variant, round-robin blocks of 10 steps in this process, medians."""
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    work = Path(tempfile.mkdtemp(prefix="ablation-speed-"))
    trainers = {}
    for name in names:
        cfg = load_config("cpu", VARIANTS[name] + [
            f'data.source="{CORPORA["shakespeare"]}"', f'data.prepared_dir="{OUT / "ablation-data"}"',
            f'run.out_dir="{work}"', f'run.name="{name}"', 'run.device="cpu"', "training.max_steps=1000000"])
        trainer = Trainer(cfg)
        trainer.setup()
        for _ in range(5):
            trainer.train_step()
        trainers[name] = trainer
    times = {n: [] for n in names}
    for _ in range(rounds):
        for n, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(10):
                trainer.train_step()
            times[n].append(100 * (time.perf_counter() - start))
    return {n: statistics.median(v) for n, v in times.items()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, name, source, steps, threads, out = sys.argv
        child(name, source, int(steps) or None, int(threads), Path(out))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", nargs="+", default=["shakespeare", "builtin"],
                   help="shakespeare, builtin or text files")
    p.add_argument("--only", nargs="+", choices=list(VARIANTS), help="variants to train (default: all)")
    p.add_argument("--steps", type=int, default=0, help="steps per run (0: the preset's)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each on 2 // jobs threads)")
    p.add_argument("--speed", type=int, default=0, metavar="ROUNDS",
                   help="also time every variant round-robin for this many rounds of 10 steps")
    p.add_argument("--equal-time", type=int, default=0, metavar="ROUNDS",
                   help="time the variants first (ROUNDS rounds of 10 steps, the preset among them) and "
                        "train each for the preset's training time instead of the same steps")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    names = args.only or list(VARIANTS)
    if args.equal_time and "preset" not in names:
        names = ["preset", *names]
    threads = max(1, 2 // args.jobs)
    todo = [(n, c) for c in args.corpus for n in names]
    measured = speed(names, args.equal_time) if args.equal_time else {}
    preset_steps = args.steps or load_preset_steps()

    def steps_of(name: str) -> int:
        if not measured:
            return args.steps
        return max(1, round(preset_steps * measured["preset"] / measured[name]))
    results, running = [], []
    tmp = Path(tempfile.mkdtemp(prefix="ablation-results-"))
    while todo or running:
        while todo and len(running) < args.jobs:
            name, corpus = todo.pop(0)
            out = tmp / f"{name}-{len(todo)}.json"
            source = CORPORA.get(corpus, str(Path(corpus).resolve()))
            proc = subprocess.Popen([sys.executable, __file__, "--child", name, source, str(steps_of(name)),
                                     str(threads), str(out)], stdout=subprocess.DEVNULL)
            running.append((proc, name, corpus, out))
        time.sleep(1)
        for item in list(running):
            proc, name, corpus, out = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode:
                sys.exit(f"{name} on {corpus} failed (exit {proc.returncode})")
            r = json.loads(out.read_text()) | {"corpus": corpus}
            results.append(r)
            print(f"{corpus:12s} {name:12s} {r['steps']:>6d} steps  val {r['final_val_loss']:.4f}", flush=True)
    report = {"results": results, "equal_time": bool(measured)}
    if args.speed or measured:
        report["ms_per_step"] = measured or speed(names, args.speed)
    (OUT / "ablation.json").write_text(json.dumps(report, indent=1))

    print(f"\n{'variant':14s}" + "".join(f"{c[:12]:>14s}" for c in args.corpus)
          + ("   ms/step  x preset" if "ms_per_step" in report else "")
          + ("   steps" if measured else ""))
    for name in names:
        row = f"{name:14s}"
        for corpus in args.corpus:
            r = next(r for r in results if r["variant"] == name and r["corpus"] == corpus)
            base = next((x for x in results if x["variant"] == "preset" and x["corpus"] == corpus), None)
            delta = f" ({r['final_val_loss'] - base['final_val_loss']:+.3f})" if base and name != "preset" else ""
            row += f"{r['final_val_loss']:>7.4f}{delta:>7s}" if delta else f"{r['final_val_loss']:>14.4f}"
        if "ms_per_step" in report:
            ms = report["ms_per_step"]
            row += f"{ms[name]:>10.1f}{ms[name] / ms.get('preset', ms[name]):>9.2f}x"
        if measured:
            row += f"{steps_of(name):>8d}"
        print(row)
    print(f"wrote {OUT / 'ablation.json'}")


if __name__ == "__main__":
    main()
