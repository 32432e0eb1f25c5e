"""Checkpoints a user can trust: atomic, verified, exactly resumable, never executable."""

from __future__ import annotations

import errno
import json
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine import fsutil
from llmtui.engine.errors import CheckpointError
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.trainer import Trainer

RESUMABLE = ["training.max_steps=40", "logging.every_n_steps=1", "eval.every_n_steps=10",
             "model.dropout=0.1", "checkpoint.every_n_steps=0"]


def losses(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_jsonl(run_dir / "metrics.jsonl") if e["kind"] == "train"}


def stop_at(step: int):
    """A listener that asks the trainer to stop once it logged `step` (like Ctrl-C)."""
    holder = {}

    def listener(event):
        if event.kind == "train" and event.step == step:
            holder["trainer"].stop("interrupted")
    return holder, listener


def interrupted_then_resumed(cfg, at_step: int) -> Trainer:
    holder, listener = stop_at(at_step)
    first = Trainer(cfg, listeners=[listener])
    holder["trainer"] = first
    assert first.run().stop_reason == "interrupted"
    assert json.loads((first.run_dir / "last" / "state.json").read_text())["step"] == at_step
    second = Trainer(cfg, resume_from=True)
    second.run()
    return second


@pytest.mark.train
@pytest.mark.parametrize("sampling", ["shuffle", "random"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(tiny, sampling):
    chosen = RESUMABLE + [f'training.sampling="{sampling}"']
    straight = load_config("cpu", tiny + chosen + ['run.name="straight"'])
    Trainer(straight).run()
    broken = load_config("cpu", tiny + chosen + ['run.name="broken"'])
    resumed = interrupted_then_resumed(broken, at_step=17)
    assert resumed.restored_from.name == "last"

    a, b = losses(resumed.run_dir.parent / "straight"), losses(resumed.run_dir)
    assert sorted(a) == sorted(b) == list(range(1, 41))
    assert a == b  # exact float equality at every step
    for name in ("model.safetensors", "state.safetensors"):
        assert (resumed.run_dir.parent / "straight" / "last" / name).read_bytes() == \
            (resumed.run_dir / "last" / name).read_bytes(), name
    evals = [e for e in read_jsonl(resumed.run_dir / "metrics.jsonl") if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20, 30, 40]  # no duplicated records


@pytest.mark.train
def test_raising_max_steps_on_resume_extends_training(tiny):
    cfg = load_config("cpu", tiny + ["training.max_steps=20"])
    Trainer(cfg).run()
    longer = load_config("cpu", tiny + ["training.max_steps=30"])
    result = Trainer(longer, resume_from=True).run()
    assert result.steps == 30
    assert sorted(losses(result.run_dir))[-1] == 30


@pytest.mark.train
def test_resume_refuses_a_checkpoint_that_does_not_match(tiny, capsys):
    Trainer(load_config("cpu", tiny + ["training.max_steps=10"])).run()
    for change, word in (["model.n_embd=48"], "model shape"), (["tokenizer.kind=bpe"], "tokenizer"):
        code = main(["--run", "cpu", "--plain", "--resume", *sum((["-o", o] for o in tiny + change), [])])
        err = capsys.readouterr().err.strip()
        assert code == 2 and word in err and "\n" not in err, err


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.train
def test_corrupt_and_truncated_files_are_named(tiny, capsys):
    result = Trainer(load_config("cpu", tiny + ["checkpoint.every_n_steps=10"])).run()
    last = result.run_dir / "last"
    _flip_byte(last / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors.*sha256"):
        ckpt.verify(last)
    step_20 = result.run_dir / "step_20" / "state.safetensors"
    step_20.write_bytes(step_20.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="state.safetensors.*truncated"):
        ckpt.verify(step_20.parent)

    # resuming from the damaged checkpoint by path: one line naming the file
    code = main(["--run", "cpu", "--plain", "--resume", str(last),
                 *sum((["-o", o] for o in tiny), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "model.safetensors" in err and "\n" not in err
    # resuming the run: the newest intact checkpoint is used instead, with a warning
    code = main(["--run", "cpu", "--plain", "--resume", "--max-iters", "35",
                 *sum((["-o", o] for o in tiny if not o.startswith("training.max_steps")), [])])
    out = capsys.readouterr().out
    assert code == 0
    assert "skipped damaged checkpoint" in out and "model.safetensors" in out
    start = [e for e in read_jsonl(result.run_dir / "metrics.jsonl") if e["kind"] == "start"][-1]
    # last and step_30 share their files (hard links), so both are damaged: best is intact
    assert start["start_step"] == 30 and start["resumed_from"].endswith("best")


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _rewrite_manifest(path: Path) -> None:
    """An attacker controls the whole directory, so the hashes match the payload."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": fsutil.sha256_file(path / name),
                                   "size": (path / name).stat().st_size}
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.train
@pytest.mark.parametrize("target", ["state.json", "model.safetensors", "state.safetensors"])
def test_pickle_payload_is_refused_and_never_runs(tiny, tmp_path, capsys, target):
    result = Trainer(load_config("cpu", tiny + ["training.max_steps=10"])).run()
    marker = tmp_path / "payload-ran"
    last = result.run_dir / "last"
    if target == "model.safetensors":
        torch.save({"weights": _Payload(marker)}, last / target)  # a classic .pt pickle
    else:
        (last / target).write_bytes(pickle.dumps(_Payload(marker)))
    _rewrite_manifest(last)
    code = main(["--run", "cpu", "--plain", "--resume", str(last), *sum((["-o", o] for o in tiny), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and target in err and "\n" not in err, err
    assert not marker.exists()


@pytest.mark.unit
def test_compiled_model_saves_clean_names(tiny):
    from llmtui.engine.model.gpt import GPT, GPTConfig
    from llmtui.engine.training.snapshot import clean_model_state
    model = GPT(GPTConfig(vocab_size=10, n_layer=1, n_head=2, n_embd=16, block_size=8))
    compiled = torch.compile(model)  # wrapping only; nothing is compiled until called
    names = set(clean_model_state(compiled))
    assert names == set(clean_model_state(model))
    assert not any("_orig_mod" in n for n in names) and "lm_head.weight" not in names


@pytest.mark.train
def test_rotation_keeps_exactly_what_the_config_says(tiny):
    cfg = load_config("cpu", tiny + ["training.max_steps=40", "checkpoint.every_n_steps=5",
                                     "checkpoint.keep_last=3", "checkpoint.keep_best=2",
                                     "eval.every_n_steps=5"])
    result = Trainer(cfg).run()
    names = sorted(p.name for p in result.run_dir.iterdir() if p.is_dir())
    steps = sorted(n for n in names if n.startswith("step_"))
    assert steps == ["step_30", "step_35", "step_40"]
    bests = ckpt.best_dirs(result.run_dir)
    assert len(bests) == 2 and bests[0][1].name == "best"
    evals = [e["val_loss"] for e in read_jsonl(result.metrics_path) if e["kind"] == "eval"]
    assert bests[0][0] == pytest.approx(min(evals))
    assert "last" in names
    for name in names:
        ckpt.verify(result.run_dir / name)


@pytest.mark.train
def test_nan_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(tiny):
    cfg = load_config("cpu", tiny + ["training.max_steps=60", "checkpoint.every_n_steps=10",
                                     "logging.every_n_steps=1", "eval.every_n_steps=20"])
    holder = {}

    def poison(event):  # a numerical blow-up in step 13, as a too-high LR would cause
        if event.kind == "train" and event.step == 12:
            holder["trainer"].setup_done.raw_model.transformer.wte.weight.data.fill_(float("nan"))

    trainer = Trainer(cfg, listeners=[poison])
    holder["trainer"] = trainer
    result = trainer.run()
    assert result.stop_reason == "nonfinite_loss"
    errors = [e for e in read_jsonl(result.metrics_path) if e["kind"] == "error"]
    assert errors and errors[0]["nonfinite_step"] == 13 and "step 13" in errors[0]["message"]
    state = json.loads((result.run_dir / "last" / "state.json").read_text())
    assert state["step"] == 10
    ckpt.verify(result.run_dir / "last")


@pytest.mark.train
def test_disk_full_keeps_the_previous_checkpoint(tiny, monkeypatch, capsys):
    Trainer(load_config("cpu", tiny + ["training.max_steps=10"])).run()
    run_dir = Path(load_config("cpu", tiny).run.out_dir) / "tiny"
    before = (run_dir / "last" / "model.safetensors").read_bytes()

    def full(path, data):  # the filesystem boundary: every write fails like a full disk
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fsutil, "write_synced", full)
    code = main(["--run", "cpu", "--plain", "--resume", "--max-iters", "20",
                 *sum((["-o", o] for o in tiny if not o.startswith("training.max_steps")), [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "No space left on device" in err and "\n" not in err
    assert (run_dir / "last" / "model.safetensors").read_bytes() == before
    ckpt.verify(run_dir / "last")
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.train
def test_unwritable_out_dir_is_one_line(tiny, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []),
                 "-o", f'run.out_dir="{blocker}"'])
    err = capsys.readouterr().err.strip()
    assert code == 2 and str(blocker) in err and "\n" not in err


# --- processes that die ---------------------------------------------------

def _cli(tiny, *extra) -> list[str]:
    return [sys.executable, "-m", "llmtui", "--run", "cpu", "--plain",
            *sum((["-o", o] for o in tiny), []), *extra]


def _wait_for(proc, predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.subprocess
@pytest.mark.train
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_and_exits_130(tiny, tmp_path, sig):
    run_dir = tmp_path / "runs" / "tiny"
    proc = subprocess.Popen(_cli(tiny, "--max-iters", "100000"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _wait_for(proc, lambda: (run_dir / "metrics.jsonl").exists() and
                     any(e["kind"] == "train" for e in read_jsonl(run_dir / "metrics.jsonl")))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ckpt.verify(run_dir / "last")
    saved = json.loads((run_dir / "last" / "state.json").read_text())["step"]
    assert saved >= 5
    assert "Traceback" not in err


@pytest.mark.subprocess
@pytest.mark.train
def test_second_interrupt_exits_at_once(tiny, tmp_path):
    proc = subprocess.Popen(_cli(tiny, "--max-iters", "100000"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / "tiny"
    assert _wait_for(proc, lambda: (run_dir / "metrics.jsonl").exists())
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130


@pytest.mark.subprocess
@pytest.mark.train
def test_kill_9_at_random_instants_always_leaves_a_resumable_run(tiny, tmp_path):
    """6 kill -9 trials; each next trial resumes from what the killed one left. Every kill
    comes after the process saved a checkpoint of its own: a kill during start-up, before it
    writes anything, would prove nothing about saving."""
    rng = random.Random(20261121)
    run_dir = tmp_path / "runs" / "tiny"
    # a checkpoint every step, so kills land during saves as well as during steps
    args = ["-o", "checkpoint.every_n_steps=1", "-o", "checkpoint.keep_last=2",
            "-o", "eval.every_n_steps=3", "--max-iters", "100000"]

    def newest_saved() -> int:
        return max((ckpt.checkpoint_step(p) for p in ckpt.candidates(run_dir)), default=-1)

    for trial in range(6):
        resume = ["--resume"] if trial else []
        before = newest_saved()
        proc = subprocess.Popen(_cli(tiny, *args, *resume), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_for(proc, lambda: newest_saved() > before, timeout=120):
            proc.kill()
            raise AssertionError(f"trial {trial}: no new checkpoint before the kill "
                                 f"({proc.communicate()[1].decode()[-300:]})")
        saved = newest_saved()
        time.sleep(rng.uniform(0.0, 1.0))   # then a random instant among steps, evals and saves
        proc.kill()
        proc.wait()
        path, _ = ckpt.latest_intact(run_dir)
        assert path is not None, f"trial {trial}: no intact checkpoint left"
        assert ckpt.load(path).state.run.step >= saved, f"trial {trial}: lost the step {saved} checkpoint"
    steps_before = ckpt.checkpoint_step(ckpt.latest_intact(run_dir)[0])
    done = subprocess.run(_cli(tiny, "--resume", "--max-iters", str(steps_before + 3)), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads((run_dir / "train_log.json").read_text())["steps"] == steps_before + 3


@pytest.mark.train
def test_rotation_never_deletes_the_checkpoint_being_resumed_from(tiny):
    cfg = load_config("cpu", tiny + ["training.max_steps=10", "checkpoint.every_n_steps=5",
                                     "checkpoint.keep_last=1"])
    first = Trainer(cfg).run()
    assert sorted(p.name for p in first.run_dir.glob("step_*")) == ["step_10"]
    step_10 = first.run_dir / "step_10"
    longer = load_config("cpu", tiny + ["training.max_steps=20", "checkpoint.every_n_steps=5",
                                        "checkpoint.keep_last=1"])
    Trainer(longer, resume_from=step_10).run()
    assert step_10.is_dir()  # resumed from: kept although keep_last = 1
    ckpt.verify(step_10)
    assert (first.run_dir / "step_20").is_dir() and not (first.run_dir / "step_15").exists()


@pytest.mark.unit
def test_a_global_batch_another_world_size_cannot_make_is_refused_in_one_line():
    from llmtui.engine.errors import ResumeMismatch
    from llmtui.engine.training.resume import global_batch_accum

    assert global_batch_accum(4, 1, 4, 1, "ckpt") == 4
    assert global_batch_accum(4, 2, 2, 4, "ckpt") == 1
    with pytest.raises(ResumeMismatch) as refused:
        global_batch_accum(3, 1, 2, 4, "ckpt")       # 6 sequences; 4 processes of 3 make 12
    message = str(refused.value)
    assert "\n" not in message and "global batch of 6" in message and "resume on 2 processes" in message


@pytest.mark.train
def test_optimizer_settings_changed_before_a_resume_take_effect(tiny):
    """Loading an optimizer's state restores the checkpoint's hyperparameters (torch's way);
    a weight decay or NorMuon setting changed in the config before --resume was then
    ignored while the run's config.toml said otherwise. Now the config's are used, and
    said; an unchanged config resumes without a word (and bit for bit, test above)."""
    first = load_config("cpu", tiny + ['optimizer.name="muon"', "optimizer.weight_decay=0.1",
                                       "optimizer.muon_beta2=0", "training.max_steps=20"])
    Trainer(first).run()
    changed = load_config("cpu", tiny + ['optimizer.name="muon"', "optimizer.weight_decay=0.05",
                                         "optimizer.muon_beta2=0.95", "training.max_steps=30"])
    events = []
    trainer = Trainer(changed, resume_from=True, listeners=[events.append])
    trainer.run()
    said = [e.message for e in events if e.kind == "warning" and "optimizer settings changed" in e.message]
    assert len(said) == 1 and "weight_decay 0.1 -> 0.05" in said[0] and "beta2 off -> 0.95" in said[0], said
    optimizers = trainer.setup_done.optimizers
    assert all(g["weight_decay"] == 0.05 and g["beta2"] == 0.95 for g in optimizers.muon.param_groups)
    assert {g["weight_decay"] for g in optimizers.adam.param_groups} == {0.05, 0.0}   # gains: never decayed
    assert all("second_momentum_buffer" in s for s in optimizers.muon.state.values())
    again = load_config("cpu", tiny + ['optimizer.name="muon"', "optimizer.weight_decay=0.05",
                                       "optimizer.muon_beta2=0.95", "training.max_steps=40"])
    events.clear()
    Trainer(again, resume_from=True, listeners=[events.append]).run()
    assert not [e for e in events if e.kind == "warning" and "optimizer settings" in e.message]
