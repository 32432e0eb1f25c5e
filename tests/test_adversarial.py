"""What a hostile or careless user does to llmtui, and what must not happen then.

Each case comes from an adversarial pass (issue 13): files of the user's deleted,
a record wiped by a refused start, two writers on one run, crafted checkpoints
crashing the process, absurd sizes allocated, faults ending in tracebacks, and
prepared data trusted blindly. Every refusal is one line on stderr, exit 2, no
traceback, and leaves the run exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from llmtui import load_config
from llmtui.cli import main
from llmtui.engine import fsutil
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training import rundir
from llmtui.engine.training.events import WarningEvent
from llmtui.engine.training.runs import run_info
from llmtui.engine.training.trainer import Trainer

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def tiny_args(tiny, *more) -> list[str]:
    return ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), *more]


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (to prove nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------
# 1. llmtui deletes and rewrites only what it made

@pytest.mark.train
def test_a_folder_of_the_users_is_refused_and_left_intact(tiny, tmp_path, capsys):
    home = tmp_path / "H"
    (home / "p" / "ext").mkdir(parents=True)
    (home / "p" / "ext" / "manifest.json").write_text("{}")
    (home / "p" / "ext" / "bg.js").write_text("code")
    (home / "p" / "config.toml").write_text("mine")
    before = snapshot(home)
    for flags in ([], ["--overwrite"], ["--resume"]):
        code, _, err = cli(capsys, *tiny_args(tiny, "-o", f'run.out_dir="{home}"', "-o", "run.name=p",
                                              *flags))
        assert code == 2 and "was not made by llmtui" in one_line(err) and str(home / "p") in err
        assert snapshot(home) == before


@pytest.mark.train
def test_overwrite_deletes_only_llmtuis_own_names(tiny, tmp_path):
    cfg = load_config("cpu", tiny + ["training.max_steps=10", "checkpoint.every_n_steps=5"])
    run = Trainer(cfg).run().run_dir
    (run / "ext").mkdir()
    (run / "ext" / "manifest.json").write_text("{}")           # looks like a checkpoint; is not
    (run / ".tmp-mine").mkdir()                                # a temp name llmtui never writes
    (run / "notes.txt").write_text("keep me")
    Trainer(cfg, overwrite=True).run()
    assert (run / "ext" / "manifest.json").read_text() == "{}"
    assert (run / ".tmp-mine").is_dir() and (run / "notes.txt").read_text() == "keep me"
    assert ckpt.checkpoint_step(run / "last") == 10
    # and a run directory is marked as llmtui's before anything else is written in it
    assert json.loads((run / rundir.MARKER).read_text())["version"] == rundir.MARKER_VERSION


@pytest.mark.train
def test_a_run_made_by_0_1_0_is_adopted(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE / "run", runs / "run")
    shutil.copy(FIXTURE / "corpus.txt", tmp_path / "corpus.txt")
    assert rundir.state_of(runs / "run") == "legacy"
    from test_compat import FIXTURE_RUN as OVERRIDES
    cfg = load_config(None, OVERRIDES + [f'run.out_dir="{runs}"', 'run.name="run"',
                                         f'data.source="{tmp_path / "corpus.txt"}"',
                                         f'data.prepared_dir="{tmp_path / "prepared"}"'])
    assert Trainer(cfg, resume_from=True).run().steps == 20
    assert rundir.state_of(runs / "run") == "ours"


# ---------------------------------------------------------------------------
# 2. a refused start changes nothing

@pytest.mark.train
def test_forgetting_resume_changes_nothing_in_the_run(tiny, capsys):
    code, _, _ = cli(capsys, *tiny_args(tiny, "--max-iters", "10"))
    assert code == 0
    run = Path(load_config("cpu", tiny).run.out_dir) / "tiny"
    before = snapshot(run)
    code, _, err = cli(capsys, *tiny_args(tiny, "--max-iters", "10"))
    assert code == 2 and "already holds a run" in one_line(err)
    assert snapshot(run) == before


@pytest.mark.train
def test_resuming_a_finished_run_says_so_and_touches_nothing(tiny, capsys):
    assert cli(capsys, *tiny_args(tiny, "--max-iters", "10"))[0] == 0
    run = Path(load_config("cpu", tiny).run.out_dir) / "tiny"
    before = snapshot(run)
    code, out, err = cli(capsys, *tiny_args(tiny, "--max-iters", "10", "--resume"))
    assert code == 0 and "finished at step 10 of 10" in out and not err
    assert snapshot(run) == before


# ---------------------------------------------------------------------------
# 3. one writer per run

@pytest.mark.train
def test_a_second_writer_is_refused_naming_the_holder(tiny, capsys):
    run = Path(load_config("cpu", tiny).run.out_dir) / "tiny"
    run.mkdir(parents=True)
    lock = rundir.RunLock(run)
    assert lock.acquire() is None
    try:
        info = rundir.holder(run)
        assert info.alive and info.pid == os.getpid()
        code, _, err = cli(capsys, *tiny_args(tiny, "--max-iters", "5"))
        assert code == 2 and f"is being trained by PID {os.getpid()}" in one_line(err)
        assert not (run / "metrics.jsonl").exists()
    finally:
        lock.release()
    assert rundir.holder(run) is None
    assert cli(capsys, *tiny_args(tiny, "--max-iters", "5"))[0] == 0


@pytest.mark.subprocess
@pytest.mark.train
def test_two_processes_on_one_run_one_is_refused(tiny, tmp_path):
    args = [sys.executable, "-m", "llmtui", *tiny_args(tiny)]
    first = subprocess.Popen(args + ["--max-iters", "100000"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "tiny"
    try:
        deadline = time.monotonic() + 60
        while not ((run / "metrics.jsonl").exists() and rundir.holder(run)):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        info = run_info(run)
        assert info.status == "running" and info.holder.pid == first.pid
        second = subprocess.run(args + ["--max-iters", "10", "--overwrite"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"PID {first.pid}" in one_line(second.stderr)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130
    assert run_info(run).status == "interrupted" and rundir.holder(run) is None
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in lines].count("start") == 1   # the refused one wrote nothing


@pytest.mark.subprocess
@pytest.mark.train
def test_a_lock_left_by_a_dead_process_is_reported_and_taken_over(tiny, capsys):
    run = Path(load_config("cpu", tiny).run.out_dir) / "tiny"
    rundir.claim(run)     # a run that started, then was killed during data preparation
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / rundir.LOCK).write_text(json.dumps({"pid": dead.pid, "host": "h", "started": 1.7e9}))
    info = run_info(run)
    assert info is not None and info.status == "interrupted" and not info.holder.alive
    code, out, _ = cli(capsys, *tiny_args(tiny, "--max-iters", "5"))
    assert code == 0 and f"took over the lock left by PID {dead.pid}" in out


# ---------------------------------------------------------------------------
# 4, 5. crafted and damaged checkpoints

def _train_three_checkpoints(tiny) -> tuple[object, Path]:
    cfg = load_config("cpu", tiny + ["training.max_steps=30", "checkpoint.every_n_steps=10",
                                     "checkpoint.keep_last=5", "training.save_best=false"])
    return cfg, Trainer(cfg).run().run_dir


def _rehash(path: Path) -> None:
    """Rewrite the manifest so the (edited) files verify: the crafted-checkpoint case."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": fsutil.sha256_file(path / name),
                                   "size": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


