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


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_through_c10d_rendezvous_train_one_run(tiny, tmp_path):
    """Two "machines" (two torchrun agents on 127.0.0.1) meet through torchrun's c10d
    rendezvous: one writer, each record and checkpoint once, the loss of one process with
    the same global batch; then a resume on one process keeps that batch. One process a
    machine: two each took over 60 s on the 2-core CI machine."""
    import os
    port = free_port()
    args = ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), "--max-iters", "10",
            "-o", "checkpoint.every_n_steps=5", "-o", "eval.every_n_steps=10"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank",
                               str(rank), "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                               f"127.0.0.1:{port}", "--rdzv-id", "llmtui-test", "-m", "llmtui", "--", *args],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [node.communicate(timeout=240) for node in nodes]
    assert [n.returncode for n in nodes] == [0, 0], [err[-2000:] for _, err in outs]
    run = tmp_path / "runs" / "tiny"
    events = read_jsonl(run / "metrics.jsonl")
    start = next(e for e in events if e["kind"] == "start")
    assert start["world_size"] == 2 and start["effective_batch"] == 8
    assert [e["step"] for e in events if e["kind"] == "train"] == [5, 10]
    assert sum(1 for e in events if e["kind"] == "checkpoint" and e["reason"] == "step") == 2
    assert sum(out.count("step 10/10") for out, _ in outs) == 1
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["samplers"]) == 2

    # one process with the same global batch (8 sequences a step) reaches the same loss
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer
    alone = Trainer(load_config("cpu", tiny + ['run.name="alone"', "training.batch_size=8",
                                               "training.max_steps=10", "eval.every_n_steps=10"])).run()
    nodes_val = [e["val_loss"] for e in events if e["kind"] == "eval"][-1]
    assert abs(alone.final_val_loss - nodes_val) < 0.1, (alone.final_val_loss, nodes_val)

    # resumed by one process: twice the accumulation keeps the global batch of 8
    again = subprocess.run([sys.executable, "-m", "llmtui", *args[:-6], "--max-iters", "12", "--resume",
                            "-o", "checkpoint.every_n_steps=0", "-o", "eval.every_n_steps=12"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    events = read_jsonl(run / "metrics.jsonl")
    start = [e for e in events if e["kind"] == "start"][-1]
    assert start["world_size"] == 1 and start["effective_batch"] == 8 and start["start_step"] == 10
    assert any("grad_accum_steps 1 -> 2 keeps the global batch of 8" in e["message"]
               for e in events if e["kind"] == "warning")



def test_fsdp_shards_training_and_saves_one_consolidated_checkpoint(tiny, tmp_path):
    """training.parallel = "fsdp" (FSDP2's fully_shard, gloo on CPU): checkpoints hold the whole
    model as one safetensors file and the whole optimizer state; a resume on the same number
    of processes continues the exact trajectory, and one process can resume it too."""
    import shutil

    from safetensors import safe_open

    fsdp = ["-o", 'optimizer.name="adamw"', "-o", 'training.parallel="fsdp"', "-o", "checkpoint.every_n_steps=5",
            "-o", "eval.every_n_steps=10", "--max-iters", "10"]
    proc = torchrun(tiny, tmp_path, *fsdp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "tiny"
    with safe_open(str(run / "step_5" / "model.safetensors"), "pt") as f:   # whole tensors, not shards
        assert f.get_tensor("transformer.wte.weight").shape[1] == 32
        assert f.get_tensor("transformer.h.0.mlp.c_fc.weight").shape == (128, 32)
    with safe_open(str(run / "step_5" / "state.safetensors"), "pt") as f:
        assert f.get_tensor("optimizer.0.exp_avg").shape == f.get_tensor("optimizer.0.exp_avg_sq").shape
    straight = {e["step"]: e["loss"] for e in read_jsonl(run / "metrics.jsonl") if e["kind"] == "train"}

    shutil.copytree(run, tmp_path / "runs" / "again")
    again = torchrun(tiny, tmp_path, *fsdp, "-o", 'run.name="again"',
                     "--resume-from", str(tmp_path / "runs" / "again" / "step_5"))
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = {e["step"]: e["loss"] for e in read_jsonl(tmp_path / "runs" / "again" / "metrics.jsonl")
               if e["kind"] == "train"}
    assert resumed[10] == straight[10]

    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer
    shutil.copytree(run, tmp_path / "runs" / "alone")
    alone = Trainer(load_config("cpu", tiny + ['run.name="alone"', 'optimizer.name="adamw"',
                                               'training.parallel="fsdp"', "training.max_steps=10"]),
                    resume_from=tmp_path / "runs" / "alone" / "step_5").run()
    assert alone.steps == 10 and alone.final_train_loss is not None
