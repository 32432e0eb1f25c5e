"""A start is checked before it touches anything, and no failure costs a checkpoint (issue 16).

Refused starts leave the disk byte for byte as it was (also with --overwrite, which
removes the old run only once the new one has saved a checkpoint); llmtui deletes
only the checkpoint folders its record lists; the lock file goes at a clean end and
is watched while training; SIGHUP, closed pipes and a full disk save `last`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.errors import RecordError, UserError
from llmtui.engine.training import rundir
from llmtui.engine.training.events import StartEvent, TrainEvent, WarningEvent
from llmtui.engine.training.runs import delete_run
from llmtui.engine.training.trainer import Trainer


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file and folder under `folder` (hidden ones too), with the files' bytes."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def run_args(tiny, *more) -> list[str]:
    return ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), *more]


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory, shared_data_dir):
    """One tiny finished run (best/, last/, step_10..30) trained for the whole module."""
    from conftest import TINY
    root = tmp_path_factory.mktemp("trained")
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root}"', f'data.prepared_dir="{shared_data_dir}"',
                                     'run.name="tiny"', 'run.device="cpu"', "checkpoint.every_n_steps=10"])
    return Trainer(cfg).run().run_dir


@pytest.fixture
def finished_run(trained_once, tiny, tmp_path):
    """A copy of that run where the `tiny` overrides put their run."""
    import shutil
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(trained_once, run, symlinks=True)
    assert {"best", "last", "step_30"} <= {p.name for p in run.iterdir()}
    return run


def _bad_inputs(tmp_path: Path) -> dict[str, list[str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café au lait, crème brûlée\n".encode("latin-1") * 200)
    floats = tmp_path / "floats.bin"
    np.arange(5000, dtype=np.float64).tofile(floats)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fresh = f'data.prepared_dir="{tmp_path / "prepared-fresh"}"'
    return {
        "will not fit": ["model.n_layer=96", "model.n_embd=16384", "model.n_head=128"],
        "vocabulary too small": ["model.vocab_size=10"],
        "tracker not installed": ['logging.wandb_project="p"'],
        "unknown encoding": ['tokenizer.kind="bpe"', 'tokenizer.encoding="no-such-encoding"'],
        "prepared_dir is a file": [f'data.prepared_dir="{a_file}"'],
        "empty corpus": [f'data.source="{empty}"', fresh],
        "latin-1 corpus": [f'data.source="{latin}"', fresh],
        "float64 tokens": [f'data.source="{floats}"', fresh],
    }


CASES = ["will not fit", "vocabulary too small", "tracker not installed", "unknown encoding",
         "prepared_dir is a file", "empty corpus", "latin-1 corpus", "float64 tokens"]


@pytest.mark.train
@pytest.mark.parametrize("case", CASES)
def test_refused_overwrite_keeps_every_checkpoint_and_the_record(case, finished_run, tiny, tmp_path, capsys):
    before = snapshot(finished_run)
    code, _, err = cli(capsys, *run_args(tiny + _bad_inputs(tmp_path)[case], "--overwrite"))
    assert code == 2
    one_line(err)
    assert snapshot(finished_run) == before


@pytest.mark.unit
@pytest.mark.parametrize("case", CASES)
def test_refused_new_run_creates_no_folder(case, tiny, tmp_path, capsys):
    out_dir = tmp_path / "new" / "runs"
    code, _, err = cli(capsys, *run_args(tiny + _bad_inputs(tmp_path)[case] + [f'run.out_dir="{out_dir}"']))
    assert code == 2
    one_line(err)
    assert not (tmp_path / "new").exists()
    assert not (tmp_path / "prepared-fresh").exists()     # no empty data cache either


@pytest.mark.train
def test_overwrite_replaces_the_old_run_once_the_new_one_saved(finished_run, tiny):
    old_log = json.loads((finished_run / "train_log.json").read_text())
    cfg = load_config("cpu", tiny + ["training.max_steps=10"])
    result = Trainer(cfg, overwrite=True).run()
    names = {p.name for p in finished_run.iterdir()}
    assert "step_30" not in names and rundir.OVERWRITTEN not in names
    log = json.loads((finished_run / "train_log.json").read_text())
    assert log["steps"] == 10 != old_log["steps"]
    assert result.steps == 10 and all(r["step"] <= 10 for r in read_jsonl(finished_run / "metrics.jsonl"))
    assert rundir.recorded_checkpoints(finished_run) == {"best", "last"}


@pytest.mark.train
def test_an_overwrite_that_fails_before_its_first_checkpoint_puts_the_old_run_back(finished_run, tiny):
    before = snapshot(finished_run)

    def crash_at_start(event):
        if isinstance(event, StartEvent):
            raise RuntimeError("the machine fell over")

    cfg = load_config("cpu", tiny)
    with pytest.raises(RuntimeError):
        Trainer(cfg, overwrite=True, listeners=[crash_at_start]).run()
    assert snapshot(finished_run) == before


@pytest.mark.train
def test_an_overwrite_killed_midway_is_put_back_by_the_next_start(finished_run, tiny):
    """A process killed after moving the old run aside and before saving leaves
    .llmtui-overwritten: the next start restores it and says so."""
    aside = finished_run / rundir.OVERWRITTEN
    aside.mkdir()
    for name in ["best", "last", "step_10", "step_20", "step_30", "metrics.jsonl", "train_log.json"]:
        if (finished_run / name).exists():
            os.rename(finished_run / name, aside / name)
    rundir.record_checkpoints(finished_run, set())
    (finished_run / "metrics.jsonl").write_text('{"kind": "start", "step": 0, "time": 1}\n')   # the new run's

    cfg = load_config("cpu", tiny + ["training.max_steps=40"])
    warnings = []
    result = Trainer(cfg, resume_from=True,
                     listeners=[lambda e: isinstance(e, WarningEvent) and warnings.append(e.message)]).run()
    assert result.steps == 40 and any("old run was put back" in w for w in warnings)
    assert not aside.exists()
    trained = [r["step"] for r in read_jsonl(finished_run / "metrics.jsonl") if r["kind"] == "train"]
    assert 30 in trained and 40 in trained          # the old record came back and goes on


@pytest.mark.train
def test_resume_and_overwrite_together_are_refused(finished_run, tiny, capsys):
    before = snapshot(finished_run)
    code, _, err = cli(capsys, *run_args(tiny, "--resume", "--overwrite"))
    assert code == 2 and "--resume and --overwrite" in one_line(err)
    assert snapshot(finished_run) == before


# ---------------------------------------------------------------------------
# only what llmtui's record lists is ever deleted

@pytest.mark.train
@pytest.mark.parametrize("name", ["best_step_1", "step_999999", "last"])
def test_a_users_folder_with_a_checkpoint_name_is_never_replaced(name, finished_run, tiny, capsys):
    import shutil
    if (finished_run / name).exists():
        shutil.rmtree(finished_run / name)
        rundir.record_checkpoints(finished_run, rundir.recorded_checkpoints(finished_run) - {name})
    (finished_run / name).mkdir()
    (finished_run / name / "mine.txt").write_text("my notes")
    before = snapshot(finished_run)
    for flags in (["--overwrite"], ["--resume", "--max-iters", "40"]):
        code, _, err = cli(capsys, *run_args(tiny, *flags))
        assert code == 2 and name in one_line(err)
        assert snapshot(finished_run) == before
    delete_run(finished_run)
    assert (finished_run / name / "mine.txt").read_text() == "my notes"


@pytest.mark.unit
def test_an_unmarked_folder_holding_last_is_not_adopted(tiny, tmp_path, capsys):
    run = tmp_path / "runs" / "tiny"
    (run / "last").mkdir(parents=True)
    (run / "last" / "mine.txt").write_text("my notes")
    code, _, err = cli(capsys, *run_args(tiny))
    assert code == 2 and "not made by llmtui" in one_line(err)
    assert snapshot(run) == {"last": b"<dir>", "last/mine.txt": b"my notes"}


@pytest.mark.train
@pytest.mark.parametrize("marker", ["random bytes", "a folder", "version 99"])
def test_a_marker_that_is_not_llmtuis_is_refused(marker, finished_run, tiny, capsys):
    path = finished_run / rundir.MARKER
    path.unlink()
    if marker == "random bytes":
        path.write_bytes(os.urandom(64))
    elif marker == "a folder":
        path.mkdir()
    else:
        path.write_text(json.dumps({"format": "llmtui-run", "version": 99}))
    before = snapshot(finished_run)
    for flags in (["--overwrite"], ["--resume", "--max-iters", "40"]):
        code, _, err = cli(capsys, *run_args(tiny, *flags))
        assert code == 2 and rundir.MARKER in one_line(err)
        assert snapshot(finished_run) == before


# ---------------------------------------------------------------------------
# the lock

@pytest.mark.train
def test_the_lock_file_is_removed_at_a_clean_end(finished_run):
    assert not (finished_run / rundir.LOCK).exists()


@pytest.mark.train
def test_a_lock_file_that_is_a_folder_is_one_line(finished_run, tiny, capsys):
    (finished_run / rundir.LOCK).mkdir()
    code, _, err = cli(capsys, *run_args(tiny, "--resume", "--max-iters", "40"))
    assert code == 2 and rundir.LOCK in one_line(err)


@pytest.mark.train
def test_a_lock_file_deleted_while_training_is_made_again(tiny):
    cfg = load_config("cpu", tiny)
    trainer = Trainer(cfg)
    warnings = []

    def delete_lock(event):
        if isinstance(event, TrainEvent) and event.step == 10:
            (trainer.run_dir / rundir.LOCK).unlink()
        if isinstance(event, TrainEvent) and event.step == 20:
            held = rundir.holder(trainer.run_dir)
            assert held is not None and held.alive and held.pid == os.getpid()
        if isinstance(event, WarningEvent):
            warnings.append(event.message)

    trainer.subscribe(delete_lock)
    assert trainer.run().steps == 30
    assert any("lock file was deleted" in w for w in warnings)
    assert not (trainer.run_dir / rundir.LOCK).exists()


@pytest.mark.train
def test_a_second_writer_after_the_lock_file_was_deleted_stops_the_first(tiny):
    cfg = load_config("cpu", tiny)
    trainer = Trainer(cfg)
    other: list[rundir.RunLock] = []

    def second_writer(event):
        if isinstance(event, TrainEvent) and event.step == 10:
            (trainer.run_dir / rundir.LOCK).unlink()
            lock = rundir.RunLock(trainer.run_dir)
            lock.acquire()          # succeeds: the file it locks is a new one
            other.append(lock)

    trainer.subscribe(second_writer)
    try:
        with pytest.raises(UserError, match="replaced while training"):
            trainer.run()
        assert not (trainer.run_dir / "last").exists()   # nothing written after that
        assert rundir.holder(trainer.run_dir).alive       # the other writer's lock is untouched
    finally:
        other[0].release()


# ---------------------------------------------------------------------------
# signals, pipes, a full disk, a damaged record

def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _wait_for(path: Path, text: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.mark.subprocess
@pytest.mark.train
def test_sighup_saves_last_and_exits_129(tiny, tmp_path):
    log = tmp_path / "out.log"
    args = run_args(tiny + ["training.max_steps=100000", "logging.every_n_steps=1"])
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llmtui", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path)
        _wait_for(log, "step 3/")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=120) == 129
    run = tmp_path / "runs" / "tiny"
    state = json.loads((run / "last" / "state.json").read_text())
    assert state["step"] >= 3 and not (run / rundir.LOCK).exists()


@pytest.mark.subprocess
@pytest.mark.train
def test_a_closed_stdout_never_stops_training(tiny, tmp_path):
    """`llmtui --run ... | head -2`: training goes on to the end and saves; the lost
    output is noted in metrics.jsonl."""
    args = run_args(tiny + ["logging.every_n_steps=1"])
    proc = subprocess.Popen([sys.executable, "-m", "llmtui", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    proc.stdout.readline()
    proc.stdout.close()               # the reader went away
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err
    run = tmp_path / "runs" / "tiny"
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 30
    assert any(r["kind"] == "warning" and "standard output cannot be written" in r["message"]
               for r in read_jsonl(run / "metrics.jsonl"))


@pytest.mark.subprocess
@pytest.mark.train
@pytest.mark.parametrize("command", [["runs"], ["config", "cpu"], ["detect"], ["runs", "--json"]])
def test_printing_commands_end_quietly_on_a_closed_pipe(command, finished_run, tmp_path):
    if command[0] == "runs":
        command = [*command, str(finished_run.parent)] if command == ["runs"] else \
            ["runs", str(finished_run.parent), "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "llmtui", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "Error" not in err, err


@pytest.mark.subprocess
@pytest.mark.train
def test_commands_that_only_read_never_import_torch(finished_run, tmp_path):
    """`llmtui --help`, `runs` (table and JSON) and `config` answer without importing
    torch (seconds on a small machine): only training, sampling and detection need it."""
    commands = [["--help"], ["runs", str(finished_run.parent)], ["runs", str(finished_run.parent), "--json"],
                ["config", "cpu"]]
    for command in commands:
        code = ("import sys\nfrom llmtui.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
                "print('torch imported' if 'torch' in sys.modules else 'no torch', file=sys.stderr)" % command)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                              cwd=tmp_path, timeout=120)
        assert done.stderr.strip().splitlines()[-1] == "no torch", (command, done.stderr[-500:])
        assert done.stdout.strip(), command


def _metrics_fd(run_dir: Path) -> int:
    target = str((run_dir / "metrics.jsonl").resolve())
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                return int(fd)
        except OSError:
            continue
    raise AssertionError("metrics.jsonl is not open")


@pytest.mark.train
def test_a_full_disk_for_the_record_saves_last_and_names_the_file(tiny):
    """From step 10 every write to metrics.jsonl fails with ENOSPC (its descriptor now
    points at /dev/full): training stops with one line naming the file, `last` saved."""
    cfg = load_config("cpu", tiny)
    trainer = Trainer(cfg)

    def disk_fills_up(event):
        if isinstance(event, TrainEvent) and event.step == 10:
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, _metrics_fd(trainer.run_dir))
            os.close(full)

    trainer.subscribe(disk_fills_up)
    with pytest.raises(RecordError) as caught:
        trainer.run()
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "metrics.jsonl" in message and "No space left" in message and "last" in message
    state = json.loads((trainer.run_dir / "last" / "state.json").read_text())
    assert state["step"] >= 10


@pytest.mark.train
def test_garbage_at_the_end_of_metrics_is_cut_back_on_resume(finished_run, tiny):
    metrics = finished_run / "metrics.jsonl"
    with open(metrics, "ab") as f:
        f.write(os.urandom(300) + b"\n" + b'{"kind": "train", "st')
    warnings = []
    cfg = load_config("cpu", tiny + ["training.max_steps=40"])
    Trainer(cfg, resume_from=True,
            listeners=[lambda e: isinstance(e, WarningEvent) and warnings.append(e.message)]).run()
    records = read_jsonl(metrics)            # every line is JSON again
    assert records[-1]["kind"] == "done" and records[-1]["step"] == 40
    assert any("damaged or torn" in w for w in warnings)


@pytest.mark.train
@pytest.mark.subprocess
@pytest.mark.tui
def test_the_app_saves_last_and_exits_129_when_its_terminal_hangs_up(tiny, tmp_path):
    """The real app on a pseudo-terminal: wizard -> data -> train, then SIGHUP (the
    terminal or SSH session closed): the step finishes, `last` is saved, exit 129."""
    import contextlib
    import fcntl
    import io
    import pty
    import struct
    import termios
    import threading

    config = tmp_path / "hup.toml"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["config", "cpu", *sum((["-o", o] for o in tiny + [
            "training.max_steps=100000", "logging.every_n_steps=1"]), [])]) == 0
    config.write_text(buffer.getvalue())
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    screen = bytearray()

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    return_code = None
    proc = subprocess.Popen([sys.executable, "-m", "llmtui", str(config)], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, cwd=tmp_path,
                            env={**os.environ, "TERM": "xterm-256color"})
    os.close(slave)
    threading.Thread(target=drain, daemon=True).start()
    try:
        def wait_screen(text: bytes, timeout: float = 90) -> None:
            end = time.monotonic() + timeout
            while text not in screen:
                assert time.monotonic() < end and proc.poll() is None, f"{text!r} never shown"
                time.sleep(0.2)

        wait_screen(b"Next")
        os.write(master, b"\x0e")          # Ctrl+N: the data step
        wait_screen(b"Start training")
        time.sleep(0.5)
        os.write(master, b"\x14")          # Ctrl+T: train
        _wait_for(tmp_path / "runs" / "tiny" / "metrics.jsonl", '"kind": "train"')
        proc.send_signal(signal.SIGHUP)
        return_code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert return_code == 129
    run = tmp_path / "runs" / "tiny"
    assert json.loads((run / "last" / "state.json").read_text())["step"] >= 1
    assert not (run / rundir.LOCK).exists()
