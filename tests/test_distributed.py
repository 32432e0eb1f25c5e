"""torchrun: data-parallel training on CPU with gloo; rank 0 alone writes."""

import json
import subprocess
import sys

import pytest

from conftest import read_jsonl

pytestmark = [pytest.mark.subprocess, pytest.mark.train]


def torchrun(tiny, cwd, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "llmtui", "--", "--run", "cpu", "--plain",
           *sum((["-o", o] for o in tiny), []), *extra]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=240)


def test_two_processes_train_one_run_and_resume(tiny, tmp_path):
    args = ["--max-iters", "10", "-o", "checkpoint.every_n_steps=5", "-o", "eval.every_n_steps=5"]
    proc = torchrun(tiny, tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "tiny"
    events = read_jsonl(run / "metrics.jsonl")
    start = next(e for e in events if e["kind"] == "start")
    assert start["world_size"] == 2 and start["tokens_per_step"] == 2 * 4 * 16
    # one record per step, not one per process
    assert [e["step"] for e in events if e["kind"] == "train"] == [5, 10]
    assert proc.stdout.count("step 10/10") == 1
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["samplers"]) == 2
    assert state["samplers"][0] != state["samplers"][1]  # each rank its own batches

    again = torchrun(tiny, tmp_path, "--resume", "--max-iters", "15",
                     "-o", "checkpoint.every_n_steps=5", "-o", "eval.every_n_steps=5")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run / "train_log.json").read_text())["steps"] == 15


def test_rank_0_holds_the_run_lock(tiny, tmp_path):
    """Under torchrun the run's lock is rank 0's; a second writer is refused naming it."""
    import signal
    import time
    from pathlib import Path

    from llmtui.engine.training import rundir

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "llmtui", "--", "--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []),
           "--max-iters", "100000"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = tmp_path / "runs" / "tiny"
    try:
        deadline = time.monotonic() + 180
        while not ((run / "metrics.jsonl").exists() and "train" in (run / "metrics.jsonl").read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.2)
        holder = rundir.holder(run)
        assert holder is not None and holder.alive
        environ = Path(f"/proc/{holder.pid}/environ").read_bytes().split(b"\0")
        assert b"RANK=0" in environ and b"WORLD_SIZE=2" in environ
        second = subprocess.run([sys.executable, "-m", "llmtui", "--run", "cpu", "--plain",
                                 *sum((["-o", o] for o in tiny), []), "--resume"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"PID {holder.pid}" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    assert rundir.holder(run) is None