def _unlink_last(run: Path) -> None:
    shutil.rmtree(run / "last")   # `last` shares files with step_30; resume must pick step_30


@pytest.mark.train
@pytest.mark.parametrize("shape", [(3,), (2, 2)])
def test_optimizer_moments_of_the_wrong_shape_are_refused_not_run(tiny, capsys, shape):
    cfg, run = _train_three_checkpoints(tiny)
    _unlink_last(run)
    crafted = run / "step_30"
    tensors = load_file(crafted / "state.safetensors")
    name = next(k for k in tensors if k.startswith("optimizer.") and k.endswith("exp_avg"))
    import torch
    tensors[name] = torch.zeros(shape)
    save_file(tensors, crafted / "state.safetensors")
    _rehash(crafted)
    # with a path: one line naming the file and tensor, exit 2
    code, _, err = cli(capsys, *tiny_args(tiny, "--max-iters", "40", "--resume", str(crafted)))
    assert code == 2 and name in one_line(err) and "state.json" in err
    # without: the next intact checkpoint (step_20) takes over, with a warning
    code, out, err = cli(capsys, *tiny_args(tiny, "--max-iters", "40", "--resume"))
    assert code == 0 and "skipped damaged checkpoint" in out and "step_20" in out, err
    assert json.loads((run / "train_log.json").read_text())["steps"] == 40


@pytest.mark.train
def test_an_edited_negative_step_is_refused_and_overwrites_nothing(tiny, capsys):
    _, run = _train_three_checkpoints(tiny)
    _unlink_last(run)
    state = json.loads((run / "step_30" / "state.json").read_text())
    state["step"] = -5
    (run / "step_30" / "state.json").write_text(json.dumps(state))
    _rehash(run / "step_30")
    step_10 = snapshot(run / "step_10")
    code, _, err = cli(capsys, *tiny_args(tiny, "--max-iters", "40", "--resume", str(run / "step_30")))
    assert code == 2 and '"step" = -5 is not allowed' in one_line(err)
    assert snapshot(run / "step_10") == step_10
    code, out, _ = cli(capsys, *tiny_args(tiny, "--max-iters", "40", "--resume"))
    assert code == 0 and "resumed from" in out and "step_20" in out


