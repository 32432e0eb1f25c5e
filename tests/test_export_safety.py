"""`llmtui export` never loses the user's work: no run or checkpoint is deleted, at any
depth below OUT; no export is written where resuming a run would delete it; OUT as a
symbolic link is refused; what killed exports left beside OUT is cleaned up, and
only that."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, shakespeare_text
from llmtui import load_config, train
from llmtui.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("exportsafety")
    corpus = root / "corpus.txt"
    corpus.write_text(shakespeare_text()[:20_000])
    cfg = load_config("cpu", TINY + [f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"',
                                     'run.name="r"', 'run.device="cpu"', f'data.source="{corpus}"',
                                     'tokenizer.kind="char"', "training.max_steps=2", "eval.sample_tokens=0",
                                     "training.save_best=false"])
    return train(cfg).run_dir


def export(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["export", *map(str, argv)])
    return code, capsys.readouterr().err


def tree(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.export
@pytest.mark.train
@pytest.mark.parametrize("nested", ["run", "checkpoint"])
def test_overwrite_never_deletes_a_run_or_checkpoint_deep_below_out(tmp_path, run_dir, capsys, nested):
    out = tmp_path / "out"
    deep = out / "old" / "experiments"
    deep.mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    shutil.copytree(run_dir if nested == "run" else run_dir / "last", deep / "kept")
    before = tree(out)
    code, err = export(capsys, run_dir, out, "--overwrite")
    assert code == 2 and err.count("\n") == 1
    assert f"holds a {nested} of llmtui ({deep / 'kept'})" in err and "never replaces" in err
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.export
@pytest.mark.train
@pytest.mark.parametrize("inside", ["last/myexport", "myexport"])
def test_an_export_inside_a_run_or_checkpoint_is_refused(tmp_path, run_dir, capsys, inside):
    """Resuming rewrites `last` (and cleans the run's folder): an export there was deleted."""
    before = tree(run_dir)
    code, err = export(capsys, run_dir, run_dir / inside, "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "llmtui" in err
    assert tree(run_dir) == before


@pytest.mark.export
@pytest.mark.train
def test_a_symbolic_link_as_out_is_refused_and_nothing_is_left(tmp_path, run_dir, capsys):
    target = tmp_path / "real"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    link = tmp_path / "out"
    link.symlink_to(target)
    for extra in ([], ["--overwrite"]):
        code, err = export(capsys, run_dir, link, *extra)
        assert code == 2 and err.count("\n") == 1 and "symbolic link" in err
    assert link.is_symlink() and tree(target) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]     # no .trash-out-*


WRITER = """
import sys, time
from pathlib import Path
from llmtui.engine.inference.export_target import TempExport
TempExport(Path(sys.argv[1])).create()
print("ready", flush=True)
time.sleep(600)
"""


def start_writer(out):
    """A process that began an export to `out` (its temporary folder made and locked)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.export
@pytest.mark.subprocess
@pytest.mark.train
def test_a_later_export_removes_what_killed_exports_left_and_nothing_else(tmp_path, run_dir, capsys):
    out = tmp_path / "out"
    killed = start_writer(out)                 # kill -9 mid-export: its .tmp-out-* stays behind
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    live = start_writer(out)                   # another export to out, still writing
    try:
        temps = {p.name for p in tmp_path.iterdir()}
        assert len(temps) == 2 and all(n.startswith(".tmp-out-") for n in temps)
        (tmp_path / ".trash-out-0000beef").mkdir()             # the old out, moved aside when killed
        (tmp_path / ".trash-out-0000beef" / "config.json").write_text("{}")
        old_link_target = tmp_path / "elsewhere"
        old_link_target.mkdir()
        (old_link_target / "keep.txt").write_text("mine")
        (tmp_path / ".trash-out-0000cafe").symlink_to(old_link_target)   # out was a link, moved aside
        unmarked_old = tmp_path / ".tmp-out-00000001"        # an older llmtui's, long ago
        unmarked_old.mkdir()
        os.utime(unmarked_old, (time.time() - 3600, time.time() - 3600))
        unmarked_new = tmp_path / ".tmp-out-00000002"        # being made right now
        unmarked_new.mkdir()
        with_run = tmp_path / ".trash-out-00000003"
        shutil.copytree(run_dir, with_run / "r")
        other = tmp_path / ".tmp-other-00000004"             # another name's: not this export's
        other.mkdir()

        code, err = export(capsys, run_dir, out)
        assert code == 0, err
        live_tmp = next(n for n in temps if (tmp_path / n / ".llmtui-exporting").exists()
                        and _locked(tmp_path / n))
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [live_tmp, "elsewhere", "out", unmarked_new.name, with_run.name, other.name])
        assert ".llmtui-exporting" not in {p.name for p in out.iterdir()}
        assert tree(old_link_target) == ["keep.txt"] and (with_run / "r" / "last" / "manifest.json").is_file()
    finally:
        live.kill()
        live.wait()


def _locked(folder) -> bool:
    import fcntl

    fd = os.open(folder / ".llmtui-exporting", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)

