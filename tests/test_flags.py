"""The source documents' flag CLIs (000, 001, 004) on `llmtui --run`, made from the schema."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import read_jsonl
from llmtui import load_config
from llmtui.cli import main, run_parser, schema_flag_overrides
from llmtui.engine.config.schema import all_fields

# flag -> (value given, key, value expected), as the documents spell them
FLAGS = [
    ("--epochs", "2.5", "training.epochs", 2.5),
    ("--batch-size", "7", "training.batch_size", 7),
    ("--batch_size", "7", "training.batch_size", 7),
    ("--grad-accum-steps", "3", "training.grad_accum_steps", 3),
    ("--learning-rate", "3e-4", "optimizer.learning_rate", 3e-4),
    ("--learning_rate", "3e-4", "optimizer.learning_rate", 3e-4),
    ("--vocab-size", "10000", "tokenizer.vocab_size", 10000),
    ("--vocab_size", "10000", "tokenizer.vocab_size", 10000),
    ("--block-size", "128", "model.block_size", 128),
    ("--n-layer", "6", "model.n_layer", 6),
    ("--n-head", "8", "model.n_head", 8),
    ("--n-embd", "384", "model.n_embd", 384),
    ("--dropout", "0.1", "model.dropout", 0.1),
    ("--warmup-steps", "50", "scheduler.warmup_steps", 50),
    ("--warmup_steps", "50", "scheduler.warmup_steps", 50),
    ("--min-learning-rate", "3e-5", "scheduler.min_learning_rate", 3e-5),
    ("--min_learning_rate", "3e-5", "scheduler.min_learning_rate", 3e-5),
    ("--grad-clip", "0.5", "training.grad_clip", 0.5),
    ("--grad_clip", "0.5", "training.grad_clip", 0.5),
    ("--wandb-project", "proj", "logging.wandb_project", "proj"),
    ("--wandb_project", "proj", "logging.wandb_project", "proj"),
    ("--wandb-run-name", "exp-1", "logging.wandb_run_name", "exp-1"),
    ("--wandb_run_name", "exp-1", "logging.wandb_run_name", "exp-1"),
    ("--d-model", "512", "model.n_embd", 512),
    ("--d_model", "512", "model.n_embd", 512),
    ("--num-heads", "8", "model.n_head", 8),
    ("--num_heads", "8", "model.n_head", 8),
    ("--num-layers", "6", "model.n_layer", 6),
    ("--num_layers", "6", "model.n_layer", 6),
    ("--d-ff", "2048", "model.d_ff", 2048),
    ("--d_ff", "2048", "model.d_ff", 2048),
    ("--context-length", "256", "model.block_size", 256),
    ("--context_length", "256", "model.block_size", 256),
    ("--rope-theta", "500000", "model.rope_theta", 500000.0),
    ("--rope_theta", "500000", "model.rope_theta", 500000.0),
    ("--train_data", "corpus.txt", "data.source", "corpus.txt"),
    ("--val_data", "val.txt", "data.val_source", "val.txt"),
    ("--data", "corpus.txt", "data.source", "corpus.txt"),                # 003 (LLMBuilder)
    ("--dtype", "float16", "training.precision", "fp16"),                  # 004, torch's names
    ("--dtype", "bfloat16", "training.precision", "bf16"),
    ("--dtype", "float32", "training.precision", "fp32"),
    ("--dtype", "bf16", "training.precision", "bf16"),
]
SWITCHES = [
    ("--compile", "training.compile", True),
    ("--no-compile", "training.compile", False),
    ("--use-amp", "training.precision", "fp16"),
    ("--no-amp", "training.precision", "fp32"),
    ("--use-wandb", "logging.wandb_project", "llmtui"),
    ("--use_wandb", "logging.wandb_project", "llmtui"),
    ("--retrain-tokenizer", "tokenizer.retrain", True),
]


def value_of(cfg, key: str):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def settings_from(argv: list[str]):
    args = run_parser().parse_args(["--run", "cpu", *argv])
    return load_config("cpu", args.override + schema_flag_overrides(args))


@pytest.mark.unit
@pytest.mark.parametrize("flag,text,key,expected", FLAGS)
def test_each_documented_flag_sets_its_key(flag, text, key, expected):
    assert value_of(settings_from([flag, text]), key) == expected


@pytest.mark.unit
@pytest.mark.parametrize("flag,key,expected", SWITCHES)
def test_each_documented_switch_sets_its_key(flag, key, expected):
    assert value_of(settings_from([flag]), key) == expected


@pytest.mark.unit
def test_a_value_flag_wins_over_its_switch_whatever_the_order():
    for argv in (["--use-wandb", "--wandb-project", "mine"], ["--wandb-project", "mine", "--use-wandb"]):
        assert settings_from(argv).logging.wandb_project == "mine"


@pytest.mark.unit
def test_every_schema_flag_is_in_help_under_its_section(capsys):
    with pytest.raises(SystemExit):
        run_parser().parse_args(["--help"])
    help_text = capsys.readouterr().out
    for spec in all_fields():
        for flag in spec.flags:
            assert f"[{spec.section}] settings" in help_text
            assert flag.split("=")[0] in help_text
    assert "--config" in help_text and "--resume-from" in help_text


@pytest.mark.unit
@pytest.mark.parametrize("argv,named", [(["--batch-size", "0"], "--batch-size"),
                                        (["--n_layer", "many"], "--n_layer"),
                                        (["--dropout", "2"], "--dropout"),
                                        (["--learning-rate", "nan"], "--learning-rate")])
def test_a_bad_flag_value_is_one_line_naming_the_flag(argv, named, capsys):
    code = main(["--config", "cpu", *argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert named in err


@pytest.mark.train
def test_flags_without_a_config_train_the_preset_recommended_for_this_machine(tiny, tmp_path, capsys):
    """001's quick start is `python train.py --epochs 10`: flags alone train the preset
    `llmtui detect` recommends here, which the first line names; a bad flag is still one line."""
    from llmtui.engine.planning.recommend import recommend

    preset = recommend().preset
    assert main(["--plain", *sum((["-o", o] for o in tiny), []), "--max-iters", "3"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"llmtui: no --run CONFIG given: training the preset for this machine, {preset} (")
    assert (tmp_path / "runs" / "tiny" / "last").is_dir()
    assert main(["--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size" in err and len(err.strip().splitlines()) == 1


@pytest.mark.train
def test_config_flag_trains_with_the_documents_flags(tiny, tmp_path, capsys):
    """`--config` is --run; 004's spellings set the model and the run trains with them."""
    args = ["--config", "cpu", "--plain", *sum((["-o", o] for o in tiny), []),
            "--num_layers", "2", "--d_model", "48", "--num_heads", "3", "--context_length", "12",
            "--batch_size", "3", "--max_steps", "6", "--learning_rate", "1e-3", "--no-amp"]
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "tiny"
    config = (run / "config.toml").read_text()
    for line in ("n_layer = 2", "n_embd = 48", "n_head = 3", "block_size = 12", "batch_size = 3",
                 "max_steps = 6"):
        assert line in config
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 6