@pytest.mark.train
def test_one_changed_byte_in_a_manifest_is_a_damaged_checkpoint(tiny, capsys):
    _, run = _train_three_checkpoints(tiny)
    _unlink_last(run)
    manifest = run / "step_30" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"size"', '"sizE"', 1))
    code, out, err = cli(capsys, *tiny_args(tiny, "--max-iters", "40", "--resume"))
    assert code == 0 and "step_20" in out and "Traceback" not in err
    code, _, err = cli(capsys, "sample", str(run / "step_30"), "--tokens", "5")
    assert code == 2 and "manifest.json" in one_line(err)


# ---------------------------------------------------------------------------
# 6. refusal before allocation

@pytest.mark.unit
def test_an_absurd_model_is_refused_before_allocation(tiny, capsys):
    code, _, err = cli(capsys, *tiny_args(tiny, "-o", "model.n_layer=96", "-o", "model.n_embd=16384",
                                          "-o", "model.n_head=128"))
    line = one_line(err)
    assert code == 2 and "will not fit" in line and "GiB" in line and "--force" in line
    assert "model.block_size" in line or "training.batch_size" in line


@pytest.mark.unit
def test_a_meta_json_claiming_a_huge_vocabulary_is_refused(tiny, tmp_path, capsys):
    tokens = tmp_path / "tok"
    tokens.mkdir()
    np.arange(5000, dtype=np.uint16).tofile(tokens / "train.bin")
    (tokens / "meta.json").write_text(json.dumps({"vocab_size": 10**12, "chars": ["a", "b"]}))
    code, _, err = cli(capsys, *tiny_args(tiny, "-o", f'data.source="{tokens / "train.bin"}"'))
    assert code == 2 and "will not fit" in one_line(err)


@pytest.mark.train
def test_a_very_long_context_warns_with_the_estimated_step_time(tiny, monkeypatch):
    # The estimate divides the step's FLOPs by this machine's matmul peak: pin the peak
    # (the hardware boundary) at a 2-core CPU's 100 GFLOP/s, or a machine with a faster
    # matmul (AVX-512) estimates under the warning's threshold and the test says nothing.
    from llmtui.engine.training import trainer as trainer_module
    monkeypatch.setattr(trainer_module, "remembered_peak", lambda *args, **kwargs: 1e11)
    cfg = load_config("cpu", tiny + ["model.block_size=65536", "training.batch_size=1",
                                     "data.source=builtin", "data.val_fraction=0.5",
                                     "model.n_embd=32", "model.n_head=2"])
    trainer = Trainer(cfg)
    said = []

    def on_event(event):
        if isinstance(event, WarningEvent) and "per step" in event.message:
            said.append(event.message)
            trainer.stop()
    trainer.subscribe(on_event)
    assert trainer.run().steps == 0
    assert said and "estimated" in said[0] and " h for the " in said[0]


# ---------------------------------------------------------------------------
# 7. faults that must be one line, the right exit code

@pytest.mark.train
def test_resume_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tiny, monkeypatch, capsys):
    assert cli(capsys, *tiny_args(tiny, "--max-iters", "10"))[0] == 0
    run = Path(load_config("cpu", tiny).run.out_dir) / "tiny"

    def full(path, data):  # the filesystem boundary: every synced write fails like a full disk
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fsutil, "write_synced", full)
    code, _, err = cli(capsys, *tiny_args(tiny, "--max-iters", "20", "--resume"))
    assert code == 2 and "No space left on device" in one_line(err)
    assert not [p for p in run.iterdir() if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]


@pytest.mark.unit
def test_a_fresh_run_on_a_full_disk_is_one_line(tiny, monkeypatch, capsys):
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and ("w" in mode or "a" in mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)
    monkeypatch.setattr("builtins.open", full_open)
    code, _, err = cli(capsys, *tiny_args(tiny, "--max-iters", "5"))
    assert code == 2 and "No space left on device" in one_line(err)


@pytest.mark.unit
def test_nul_characters_in_paths_are_one_line(tiny, capsys):
    for key in ("run.out_dir", "data.prepared_dir"):
        code, _, err = cli(capsys, *tiny_args(tiny, "-o", f'{key}="a\\u0000b"'))
        assert code == 2 and key in one_line(err) and "NUL" in err


@pytest.mark.unit
@pytest.mark.parametrize("args, word", [(["--top-k", "-3"], "--top-k"), (["--tokens", "0"], "--tokens"),
                                        (["--device", "bogus"], "--device"),
                                        (["--temperature", "nan"], "--temperature")])
def test_bad_sample_options_are_one_line(tmp_path, capsys, args, word):
    code, _, err = cli(capsys, "sample", str(tmp_path), *args)
    assert code == 2 and word in one_line(err)


