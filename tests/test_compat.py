"""What llmtui 0.1.0 wrote stays readable: metrics lines and checkpoints.

tests/fixtures/v0_1_0/ was written by the 0.1.0 code (make_fixtures.py there
records how): a corpus, a run whose step_10 checkpoint and metrics.jsonl come
from an uninterrupted 20-step run, and metrics lines of every event kind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import read_jsonl
from llmtui import load_config
from llmtui.engine.training.events import EVENT_TYPES, OLD_KINDS, event_from_json
from llmtui.engine.training.trainer import Trainer

FIXTURE = Path(__file__).parent / "fixtures" / "v0_1_0"
# the overrides make_fixtures.py trained the "run" fixture with
FIXTURE_RUN = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
               "training.batch_size=4", "scheduler.warmup_steps=5", "eval.every_n_steps=10",
               "eval.max_batches=2", "logging.every_n_steps=5", "optimizer.learning_rate=3e-3",
               "scheduler.min_learning_rate=3e-4", 'run.device="cpu"', "training.max_steps=20",
               "checkpoint.every_n_steps=10", "eval.sample_tokens=8", 'training.precision="fp16"']


def golden_lines() -> list[str]:
    return (FIXTURE / "events.jsonl").read_text().splitlines()


@pytest.mark.unit
def test_every_event_kind_of_0_1_0_is_in_the_fixture():
    kinds = {OLD_KINDS.get(k, k) for k in (json.loads(line)["kind"] for line in golden_lines())}
    # progress ticks are never written; "epoch" came after 0.1.0 (training.epochs)
    assert kinds == set(EVENT_TYPES) - {"prepare", "eval_progress", "epoch"}


@pytest.mark.unit
def test_metrics_lines_round_trip_byte_for_byte():
    """Each 0.1.0 line parses into its typed event, which writes the same bytes back (a
    kind renamed since, "resumed" for an unpause, is written under its new name)."""
    for line in golden_lines():
        event = event_from_json(json.loads(line))
        assert event is not None, line
        old_kind = json.loads(line)["kind"]
        assert event.to_line() == line.replace(f'"kind": "{old_kind}"', f'"kind": "{OLD_KINDS.get(old_kind, old_kind)}"')


@pytest.mark.train
def test_new_runs_write_the_same_keys_in_the_same_order(tiny):
    """A run of this version with a config that sets none of the newer keys (the defaults:
    nanoGPT's model and AdamW) writes, kind for kind, the keys 0.1.0 wrote, in its order;
    newer options only add keys after them (a Muon run: the optimizer's FLOPs per step)."""
    golden = {}
    for line in golden_lines():
        record = json.loads(line)
        golden.setdefault(record["kind"], list(record))
    common = tiny + ["eval.sample_tokens=4", "training.max_steps=20", "checkpoint.every_n_steps=10"]
    # on a CPU every run adds the CPU load (train records have it once a reading spans
    # long enough, so it may be missing from a quick first interval)
    cpu = {"start": ["cpu_cores"], "train": ["cpu_busy", "cpu_others"]}
    for name, extra, added in (("defaults", [], cpu),
                               ("muon", ['optimizer.name="muon"', 'model.norm="rmsnorm"'],
                                {**cpu, "start": ["optimizer_flops_per_step", "cpu_cores"]})):
        result = Trainer(load_config(None, common + [f'run.name="{name}"'] + extra)).run()
        seen = set()
        for record in read_jsonl(result.metrics_path):
            kind = record["kind"]
            if kind in golden:
                keys, old = list(record), golden[kind]
                assert keys[:len(old)] == old, kind
                allowed = added.get(kind, [])
                assert keys[len(old):] == [k for k in allowed if k in keys[len(old):]], (kind, keys[len(old):])
                assert kind != "start" or keys[len(old):] == allowed, keys
                seen.add(kind)
        assert {"start", "train", "eval", "sample", "checkpoint", "done"} <= seen


@pytest.mark.train
def test_a_0_1_0_checkpoint_resumes_on_the_same_trajectory(tmp_path):
    """Resuming the fixture's step_10 continues the run 0.1.0 trained to step 20: the same
    train and val losses to float32's precision. Not bit for bit: the fixture was written on
    another machine, and another CPU's kernels (AVX-512 and AMX on a Sapphire Rapids) sum
    in their own order, seen as a relative difference of 1e-6 to 1e-5. A resume that lost the
    optimizer state or the data position moves the losses in the 2nd-3rd digit; the same
    machine resumes bit for bit (tests/test_checkpoints.py)."""
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE / "run", runs / "run")
    shutil.copy(FIXTURE / "corpus.txt", tmp_path / "corpus.txt")
    cfg = load_config(None, FIXTURE_RUN + [f'run.out_dir="{runs}"', 'run.name="run"',
                                           f'data.source="{tmp_path / "corpus.txt"}"',
                                           f'data.prepared_dir="{tmp_path / "prepared"}"'])
    result = Trainer(cfg, resume_from=True).run()
    assert result.steps == 20

    def figures(records):
        return {(r["kind"], r["step"]): r.get("loss", r.get("val_loss")) for r in records
                if r["kind"] in ("train", "eval") and r["step"] > 10}

    old = figures(json.loads(line) for line in (FIXTURE / "run" / "metrics.jsonl").read_text().splitlines())
    new = figures(read_jsonl(result.metrics_path))
    assert old and new.keys() == old.keys()
    for key, value in old.items():
        assert new[key] == pytest.approx(value, rel=1e-4), key
