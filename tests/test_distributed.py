"""torchrun: data-parallel training on CPU with gloo; rank 0 alone writes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_jsonl

pytestmark = [pytest.mark.subprocess, pytest.mark.train]


def torchrun_cmd(tiny, *extra, restarts: int = 0) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "--max-restarts", str(restarts), "-m", "llmtui", "--", "--run", "cpu", "--plain",
            *sum((["-o", o] for o in tiny), []), *extra]


def torchrun(tiny, cwd, *extra):
    return subprocess.run(torchrun_cmd(tiny, *extra), cwd=cwd, capture_output=True, text=True, timeout=240)


def wait_for(condition, proc, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"torchrun ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} after {seconds:.0f} s"
        time.sleep(0.05)


def test_two_processes_train_one_run_hold_its_lock_resume_and_survive_a_killed_rank(tiny, tmp_path, capsys):
    """One run under torchrun (two processes, gloo), its launches shared by what they test.
    First: rank 0 holds the run's lock, a second writer is refused naming it, and SIGTERM
    stops both processes with `last` saved and the lock gone. Then `--resume` under
    `torchrun --max-restarts 1`: rank 0 (the lock's holder) is killed with SIGKILL after a
    checkpoint; torchrun restarts the group, which takes over the dead holder's lock,
    continues from that checkpoint and finishes: exit 0, every step recorded once (not
    once per process), the full step count in train_log.json."""
    from llmtui.cli import main
    from llmtui.engine.training import rundir

    every = 20
    args = ["-o", f"checkpoint.every_n_steps={every}", "-o", "eval.every_n_steps=100000"]
    first = subprocess.Popen(torchrun_cmd(tiny, "--max-iters", "100000", *args), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = tmp_path / "runs" / "tiny"
    metrics = run / "metrics.jsonl"
    try:
        wait_for(lambda: metrics.exists() and '"train"' in metrics.read_text(), first, "train record")
        holder = rundir.holder(run)
        assert holder is not None and holder.alive
        environ = Path(f"/proc/{holder.pid}/environ").read_bytes().split(b"\0")
        assert b"RANK=0" in environ and b"WORLD_SIZE=2" in environ
        second = main(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), "--resume"])
        assert second == 2 and f"PID {holder.pid}" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(120)
    assert rundir.holder(run) is None
    stopped = json.loads((run / "last" / "state.json").read_text())["step"]
    assert stopped >= 5

    # --resume under torchrun --max-restarts 1, and rank 0 killed after its first checkpoint
    max_steps = (stopped // every + 10) * every
    killed_after = (stopped // every + 1) * every
    again = subprocess.Popen(torchrun_cmd(tiny, "--resume", "--max-iters", str(max_steps), *args,
                                          restarts=1),
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run / f"step_{killed_after}" / "manifest.json").exists(), again, "checkpoint")
    holder = rundir.holder(run)
    assert holder is not None and holder.alive
    os.kill(holder.pid, signal.SIGKILL)
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-3000:]

    events = read_jsonl(metrics)
    starts = [e for e in events if e["kind"] == "start"]
    assert len(starts) == 3
    assert starts[0]["world_size"] == 2 and starts[0]["tokens_per_step"] == 2 * 4 * 16
    assert starts[0]["resumed_from"] is None and "restart" not in starts[0]
    # the --resume, then the restart from the checkpoint rank 0 left (or a later one)
    assert starts[1]["start_step"] == stopped and starts[1]["resumed_from"].endswith("last")
    assert starts[-1]["restart"] == 1 and starts[-1]["start_step"] >= killed_after
    assert starts[-1]["world_size"] == 2 and starts[-1]["resumed_from"]
    warnings = [e["message"] for e in events if e["kind"] == "warning"]
    assert any(f"took over the lock left by PID {holder.pid}" in w for w in warnings)
    assert any(w.startswith("torchrun restarted the processes (restart 1 of at most 1): continuing from")
               for w in warnings)
    # one record per step, not one per process, and none twice across the restart
    assert [e["step"] for e in events if e["kind"] == "train"] == list(range(5, max_steps + 1, 5))
    assert out.count(f"step {max_steps:,}/{max_steps:,}") == 1
    assert json.loads((run / "train_log.json").read_text())["steps"] == max_steps
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] == max_steps
    assert state["world_size"] == 2 and len(state["samplers"]) == 2
    assert state["samplers"][0] != state["samplers"][1]  # each rank its own batches
    assert rundir.holder(run) is None


def test_a_restarted_process_continues_from_the_checkpoint_its_job_wrote(tiny, monkeypatch):
    """torchrun restarts a process with TORCHELASTIC_RESTART_COUNT > 0: a start that
    would refuse the run (no --resume) or start it over (--overwrite) continues it
    instead, from the newest checkpoint the job saved. With --max-restarts and no step
    checkpoints the user is told a restart would start over."""
    from llmtui import load_config
    from llmtui.engine.training.events import StartEvent, WarningEvent
    from llmtui.engine.training.trainer import Trainer

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "2")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = Trainer(load_config("cpu", tiny + ["training.max_steps=6", "eval.every_n_steps=100"]))
    assert first.run().steps == 6
    assert any("checkpoint.every_n_steps = 0 saves no step checkpoints" in e.message
               for e in first.events.since(0)[1] if isinstance(e, WarningEvent))

    for restart, steps, overwrite in ((1, 9, False), (2, 12, True)):
        monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(restart))
        again = Trainer(load_config("cpu", tiny + [f"training.max_steps={steps}", "eval.every_n_steps=100"]),
                        overwrite=overwrite)
        assert again.run().steps == steps
        events = again.events.since(0)[1]
        start = next(e for e in events if isinstance(e, StartEvent))
        assert start.restart == restart and start.start_step == steps - 3 and start.resumed_from
        assert any(e.message.startswith(f"torchrun restarted the processes (restart {restart} of at "
                                        f"most 2): continuing from") and e.step == steps - 3
                   for e in events if isinstance(e, WarningEvent))


def test_a_restart_does_not_resume_a_run_an_earlier_job_wrote(tiny, monkeypatch):
    """A checkpoint saved before this torchrun job started is not the job's: a restart
    keeps the first attempt's answer (refused without --resume), never a silent resume."""
    from llmtui import load_config
    from llmtui.engine.errors import UserError
    from llmtui.engine.training import distributed
    from llmtui.engine.training.trainer import Trainer

    cfg = load_config("cpu", tiny + ["training.max_steps=4", "eval.every_n_steps=100"])
    Trainer(cfg).run()
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    # torchrun's agent (the parent process) started after that checkpoint was saved
    monkeypatch.setattr(distributed, "agent_started", lambda: time.time())
    with pytest.raises(UserError, match="already holds a run with checkpoints"):
        Trainer(load_config("cpu", tiny + ["training.max_steps=8"])).run()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_through_c10d_rendezvous_train_one_run(tiny, tmp_path, capsys):
    """Two "machines" (two torchrun agents on 127.0.0.1) meet through torchrun's c10d
    rendezvous: one writer, each record and checkpoint once, the loss of one process with
    the same global batch; then a resume on one process keeps that batch. One process a
    machine: two each took over 60 s on the 2-core CI machine."""
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
    from llmtui.cli import main
    capsys.readouterr()
    again = main([*args[:-6], "--max-iters", "12", "--resume",
                  "-o", "checkpoint.every_n_steps=0", "-o", "eval.every_n_steps=12"])
    assert again == 0, capsys.readouterr().err[-2000:]
    events = read_jsonl(run / "metrics.jsonl")
    start = [e for e in events if e["kind"] == "start"][-1]
    assert start["world_size"] == 1 and start["effective_batch"] == 8 and start["start_step"] == 10
    assert any("grad_accum_steps 1 -> 2 keeps the global batch of 8" in e["message"]
               for e in events if e["kind"] == "warning")


def test_fsdp_saves_one_consolidated_model_and_each_process_s_optimizer_shard_and_resumes_exactly(
        tiny, tmp_path):
    """training.parallel = "fsdp" (FSDP2's fully_shard, gloo on CPU): a checkpoint holds the whole
    model as one safetensors file and the optimizer state as one file per process, rows split as
    torch.chunk splits them, with an index, every file in the manifest. A resume on the same
    number of processes continues the exact loss curve; one process resumes it too, reading
    the whole optimizer state from the shard files. Evaluations show a sample, as unsharded."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file

    fsdp = ["-o", 'optimizer.name="adamw"', "-o", 'training.parallel="fsdp"', "-o", "training.ema_decay=0",
            "-o", "checkpoint.every_n_steps=5",
            "-o", "eval.every_n_steps=10", "-o", "logging.every_n_steps=1", "--max-iters", "10"]
    proc = torchrun(tiny, tmp_path, *fsdp)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "runs" / "tiny"
    step_5 = run / "step_5"
    with safe_open(str(step_5 / "model.safetensors"), "pt") as f:   # whole tensors, not shards
        assert f.get_tensor("transformer.wte.weight").shape[1] == 32
        assert f.get_tensor("transformer.h.0.mlp.c_fc.weight").shape == (128, 32)
    files = ["optim-rank00000-of-00002.safetensors", "optim-rank00001-of-00002.safetensors"]
    manifest = json.loads((step_5 / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    assert set(manifest["files"]) == {"model.safetensors", "state.safetensors", "state.json", "config.toml",
                                      "tokenizer.json", "optim-index.json", *files}
    index = json.loads((step_5 / "optim-index.json").read_text())
    assert index["world_size"] == 2 and index["files"] == files
    whole = load_file(step_5 / "state.safetensors")
    assert "optimizer.0.step" in whole and not any(k.endswith("exp_avg") for k in whole)  # no moment whole
    shards = [load_file(step_5 / name) for name in files]
    weights = load_file(step_5 / "model.safetensors")
    wte = index["tensors"]["optimizer.0.exp_avg"]
    rows = -(-wte["shape"][0] // 2)   # torch.chunk: the first rank ceil(n / 2) rows
    assert wte["rows"] == [[0, rows], [rows, wte["shape"][0]]]
    assert [s["optimizer.0.exp_avg"].shape[0] for s in shards] == [rows, wte["shape"][0] - rows]
    assert sum(s["optimizer.0.exp_avg"].numel() for s in shards) == weights["transformer.wte.weight"].numel()
    events = read_jsonl(run / "metrics.jsonl")
    straight = {e["step"]: e["loss"] for e in events if e["kind"] == "train"}
    # a sample at the evaluation: every rank takes part in its forward passes, rank 0 shows it
    assert [(e["step"], len(e["text"]) > 0) for e in events if e["kind"] == "sample"] == [(10, True)]

    shutil.copytree(run, tmp_path / "runs" / "again")
    again = torchrun(tiny, tmp_path, *fsdp, "-o", 'run.name="again"',
                     "--resume-from", str(tmp_path / "runs" / "again" / "step_5"))
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = {e["step"]: e["loss"] for e in read_jsonl(tmp_path / "runs" / "again" / "metrics.jsonl")
               if e["kind"] == "train"}
    assert [resumed[s] for s in range(6, 11)] == [straight[s] for s in range(6, 11)]

    # one process (2 -> 1): the whole optimizer state, read from both processes' files
    import torch

    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer
    shutil.copytree(run, tmp_path / "runs" / "alone")
    alone_cfg = load_config("cpu", tiny + ['run.name="alone"', 'optimizer.name="adamw"',
                                           'training.parallel="fsdp"', "training.ema_decay=0",
                                           "training.max_steps=10"])
    alone = Trainer(alone_cfg, resume_from=tmp_path / "runs" / "alone" / "step_5")
    adam = alone.setup().optimizers.adam
    first = adam.state[adam.param_groups[0]["params"][0]]
    assert torch.equal(first["exp_avg"], torch.cat([s["optimizer.0.exp_avg"] for s in shards]))
    assert torch.equal(first["exp_avg_sq"], torch.cat([s["optimizer.0.exp_avg_sq"] for s in shards]))
    assert float(first["step"]) == 5
    result = alone.run()
    assert result.steps == 10 and result.final_train_loss is not None
    state = json.loads((tmp_path / "runs" / "alone" / "last" / "manifest.json").read_text())
    assert state["format_version"] == 1 and "optim-index.json" not in state["files"]  # unsharded again