@pytest.mark.unit
def test_device_bogus_is_refused(tiny, capsys):
    code, _, err = cli(capsys, *tiny_args(tiny, "--device", "bogus"))
    assert code == 2 and "--device" in one_line(err)
    code, _, err = cli(capsys, *tiny_args(tiny, "-o", 'run.device="bogus"'))
    assert code == 2 and "run.device" in one_line(err)


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for the signal (the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.subprocess
@pytest.mark.train
def test_sigterm_during_start_up_exits_130_with_a_message(tiny, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "llmtui", *tiny_args(tiny)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _catches(proc.pid, signal.SIGTERM):   # llmtui's handler is in; torch still loading
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "SIGTERM" in err and "Traceback" not in err


@pytest.mark.train
def test_a_diverged_run_says_so_on_stderr_with_the_good_step_count(tiny, monkeypatch, capsys):
    """A numerical blow-up (weights turned NaN during step 13, as a too-high learning
    rate would) ends with exit 1, the reason on stderr, and a summary counting the
    12 steps whose loss was finite."""
    import torch

    from llmtui.engine.model.gpt import GPT
    real_forward, calls = GPT.forward, {"train": 0}

    def blow_up(self, idx, targets=None, **kwargs):   # kwargs: the generator's KV cache
        if self.training:
            calls["train"] += 1
            if calls["train"] == 13:
                with torch.no_grad():
                    self.lm_head.weight.fill_(float("nan"))
        return real_forward(self, idx, targets, **kwargs)
    monkeypatch.setattr(GPT, "forward", blow_up)
    code, out, err = cli(capsys, *tiny_args(tiny, "--max-iters", "40", "-o", "logging.every_n_steps=1"))
    assert code == 1 and "non-finite" in err and "step 13" in err and "non-finite" not in out
    run = Path(load_config("cpu", tiny).run.out_dir) / "tiny"
    summary = json.loads((run / "train_log.json").read_text())
    assert summary["stop_reason"] == "nonfinite_loss" and summary["steps"] == 12


# ---------------------------------------------------------------------------
# 8. prepared data

@pytest.mark.train
def test_prepared_tokens_corrupted_in_place_are_prepared_again(tiny, tmp_path, capsys):
    tiny = tiny + [f'data.prepared_dir="{tmp_path / "prep"}"']
    assert cli(capsys, *tiny_args(tiny, "--max-iters", "5", "-o", "run.name=a"))[0] == 0
    prepared = next((tmp_path / "prep").glob("builtin-char-*"))
    train = prepared / "train.bin"
    data = bytearray(train.read_bytes())
    data[100:104] = b"\xff\xff\xff\xff"          # same size, ids far outside the vocabulary
    train.write_bytes(bytes(data))
    code, out, err = cli(capsys, *tiny_args(tiny, "--max-iters", "5", "-o", "run.name=b"))
    assert code == 0 and "do not match the hashes" in out, err
    meta = json.loads((prepared / "meta.json").read_text())
    assert hashlib.sha256(train.read_bytes()).hexdigest() == meta["files"]["train.bin"]


@pytest.mark.subprocess
def test_leftover_temp_folders_are_removed_only_when_ours_and_dead(tiny, tmp_path):
    from llmtui.engine.data.prepare import LEFTOVER_MARK, prepare_data
    root = tmp_path / "prep"
    tiny = tiny + [f'data.prepared_dir="{root}"']
    root.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ours = root / ".tmp-builtin-char-abc-x1"
    ours.mkdir()
    import socket
    (ours / LEFTOVER_MARK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    alive = root / ".tmp-builtin-char-abc-x2"
    alive.mkdir()
    (alive / LEFTOVER_MARK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    users = root / ".tmp-my-own"
    users.mkdir()
    prepare_data(load_config("cpu", tiny))
    assert not ours.exists() and alive.exists() and users.exists()


@pytest.mark.subprocess
@pytest.mark.train
def test_ctrl_c_during_a_long_preparation_stops_it_and_keeps_nothing(tiny, tmp_path):
    corpus = tmp_path / "big.txt"
    line = "the quick brown fox jumps over the lazy dog, again and again and again. " * 50 + "\n"
    with open(corpus, "w") as f:
        for i in range(12000):   # ~43 MB of text: several seconds of BPE tokenizing here
            f.write(f"{i} {line}")
    prepared = tmp_path / "prep"
    proc = subprocess.Popen([sys.executable, "-m", "llmtui", *tiny_args(
        tiny, "-o", f'data.source="{corpus}"', "-o", f'data.prepared_dir="{prepared}"',
        "--tokenizer", "bpe")], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(prepared.glob(".tmp-*")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "during data preparation" in err and "Traceback" not in err
    assert not prepared.exists()       # nothing half-written left, not even the folder it made
