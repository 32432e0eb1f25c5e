"""Data preparation speed and memory: text -> token files, char, BPE and trained BPE.

    .venv/bin/python bench/data_prep.py                  # tinyshakespeare + a generated 1 GB corpus
    .venv/bin/python bench/data_prep.py --size-mb 20     # quick check
    .venv/bin/python bench/data_prep.py --size-mb 0      # tinyshakespeare only
    .venv/bin/python bench/data_prep.py --tokenizers trained --size-mb 100   # BPE training
    .venv/bin/python bench/data_prep.py --format jsonl --size-mb 500 --tokenizers bpe   # records

For each corpus and tokenizer (char; BPE = tiktoken gpt2; trained = a byte-level
BPE of 8192 tokens trained on the corpus with HF tokenizers, then used to
tokenize it) the engine's prepare_data runs from scratch (a fresh prepared_dir)
in a child process:

  MB/s       corpus bytes (10^6 per MB) / seconds inside prepare_data (hashing,
             the char vocabulary scan, tokenizing, the train/val split, fsync);
             wall time with interpreter start-up and imports is reported too
  stages     seconds per stage, from the engine's progress callback
  peak RSS   ru_maxrss of the preparing process and its BPE worker processes
             (the largest single one), read with getrusage(RUSAGE_CHILDREN) in
             a fresh intermediate process as bench/recipe.py does; and the
             peak of their summed RSS, sampled every 50 ms

The generated corpus repeats engine.corpus.builtin_text() into a file under
the temp dir (/tmp), removed afterwards unless --keep-corpus. Files are read
from the page cache (just written or recently read): this measures the
pipeline, not the disk. BPE loads the gpt2 encoding from TIKTOKEN_CACHE_DIR,
by default ../shared/tiktoken_cache, so no network is needed.

With --format jsonl the generated corpus is JSON Lines: the builtin corpus cut
into paragraph records ({"id": N, "text": ...}, a few dozen to a few thousand
characters each), each record one document (issue 19: JSON Lines at >= 10 MB/s
with tiktoken gpt2 on 2 cores, under 1 GB RSS).

Targets: BPE >= 5 MB/s (JSON Lines: >= 10 MB/s); a 1 GB corpus prepared in under 1 GB of RSS; training
the BPE tokenizer on 100 MB in under 2 minutes (the "train tokenizer" stage,
>= 0.83 MB/s). The generated corpus repeats one text, so it has few distinct
words: the trainer's counting pass (most of its time, linear in the bytes) is
measured fairly, its merge pass (which grows with distinct words) is cheap.
Writes bench/out/data_prep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
OUT = REPO / "bench" / "out"
BPE_TARGET_MB_S = 5.0
JSONL_BPE_TARGET_MB_S = 10.0
RSS_TARGET_MB = 1024.0
TRAINED_VOCAB = 8192
TRAIN_TOKENIZER_TARGET_MB_S = 100 / 120   # 100 MB in under 2 minutes

_MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[2:]).returncode; "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "open(sys.argv[1], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
            "sys.exit(rc)")


# ---------------------------------------------------------------------------
# child side: `data_prep.py --child SOURCE KIND PREPARED_DIR RESULT_JSON`

def child(source: str, kind: str, prepared_dir: str, result_path: str) -> None:
    sys.path.insert(0, str(REPO))
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.data.prepare import prepare_data

    cfg = load_config(None, data__source=source, tokenizer__kind=kind, data__prepared_dir=prepared_dir,
                      tokenizer__vocab_size=TRAINED_VOCAB)
    stage_end: dict[str, float] = {}  # stage -> seconds at its last progress report (its end)
    stage_cpu_end: dict[str, float] = {}  # the same in CPU seconds of the process (all its threads)
    start, cpu_start = time.perf_counter(), time.process_time()

    def progress(stage: str, done: int, total: int) -> None:
        stage_end[stage] = time.perf_counter() - start
        stage_cpu_end[stage] = time.process_time() - cpu_start

    data = prepare_data(cfg, progress=progress)
    seconds = time.perf_counter() - start
    stages, previous = {}, 0.0
    for stage, end in sorted(stage_end.items(), key=lambda item: item[1]):
        stages[stage], previous = end - previous, end
    stages["other"] = seconds - previous
    stages_cpu, previous = {}, 0.0
    for stage, end in sorted(stage_cpu_end.items(), key=lambda item: item[1]):
        stages_cpu[stage], previous = end - previous, end
    # the second start of the same run: sources hashed, prepared token files verified
    reuse_start = time.perf_counter()
    again = prepare_data(cfg)
    reuse_s = time.perf_counter() - reuse_start
    assert again.reused
    token_bytes = sum((data.directory / n).stat().st_size for n in ("train.bin", "val.bin"))
    Path(result_path).write_text(json.dumps({
        "seconds": seconds, "stages_s": stages, "stages_cpu_s": stages_cpu, "reused": data.reused,
        "reuse_s": reuse_s, "token_file_bytes": token_bytes,
        "train_tokens": len(data.train), "val_tokens": len(data.val), "vocab_size": data.vocab_size}))


# ---------------------------------------------------------------------------
# parent side

def measure(source: Path, kind: str, label: str) -> dict:
    """prepare_data on `source` from scratch in a child process."""
    import psutil

    work = Path(tempfile.mkdtemp(prefix="llmtui-prep-"))
    rss_file, result_file = work / "rss", work / "result.json"
    cmd = [sys.executable, "-c", _MEASURE, str(rss_file),
           sys.executable, str(Path(__file__).resolve()), "--child", str(source), kind,
           str(work / "prepared"), str(result_file)]
    print(f"{label}, {kind}: preparing ...", flush=True)
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO)
        intermediate = psutil.Process(proc.pid)
        tree_peak = 0
        while proc.poll() is None:
            tree_peak = max(tree_peak, tree_rss(intermediate))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"preparing {source} ({kind}) failed with exit code {proc.returncode}")
        result = json.loads(result_file.read_text())
        maxrss, cpu_s = rss_file.read_text().split()
        peak_rss_mb = int(maxrss) / 1024
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = source.stat().st_size
    return {"corpus": label, "path": str(source), "tokenizer": kind, "bytes": size,
            "mb_per_s": size / 1e6 / result["seconds"], "wall_s": wall,
            "peak_rss_mb": peak_rss_mb, "peak_tree_rss_mb": tree_peak / 2**20,
            # CPU seconds of the whole run (start-up, preparing process, BPE workers): on a busy
            # machine, MB per CPU second says what idle cores would do
            "tree_cpu_s": float(cpu_s), "mb_per_cpu_s": size / 1e6 / float(cpu_s), **result}


def tree_rss(intermediate) -> int:
    """Summed RSS of the intermediate's descendants (the preparing process and
    its workers), in bytes."""
    import psutil

    total = 0
    try:
        children = intermediate.children(recursive=True)
    except psutil.Error:
        return 0
    for p in children:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def generate_corpus(size_mb: int, fmt: str = "txt") -> Path:
    """A text file of about size_mb * 10^6 bytes: the builtin corpus repeated,
    cut at a line end (jsonl: as paragraph records, one JSON object a line)."""
    sys.path.insert(0, str(REPO))
    from llmtui.engine.data.corpus import builtin_text

    path = Path(tempfile.gettempdir()) / f"llmtui-bench-corpus-{size_mb}MB.{fmt}"
    target = size_mb * 10**6
    if path.is_file() and target - 10**6 < path.stat().st_size <= target:
        return path  # left by an earlier --keep-corpus run
    if fmt == "jsonl":
        paragraphs = [p for p in builtin_text().split("\n\n") if p.strip()]
        piece = "".join(json.dumps({"id": i, "text": p}, ensure_ascii=False) + "\n"
                        for i, p in enumerate(paragraphs)).encode("utf-8")
    else:
        piece = (builtin_text() + "\n\n").encode("utf-8")
    print(f"writing a {size_mb} MB corpus to {path} ...", flush=True)
    with open(path, "wb") as f:
        written = 0
        while written + len(piece) <= target:
            f.write(piece)
            written += len(piece)
        rest = piece[:target - written]
        f.write(rest[:rest.rfind(b"\n") + 1])
    return path


def other_cpu_load(seconds: float = 1.0) -> float:
    """System-wide CPU use in percent while this script idles: other work."""
    import psutil
    return psutil.cpu_percent(interval=seconds)


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=int, default=1000, help="generated corpus size (0: none)")
    p.add_argument("--data", type=Path, default=DATA, help="the small real corpus")
    p.add_argument("--tokenizers", nargs="+", default=["char", "bpe"], choices=["char", "bpe", "trained"])
    p.add_argument("--keep-corpus", action="store_true", help="keep the generated corpus for next time")
    p.add_argument("--format", choices=["txt", "jsonl"], default="txt",
                   help="the generated corpus: plain text or JSON Lines records")
    p.add_argument("--out", type=Path, default=OUT / "data_prep.json")
    args = p.parse_args()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(REPO.parent / "shared" / "tiktoken_cache"))
    OUT.mkdir(parents=True, exist_ok=True)
    load_before = other_cpu_load()

    corpora = [(args.data.resolve(), args.data.stem)]
    generated = generate_corpus(args.size_mb, args.format) if args.size_mb > 0 else None
    if generated:
        corpora.append((generated, f"generated {args.size_mb} MB" + (" jsonl" if args.format == "jsonl" else "")))
    results = []
    try:
        for path, label in corpora:
            for kind in args.tokenizers:
                results.append(measure(path, kind, label))
    finally:
        if generated and not args.keep_corpus:
            generated.unlink(missing_ok=True)
    load_after = other_cpu_load()

    checks = []
    for r in results:
        if r["tokenizer"] == "bpe":
            target = JSONL_BPE_TARGET_MB_S if r["corpus"].endswith("jsonl") else BPE_TARGET_MB_S
            checks.append({"name": f"BPE preparation speed, {r['corpus']}", "value": round(r["mb_per_s"], 1),
                           "unit": "MB/s", "target": f">= {target:g}",
                           "passed": r["mb_per_s"] >= target})
        if r["tokenizer"] == "trained":
            train_s = r["stages_s"].get("train tokenizer", float("nan"))
            r["train_tokenizer_mb_per_s"] = r["bytes"] / 1e6 / train_s
            # per CPU second (all threads): what an idle machine gets per core, load or not
            r["train_tokenizer_mb_per_cpu_s"] = r["bytes"] / 1e6 / r["stages_cpu_s"].get("train tokenizer", float("nan"))
            checks.append({"name": f"tokenizer training speed, {r['corpus']}",
                           "value": round(r["train_tokenizer_mb_per_s"], 2), "unit": "MB/s",
                           "target": f">= {TRAIN_TOKENIZER_TARGET_MB_S:.2f} (100 MB in 2 min)",
                           "passed": r["train_tokenizer_mb_per_s"] >= TRAIN_TOKENIZER_TARGET_MB_S})
        if r["corpus"].startswith("generated"):
            peak = max(r["peak_rss_mb"], r["peak_tree_rss_mb"])
            # the target is stated for a 1 GB corpus; smaller ones only show the trend
            checks.append({"name": f"peak RSS preparing {r['corpus']}, {r['tokenizer']}", "value": round(peak),
                           "unit": "MB", "target": f"<= {RSS_TARGET_MB:g}", "passed": peak <= RSS_TARGET_MB})

    print(f"\n{'corpus':22s}{'tokenizer':>10s}{'MB':>9s}{'MB/s':>8s}{'prep s':>8s}{'wall s':>8s}"
          f"{'RSS MB':>8s}{'tree MB':>8s}{'tokens':>14s}{'reuse s':>9s}  stages (s)")
    for r in results:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items())
        print(f"{r['corpus']:22s}{r['tokenizer']:>10s}{r['bytes'] / 1e6:>9.1f}{r['mb_per_s']:>8.1f}"
              f"{r['seconds']:>8.2f}{r['wall_s']:>8.2f}{r['peak_rss_mb']:>8.0f}{r['peak_tree_rss_mb']:>8.0f}"
              f"{r['train_tokens'] + r['val_tokens']:>14,}{r['reuse_s']:>9.2f}  {stages}")
    print("(reuse s: the next start on the same data: sources hashed, token files' sha256 verified)")
    print("(RSS MB: largest single process, exact; tree MB: summed over the processes, sampled)")
    for r in results:
        print(f"{r['corpus']}, {r['tokenizer']}: {r['mb_per_cpu_s']:.1f} MB per CPU second of the whole "
              f"process tree ({r['tree_cpu_s']:.1f} CPU s, start-up and the reuse check included)")
    for r in results:
        if "train_tokenizer_mb_per_cpu_s" in r:
            print(f"{r['corpus']}: tokenizer training {r['train_tokenizer_mb_per_s']:.2f} MB/s "
                  f"({r['train_tokenizer_mb_per_cpu_s']:.2f} MB per CPU second of the process)")
    for c in checks:
        print(f"{'PASS' if c['passed'] else 'FAIL'}  {c['name']}: {c['value']} {c['unit']} (target {c['target']})")
    if max(load_before, load_after) > 10:
        print(f"note: other processes used {load_before:.0f}% / {load_after:.0f}% of the CPUs "
              "before / after: the machine was busy and these figures are unreliable")
    report = {"other_cpu_percent": [load_before, load_after], "cpus": os.cpu_count(),
              "results": results, "checks": checks}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
