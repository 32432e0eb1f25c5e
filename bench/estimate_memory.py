"""Estimated vs measured peak memory of real CPU training runs.

    python bench/estimate_memory.py            # every config (about 3 minutes on 2 cores)
    python bench/estimate_memory.py recipe bpe # some of them

Each config trains a few steps in a child process (`llmtui --run`, the real
trainer: data, model, AdamW, an evaluation and a checkpoint at the end); a
fresh intermediate process reads the child's peak RSS (ru_maxrss). The
estimate is engine.planning.estimate.estimate() for the same config, with the vocabulary
the run really used. Prints a table and writes bench/out/estimate_memory.json.
Peak memory does not depend on the step count, so a few steps suffice (the
big shakespeare_char config takes ~15 s per step on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "bench" / "out"
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"

COMMON = ["eval.every_n_steps=100000", "eval.max_batches=2", "eval.sample_tokens=0",
          "checkpoint.every_n_steps=0", "logging.every_n_steps=1", 'logging.progress="plain"',
          "run.threads=2", "scheduler.warmup_steps=0"]
CONFIGS = {
    # almost no model: the process's own footprint (engine.estimate.CPU_RUNTIME_BYTES)
    "floor": ["model.n_layer=1", "model.n_head=1", "model.n_embd=16", "model.block_size=8",
              "training.batch_size=1", "training.max_steps=4"],
    # nanoGPT's README CPU recipe, 0.8M parameters (BASELINES: peak RSS ~370 MB)
    "recipe": ["training.max_steps=50"],
    # a medium char model: RoPE, dropout, 5M parameters
    "medium": ["model.n_layer=6", "model.n_head=8", "model.n_embd=256", "model.block_size=256",
               "training.batch_size=16", "model.dropout=0.1", 'model.pos_encoding="rope"',
               "training.max_steps=4"],
    # GPT-2 BPE vocabulary: the logits dominate
    "bpe": ['tokenizer.kind="bpe"', "model.n_layer=4", "model.n_head=4", "model.n_embd=256",
            "model.block_size=256", "training.batch_size=8", "training.max_steps=4"],
    # the medium model in bf16 autocast (only where the CPU has native bf16)
    "medium-bf16": ["model.n_layer=6", "model.n_head=8", "model.n_embd=256", "model.block_size=256",
                    "training.batch_size=16", "model.dropout=0.1", 'model.pos_encoding="rope"',
                    'training.precision="bf16"', "training.max_steps=4"],
    # issue 12's options: the medium model with the modern recipe (RMSNorm, SwiGLU, QK-norm,
    # untied head, Muon: one momentum buffer for the matrices instead of AdamW's two)
    "medium-modern": ["model.n_layer=6", "model.n_head=8", "model.n_embd=256", "model.block_size=256",
                      "training.batch_size=16", "model.dropout=0.1", 'model.pos_encoding="rope"',
                      'model.norm="rmsnorm"', 'model.mlp="swiglu"', "model.qk_norm=true",
                      "model.tie_embeddings=false", 'optimizer.name="muon"', "training.max_steps=4"],
    # squared ReLU with AdamW, BPE vocabulary, untied head (the head's own moments)
    "bpe-relu2": ['tokenizer.kind="bpe"', "model.n_layer=4", "model.n_head=4", "model.n_embd=256",
                  "model.block_size=256", "training.batch_size=8", 'model.mlp="relu2"', "model.qk_norm=true",
                  "model.tie_embeddings=false", "training.max_steps=4"],
    # nanoGPT's shakespeare_char defaults, 10.7M parameters (BASELINES: nanoGPT ~7.0 GiB)
    "shakespeare_char": ["model.n_layer=6", "model.n_head=6", "model.n_embd=384",
                         "model.block_size=256", "training.batch_size=64", "model.dropout=0.2",
                         "training.max_steps=2"],
}

_MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:]).returncode; "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
            "sys.exit(rc)")


def overrides(name: str) -> list[str]:
    return CONFIGS[name] + COMMON + [
        f'data.source="{DATA}"', f'data.prepared_dir="{OUT / "data"}"',
        f'run.out_dir="{OUT / "runs"}"', f'run.name="mem-{name}"']


def measure(name: str) -> dict:
    """Train `name` in a child; return its peak RSS and the run's vocabulary."""
    log = OUT / f"mem-{name}.log"
    rss_file = log.with_suffix(".rss")
    cmd = [sys.executable, "-m", "llmtui", "--run", str(REPO / "bench" / "nanogpt_recipe.toml"),
           "--overwrite", "--plain"]
    for o in overrides(name):
        cmd += ["--override", o]
    env = dict(os.environ, TIKTOKEN_CACHE_DIR=str(TIKTOKEN_CACHE))
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-c", _MEASURE, str(rss_file), *cmd], cwd=REPO,
                              stdout=f, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"{name}: training failed with exit code {proc.returncode}; see {log}")
    events = [json.loads(line) for line in
              (OUT / "runs" / f"mem-{name}" / "metrics.jsonl").read_text().splitlines()]
    begin = next(e for e in events if e["kind"] == "start")
    return {"peak_rss": int(rss_file.read_text()) * 1024, "vocab_size": begin["vocab_size"],
            "n_params": begin["n_params"], "precision": begin["precision"],
            "wall_s": time.perf_counter() - start}


def main() -> None:
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.planning.estimate import estimate
    from llmtui.engine.planning.hardware import detect

    names = sys.argv[1:] or list(CONFIGS)
    OUT.mkdir(parents=True, exist_ok=True)
    hardware = detect()
    if not hardware.cpu.bf16_native and "medium-bf16" in names:
        names.remove("medium-bf16")
        print("skipping medium-bf16: this CPU has no native bf16")
    rows = []
    for name in names:
        cfg = load_config(REPO / "bench" / "nanogpt_recipe.toml", overrides(name))
        cfg.run.device = "cpu"
        measured = measure(name)
        est = estimate(cfg, vocab_size=measured["vocab_size"], hardware=hardware)
        error = est.memory_total / measured["peak_rss"] - 1
        rows.append({"config": name, **measured, "estimate": est.memory_total,
                     "estimate_parts": est.memory, "error": error})
        print(f"{name}: measured {measured['peak_rss'] / 2**20:,.0f} MiB, estimated "
              f"{est.memory_total / 2**20:,.0f} MiB ({100 * error:+.1f}%)", flush=True)

    print(f"\n{'config':18s}{'params':>9s}{'vocab':>7s}{'prec':>6s}{'measured MiB':>14s}"
          f"{'estimate MiB':>14s}{'error':>8s}  largest estimated parts")
    for r in rows:
        parts = sorted(r["estimate_parts"].items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{k} {v / 2**20:,.0f}" for k, v in parts)
        print(f"{r['config']:18s}{r['n_params'] / 1e6:>8.2f}M{r['vocab_size']:>7d}{r['precision']:>6s}"
              f"{r['peak_rss'] / 2**20:>14,.0f}{r['estimate'] / 2**20:>14,.0f}"
              f"{100 * r['error']:>+7.1f}%  {shown}")
    report = {"cpu": hardware.cpu.model, "torch": hardware.torch_version, "rows": rows}
    (OUT / "estimate_memory.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({r["config"]: {"measured_mib": round(r["peak_rss"] / 2**20),
                                    "estimate_mib": round(r["estimate"] / 2**20),
                                    "error_percent": round(100 * r["error"], 1)} for r in rows}))
    print(f"wrote {OUT / 'estimate_memory.json'}")


if __name__ == "__main__":
    main()