@pytest.mark.train
def test_llmbuilders_train_command_trains_into_its_output_folder(tiny, tmp_path, capsys):
    """003's `--data FILE --tokenizer ./tokenizer --output ./model`: the corpus, a trained
    tokenizer's folder (kind trained, its tokenizer.json), and the run's own folder."""
    from llmtui.engine.data.prepare import prepare_data

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 300, encoding="utf-8")
    made = prepare_data(load_config(None, [f'data.source="{corpus}"', f'data.prepared_dir="{tmp_path / "tok"}"',
                                           'tokenizer.kind="trained"', "tokenizer.vocab_size=300"]))
    folder = made.directory
    model = tmp_path / "model"
    args = ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), "--data", str(corpus),
            "--tokenizer", str(folder), "--output", str(model), "--batch-size", "4", "--max-iters", "3"]
    assert main(args) == 0, capsys.readouterr().err
    config = (model / "config.toml").read_text()
    assert 'kind = "trained"' in config and str(folder / "tokenizer.json") in config
    assert str(corpus) in config and (model / "last").is_dir()
    for bad, named in ((["--tokenizer", str(tmp_path / "none")], "--tokenizer"), (["--output", "a b"], "--output")):
        assert main(["--run", "cpu", *bad]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1


@pytest.mark.train
def test_train_command_takes_llmbuilders_words_and_a_config(tiny, tmp_path, capsys):
    """003's `llmbuilder train model --data ... --output ...` runs as `llmtui train model ...`;
    `llmtui train CONFIG` is `--run CONFIG`; an unknown flag is one line, exit 2."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 300, encoding="utf-8")
    over = sum((["-o", o] for o in tiny), [])
    assert main(["train", "model", "--data", str(corpus), "--output", str(tmp_path / "model"),
                 "--batch-size", "4", "--max-iters", "3", "--plain", *over]) == 0, capsys.readouterr().err
    assert "llmtui: no --run CONFIG given" in capsys.readouterr().err
    assert json.loads((tmp_path / "model" / "last" / "state.json").read_text())["step"] == 3
    assert main(["train", "cpu", "--max-iters", "2", "--plain", *over]) == 0
    assert json.loads((tmp_path / "runs" / "tiny" / "last" / "state.json").read_text())["step"] == 2
    capsys.readouterr()
    assert main(["train", "model", "--bogus"]) == 2
    assert "--bogus" in capsys.readouterr().err


@pytest.mark.train
def test_resume_from_continues_from_that_checkpoint(tiny, tmp_path, capsys):
    base = ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), [])]
    assert main(base + ["-o", "checkpoint.every_n_steps=10"]) == 0
    run = tmp_path / "runs" / "tiny"
    assert main(base + ["--resume_from", str(run / "step_20"), "--max-iters", "35"]) == 0
    start = [r for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "start"][-1]
    assert start["resumed_from"] == str(run / "step_20") and start["start_step"] == 20
    capsys.readouterr()


@pytest.mark.train
def test_retrain_tokenizer_prepares_the_data_again(tiny, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 300)
    base = ["--run", "cpu", "--plain", *sum((["-o", o] for o in tiny), []), "--train-data", str(corpus),
            "-o", f'data.prepared_dir="{tmp_path / "prepared"}"', "--max-iters", "2"]
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"

    def data_reused() -> bool:
        return [r for r in read_jsonl(metrics) if r["kind"] == "start"][-1]["data_reused"]

    assert main(base) == 0 and data_reused() is False
    assert main(base + ["--overwrite"]) == 0 and data_reused() is True
    assert main(base + ["--overwrite", "--retrain-tokenizer"]) == 0 and data_reused() is False
    capsys.readouterr()


@pytest.mark.subprocess
def test_the_cli_flags_do_not_import_torch():
    import subprocess
    code = ("import sys; from llmtui.cli import run_parser, schema_flag_overrides; "
            "a = run_parser().parse_args(['--run', 'cpu', '--batch-size', '4', '--use-amp']); "
            "schema_flag_overrides(a); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
