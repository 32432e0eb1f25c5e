"""End to end: real training on tiny configs through the CLI and the Python API."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import read_jsonl
from llmtui import load_config, train
from llmtui.cli import main
from llmtui.engine.training.checkpoint import verify


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.train
def test_cli_trains_and_writes_the_run_directory(tiny, tmp_path, capsys):
    code, out, err = run_cli(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), [])], capsys)
    assert code == 0, err
    run = tmp_path / "runs" / "tiny"
    assert {"config.toml", "metrics.jsonl", "train_log.json", "last", "best"} <= {p.name for p in run.iterdir()}
    verify(run / "last")
    verify(run / "best")
    events = read_jsonl(run / "metrics.jsonl")
    for e in events:
        assert {"kind", "step", "time"} <= e.keys()
        assert abs(e["time"] - events[0]["time"]) < 600
    train_lines = [e for e in events if e["kind"] == "train"]
    assert [e["step"] for e in train_lines] == [5, 10, 15, 20, 25, 30]
    for e in train_lines:
        assert {"loss", "lr", "grad_norm", "tokens_per_sec"} <= e.keys()
        assert e["tokens_per_sec"] > 0 and math.isfinite(e["loss"])
    evals = [e for e in events if e["kind"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20, 30]
    for e in evals:
        assert e["val_perplexity"] == pytest.approx(math.exp(e["val_loss"]))
        assert 0.0 <= e["val_accuracy"] <= 1.0
    summary = json.loads((run / "train_log.json").read_text())
    assert summary["steps"] == 30 and summary["stop_reason"] == "max_steps"
    assert summary["best_val_loss"] == min(e["val_loss"] for e in evals)
    # the plain output has the metric lines
    assert "step 30/30" in out and "val loss" in out


@pytest.mark.train
def test_learning_happens(tiny, tmp_path):
    result = train(load_config("cpu", tiny + ["training.max_steps=80", "eval.every_n_steps=40"]))
    events = read_jsonl(result.metrics_path)
    losses = [e["loss"] for e in events if e["kind"] == "train"]
    assert losses[-1] < losses[0] - 0.5, losses
    vocab = next(e for e in events if e["kind"] == "start")["vocab_size"]
    assert result.final_val_loss < math.log(vocab) - 0.5  # well below a uniform guess


@pytest.mark.train
def test_python_api_results(tiny, tmp_path):
    cfg = load_config("cpu", tiny)
    result = train(cfg)
    assert result.steps == 30
    assert result.final_train_loss is not None and result.final_val_loss is not None
    assert result.best_val_loss <= result.final_val_loss
    assert result.training_time > 0
    assert result.last_checkpoint == tmp_path / "runs" / "tiny" / "last"
    assert result.best_checkpoint == tmp_path / "runs" / "tiny" / "best"
    assert result.tokens_seen == 30 * 4 * 16
    # keyword settings and override strings work on a loaded config too
    again = train(cfg, overrides=['run.name="tiny2"'], training__max_steps=10)
    assert again.steps == 10 and again.run_dir.name == "tiny2"


@pytest.mark.train
@pytest.mark.parametrize("form", ["preset name", "Config"])
def test_keyword_settings_win_over_overrides_for_every_config_form(tiny, form):
    """One order for both call forms: the override strings first, then the keyword settings
    (a Config used to take the override, a preset name the keyword)."""
    config = "cpu" if form == "preset name" else load_config("cpu", tiny)
    result = train(config, overrides=tiny + ["training.max_steps=5"], training__max_steps=7)
    assert result.steps == 7


@pytest.mark.train
def test_override_and_quick_flags_reach_the_run(tiny, tmp_path, capsys):
    args = ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []),
            "--max-iters", "12", "--device", "cpu", "--tokenizer", "char",
            "--override", "model.n_embd=48", "--override", "optimizer.betas=[0.8, 0.9]"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    run = tmp_path / "runs" / "tiny"
    resolved = load_config(run / "config.toml")
    assert resolved.training.max_steps == 12
    assert resolved.model.n_embd == 48
    assert resolved.optimizer.betas == [0.8, 0.9]
    assert resolved.run.device == "cpu" and resolved.tokenizer.kind == "char"
    start = next(e for e in read_jsonl(run / "metrics.jsonl") if e["kind"] == "start")
    assert start["max_steps"] == 12
    # n_embd really changed the model: 1 layer of width 48 plus embeddings
    assert start["n_params"] == pytest.approx(12 * 48 * 48 + 103 * 48 + 16 * 48 + 5 * 48, rel=0.02)


@pytest.mark.unit
def test_tokenizer_flag_offers_every_tokenizer_kind(capsys):
    """--tokenizer takes what tokenizer.kind takes (trained was refused as an invalid choice)."""
    from llmtui.cli import quick_flag_overrides, run_parser
    from llmtui.engine.config.schema import field_spec

    for kind in field_spec("tokenizer.kind").choices:
        args = run_parser().parse_args(["--run", "cpu", "--tokenizer", kind])
        assert quick_flag_overrides(args) == [f'tokenizer.kind="{kind}"']
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "{char,bpe,trained}" in capsys.readouterr().out


@pytest.mark.train
def test_early_stopping_stops_and_keeps_best(tiny, tmp_path):
    cfg = load_config("cpu", tiny + [
        "training.max_steps=400", "eval.every_n_steps=5", "training.early_stopping=true",
        "training.early_stopping_patience=2", "training.early_stopping_min_delta=10.0"])
    result = train(cfg)
    # the first eval sets the best; two more without a 10.0 improvement stop the run
    assert result.stop_reason == "early_stopping"
    assert result.steps == 15
    events = read_jsonl(result.metrics_path)
    assert [e["kind"] for e in events if e["kind"] == "early_stop"] == ["early_stop"]
    assert (result.run_dir / "best").is_dir() and (result.run_dir / "last").is_dir()
    # best/ holds the lowest val loss seen (the val loss keeps falling, by less than 10.0)
    best_state = json.loads((result.run_dir / "best" / "state.json").read_text())
    evals = [e for e in events if e["kind"] == "eval"]
    lowest = min(evals, key=lambda e: e["val_loss"])
    assert best_state["step"] == lowest["step"] and best_state["val_loss"] == lowest["val_loss"]


@pytest.mark.train
def test_early_stopping_off_runs_to_max_steps(tiny):
    cfg = load_config("cpu", tiny + ["training.max_steps=15", "eval.every_n_steps=5",
                                     "training.early_stopping_min_delta=10.0"])
    assert train(cfg).stop_reason == "max_steps"


@pytest.mark.train
def test_save_best_off_writes_no_best(tiny):
    result = train(load_config("cpu", tiny + ["training.save_best=false"]))
    assert not (result.run_dir / "best").exists()
    assert result.best_checkpoint is None and (result.run_dir / "last").is_dir()


@pytest.mark.train
def test_step_checkpoints_rotate(tiny):
    result = train(load_config("cpu", tiny + ["checkpoint.every_n_steps=5", "checkpoint.keep_last=2"]))
    steps = sorted(p.name for p in result.run_dir.glob("step_*"))
    assert steps == ["step_25", "step_30"]


@pytest.mark.train
def test_epochs_set_the_number_of_steps(tiny):
    # one epoch of the builtin corpus at 4 x 16 tokens per step is thousands of
    # steps; 0.002 epochs is a handful
    cfg = load_config("cpu", tiny + ["training.epochs=0.002"])
    result = train(cfg)
    train_tokens = next(e for e in read_jsonl(result.metrics_path) if e["kind"] == "start")["train_tokens"]
    assert result.steps == math.ceil(0.002 * math.ceil(train_tokens / 64))


@pytest.mark.train
def test_rope_and_grad_accum_train(tiny):
    cfg = load_config("cpu", tiny + ["model.pos_encoding=rope", "training.grad_accum_steps=2",
                                     "training.max_steps=10", "model.gradient_checkpointing=true",
                                     "model.bias=true", "model.d_ff=40"])
    result = train(cfg)
    start = next(e for e in read_jsonl(result.metrics_path) if e["kind"] == "start")
    assert start["effective_batch"] == 8 and start["tokens_per_step"] == 8 * 16
    assert math.isfinite(result.final_train_loss)


@pytest.mark.train
def test_existing_run_is_not_overwritten_by_accident(tiny, capsys):
    assert main(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), [])]) == 0
    capsys.readouterr()
    code = main(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), [])])
    err = capsys.readouterr().err
    assert code == 2 and "--resume" in err and "--overwrite" in err
    assert main(["--run", "cpu", "--plain", "--overwrite", *sum((["-o", o] for o in tiny), [])]) == 0


@pytest.mark.train
@pytest.mark.parametrize("args, words", [
    (["-o", "model.n_layr=2"], ["model.n_layr", "model.n_layer"]),
    (["-o", "training.batch_size=-1"], ["training.batch_size", "-1"]),
    (["--max-iters", "0"], ["training.max_steps", "0"]),
    (["-o", 'data.source="/no/such/corpus.txt"'], ["/no/such/corpus.txt"]),
    (["-o", "model.block_size=60000"], ["model.block_size", "60000"]),
])
def test_bad_input_exits_2_with_one_line(tiny, tmp_path, capsys, args, words):
    code, out, err = run_cli(["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), *args], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("llmtui: error:")
    for word in words:
        assert word in lines[0]
    assert "Traceback" not in err + out
    # nothing half-written: no checkpoint was created
    assert not list((tmp_path / "runs").glob("*/last"))


@pytest.mark.subprocess
@pytest.mark.train
def test_bad_config_file_in_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nprecision = 'fp64'\n")
    proc = subprocess.run([sys.executable, "-m", "llmtui", "--run", str(bad)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "training.precision" in proc.stderr and "fp64" in proc.stderr and str(bad) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.subprocess
@pytest.mark.train
def test_headless_run_never_imports_textual(tiny, tmp_path):
    code = ("import sys; from llmtui.cli import main; "
            f"rc = main(['--run', 'cpu', '--plain', *{sum((['-o', o] for o in tiny), [])!r}, '--max-iters', '3']); "
            "assert rc == 0, rc; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'textual' or m.split('.')[:2] == ['llmtui', 'tui']]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.subprocess
def test_non_editable_install_layout_finds_presets(tmp_path):
    """Presets ship inside the package, so `llmtui --run cpu` works from any folder."""
    from llmtui.engine.config.presets import preset_names
    assert "cpu" in preset_names()
    proc = subprocess.run([sys.executable, "-m", "llmtui", "config", "cpu"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0 and 'name = "cpu"' in proc.stdout


@pytest.mark.train
def test_many_passes_over_a_small_corpus_are_said_before_training(tiny, tmp_path):
    """2,000 steps of 64 tokens over a corpus of a few thousand characters is dozens of
    passes: the model learns it by heart. Said before the first step, with the figures
    and what to do; a run that passes a few times over its text says nothing."""
    from llmtui.engine.training.events import WarningEvent
    from llmtui.engine.training.trainer import Trainer

    corpus = tmp_path / "small.txt"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60)))
    small = [f'data.source="{corpus}"', f'data.prepared_dir="{tmp_path / "prepared"}"']
    trainer = Trainer(load_config("cpu", tiny + small + ["training.max_steps=2000"]))
    said = []

    def on_event(event):
        if isinstance(event, WarningEvent) and "passes over" in event.message:
            said.append(event.message)
            trainer.stop()
    trainer.subscribe(on_event)
    assert trainer.run().steps < 2000
    assert len(said) == 1 and "training.max_steps = 2,000" in said[0] and "by heart" in said[0], said
    result = train(load_config("cpu", tiny + small + ["training.max_steps=20", 'run.name="few"']))
    warnings = [e["message"] for e in read_jsonl(result.metrics_path) if e["kind"] == "warning"]
    assert not [w for w in warnings if "passes over" in w], warnings


@pytest.mark.train
def test_a_stop_during_an_evaluation_sample_cuts_it_short(tiny):
    """A Stop (the app's x, Ctrl+C) that comes while the sample of an evaluation is being
    written ends it at the next token: 100,000 tokens, one at a time, would take minutes."""
    from llmtui.engine.training.trainer import Trainer

    trainer = Trainer(load_config("cpu", tiny + ["training.max_steps=50", "eval.every_n_steps=10",
                                                 "eval.sample_tokens=100000"]))
    samples = []

    def on_event(event):
        if event.kind == "eval":
            trainer.stop()           # from the trainer's thread, just before the sample starts
        if event.kind == "sample":
            samples.append(event.text)
    trainer.subscribe(on_event)
    result = trainer.run()
    assert result.steps == 10 and (result.run_dir / "last").is_dir()
    assert samples and all(len(text) <= 1 for text in samples), [len(t) for t in samples]


@pytest.mark.train
def test_commands_from_another_thread_pause_save_sample_resume(tiny):
    import threading

    from llmtui.engine.training.trainer import Trainer

    trainer = Trainer(load_config("cpu", tiny + ["training.max_steps=200"]))
    seen = threading.Event()

    def on_event(event):
        if event.kind == "train" and event.step == 10:
            trainer.pause()
            seen.set()
    trainer.subscribe(on_event)
    worker = threading.Thread(target=trainer.run)
    worker.start()
    assert seen.wait(60)
    seq, _ = trainer.events.since(0)
    trainer.save_now()
    trainer.sample_now("The ")

    def wait_for(kind, **fields):
        import time
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _, new = trainer.events.since(seq)
            found = [e for e in new if e.kind == kind and fields.items() <= e.to_json().items()]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {kind} event")

    saved = wait_for("checkpoint", reason="manual")  # served while still paused
    assert saved.step == 10 and trainer.paused
    sample = wait_for("sample", prompt="The ")
    assert sample.step == 10 and len(sample.text) > 0
    trainer.unpause()
    trainer.stop()
    worker.join(60)
    assert not worker.is_alive()
    kinds = [e["kind"] for e in read_jsonl(trainer.run_dir / "metrics.jsonl")]
    assert "paused" in kinds and "unpaused" in kinds
    assert trainer.result.stop_reason == "stopped" and trainer.result.steps < 200


@pytest.mark.train
def test_best_val_loss_is_the_lowest_seen_even_below_min_delta(tiny):
    """early_stopping_min_delta decides what counts for early stopping, not which loss is
    best: "val loss 1.1966 ... best 1.1970" must not happen, and best/ holds the lowest."""
    from llmtui.engine.training.trainer import Trainer

    cfg = load_config("cpu", tiny + ["training.early_stopping_min_delta=5.0", "training.max_steps=40"])
    result = Trainer(cfg).run()
    evals = [e for e in read_jsonl(result.metrics_path) if e["kind"] == "eval"]
    assert len(evals) >= 3 and not any(e["improved"] for e in evals[1:])
    assert all(e["best_val_loss"] == min(x["val_loss"] for x in evals[:i + 1]) for i, e in enumerate(evals))
    assert result.best_val_loss == min(e["val_loss"] for e in evals) < evals[0]["val_loss"]
    best = json.loads((result.run_dir / "best" / "state.json").read_text())
    assert best["val_loss"] == result.best_val_loss


@pytest.mark.unit
def test_old_records_of_an_unpause_are_still_read():
    """0.1.0 wrote "resumed" for training going on after a pause; it reads as the unpause."""
    from llmtui.engine.training.events import UnpausedEvent, event_from_json
    assert isinstance(event_from_json({"kind": "resumed", "step": 3, "time": 1.0}), UnpausedEvent)
    assert UnpausedEvent(step=3).to_json()["kind"] == "unpaused"


@pytest.mark.train
def test_a_trainer_is_set_up_once_and_run_trains_that_setup(tiny):
    """setup() builds the run once (a second call is an error, not a second build); what
    needs a built run says so before it exists; run() trains a setup built before it."""
    from llmtui.engine.training.trainer import Trainer

    trainer = Trainer(load_config(None, tiny + ["training.max_steps=2", "eval.every_n_steps=2"]))
    with pytest.raises(RuntimeError, match="not set up"):
        trainer.train_step()
    setup = trainer.setup()
    with pytest.raises(RuntimeError, match="set up already"):
        trainer.setup()
    result = trainer.run()
    assert trainer.setup_done is setup and result.steps == 2


@pytest.mark.train
def test_fp32_on_an_amx_cpu_says_bf16_is_faster_for_a_wide_model(tiny, tmp_path, monkeypatch):
    """On a CPU with AMX bf16 units, an fp32 run of a model at least AMX_BF16_MIN_WIDTH wide
    is told, before its first step, that bf16 measured faster; a narrower model (where fp32
    is the faster) and a CPU without AMX are told nothing."""
    from llmtui.engine.planning import cpu as planning_cpu
    from llmtui.engine.planning.autotune import AMX_BF16_MIN_WIDTH
    from llmtui.engine.training.events import WarningEvent
    from llmtui.engine.training.trainer import Trainer

    runs = iter(range(3))    # a run directory each

    def hints(flags, width):
        monkeypatch.setattr(planning_cpu, "cpu_flags", lambda: frozenset(flags))
        trainer = Trainer(load_config("cpu", tiny + [f"model.n_embd={width}", "model.n_layer=1",
                                                     'training.precision="fp32"', "training.max_steps=1",
                                                     f'run.name="amx{next(runs)}"']))
        said = []
        trainer.subscribe(lambda e: isinstance(e, WarningEvent) and "AMX" in e.message
                          and said.append(e.message))
        trainer.run()
        return said

    amx = {"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
    said = hints(amx, AMX_BF16_MIN_WIDTH)
    assert len(said) == 1 and f"{AMX_BF16_MIN_WIDTH} wide" in said[0] and 'precision = "bf16"' in said[0]
    assert hints(amx, 64) == []
    assert hints({"avx2", "fma", "avx512f", "avx512_bf16"}, AMX_BF16_MIN_WIDTH) == []
