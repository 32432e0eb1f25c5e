"""The Rust training crate's config (source document 002) and its --override paths, read as
llmtui's keys (engine.config.foreign)."""

from __future__ import annotations

import pytest

from llmtui import load_config
from llmtui.cli import main
from llmtui.engine.errors import ConfigError

# 002's example configuration, as the document prints it (its paths pointed at test files)
RUST_CONFIG = """\
[tokenizer]
tokenizer_json = "{tokenizer}"
special_tokens = "{special}"

[data]
train_shards = ["{train}", "{train2}"]
validation_shards = ["{valid}"]
batch_size = 8
gradient_accumulation_steps = 1
shuffle_buffer_size = 128

[optimizer]
learning_rate = 0.0003
beta1 = 0.9
beta2 = 0.95
epsilon = 1e-8

[scheduler]
strategy = "constant"
total_steps = 1000

[runtime]
seed = 42
log_every_n_steps = 10

[runtime.checkpoint]
directory = "{checkpoints}"
every_n_steps = 100
max_keep = 3

[runtime.evaluation]
every_n_steps = 200
max_batches = 2

[runtime.evaluation.best]
directory = "{checkpoints}/best"
max_keep = 1

[runtime.logging]
enable_stdout = true
tensorboard = "{tensorboard}"
tensorboard_flush_every_n = 20

[model]
hidden_size = 512
intermediate_size = 2048
num_layers = 6
num_attention_heads = 8
max_position_embeddings = 512
"""


def write_rust_config(tmp_path, **changes) -> tuple:
    """002's example config in tmp_path with its files made: a trained tokenizer.json, the
    special-tokens file and three text shards."""
    from llmtui.engine.data.prepare import prepare_data

    text = "the quick brown fox jumps over the lazy dog\n" * 400
    for name in ("train.txt", "train2.txt", "valid.txt"):
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "special_tokens.txt").write_text("<|endoftext|>\n", encoding="utf-8")
    made = prepare_data(load_config(None, [f'data.source="{tmp_path / "train.txt"}"',
                                           f'data.prepared_dir="{tmp_path / "tok"}"',
                                           'tokenizer.kind="trained"', "tokenizer.vocab_size=300"]))
    body = RUST_CONFIG.format(tokenizer=made.directory / "tokenizer.json", special=tmp_path / "special_tokens.txt",
                              train=tmp_path / "train.txt", train2=tmp_path / "train2.txt",
                              valid=tmp_path / "valid.txt", checkpoints=tmp_path / "checkpoints",
                              tensorboard=tmp_path / "runs" / "train")
    for old, new in changes.items():
        body = body.replace(old, new)
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path, made.directory / "tokenizer.json"


@pytest.mark.train
def test_the_rust_crates_example_config_loads_as_llmtuis_keys(tmp_path):
    path, tokenizer = write_rust_config(tmp_path)
    cfg = load_config(path)
    assert (cfg.tokenizer.kind, cfg.tokenizer.path) == ("trained", str(tokenizer))
    assert cfg.tokenizer.special_tokens == ["<|endoftext|>"]
    assert (cfg.data.source, cfg.data.sources) == (str(tmp_path / "train.txt"), [str(tmp_path / "train2.txt")])
    assert cfg.data.val_source == str(tmp_path / "valid.txt")
    assert (cfg.training.batch_size, cfg.training.grad_accum_steps, cfg.training.max_steps) == (8, 1, 1000)
    assert (cfg.optimizer.learning_rate, list(cfg.optimizer.betas), cfg.optimizer.eps) == (3e-4, [0.9, 0.95], 1e-8)
    assert cfg.scheduler.kind == "constant" and cfg.run.seed == 42 and cfg.logging.every_n_steps == 10
    assert cfg.run.out_dir == str(tmp_path / "checkpoints")
    assert (cfg.checkpoint.every_n_steps, cfg.checkpoint.keep_last, cfg.checkpoint.keep_best) == (100, 3, 1)
    assert (cfg.eval.every_n_steps, cfg.eval.max_batches) == (200, 2)
    assert cfg.logging.tensorboard_dir == str(tmp_path / "runs" / "train")
    assert cfg.logging.tensorboard_flush_every_n == 20
    m = cfg.model
    assert (m.n_embd, m.d_ff, m.n_layer, m.n_head, m.block_size) == (512, 2048, 6, 8, 512)


@pytest.mark.unit
def test_the_rust_crates_overrides_set_llmtuis_keys():
    """002's own example: --override runtime.log_every_n_steps=5 --override
    optimizer.learning_rate=0.0001 --override scheduler.total_steps=500 --override
    data.train_shards[0]=./alt/train.txt (and a nested one)."""
    cfg = load_config("cpu", ["runtime.log_every_n_steps=5", "optimizer.learning_rate=0.0001",
                              "scheduler.total_steps=500", "data.train_shards[0]=./alt/train.txt",
                              "data.train_shards[1]=./alt/more.txt", "runtime.checkpoint.max_keep=7",
                              "optimizer.beta2=0.98"])
    assert cfg.logging.every_n_steps == 5 and cfg.optimizer.learning_rate == 1e-4
    assert cfg.training.max_steps == 500 and cfg.checkpoint.keep_last == 7
    assert (cfg.data.source, cfg.data.sources) == ("./alt/train.txt", ["./alt/more.txt"])
    assert list(cfg.optimizer.betas) == [0.9, 0.98]


@pytest.mark.unit
def test_a_bad_value_under_a_rust_name_names_both_keys_and_its_line(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[model]\nnum_layers = 0\n\n[runtime.checkpoint]\nmax_keep = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:2: model.num_layers (llmtui's model.n_layer): model.n_layer = 0")
    path.write_text("[runtime.checkpoint]\nevery_n_steps = 10\nbogus = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}:3: unknown key runtime.checkpoint.bogus"
    with pytest.raises(ConfigError, match="runtime.checkpoint.max_keep"):
        load_config("cpu", ["runtime.checkpoint.max_keep=-1"])


@pytest.mark.train
def test_a_rust_config_trains_headless_into_its_checkpoint_directory(tmp_path, capsys):
    path, _ = write_rust_config(tmp_path, **{
        "hidden_size = 512": "hidden_size = 32", "intermediate_size = 2048": "intermediate_size = 64",
        "num_layers = 6": "num_layers = 1", "num_attention_heads = 8": "num_attention_heads = 2",
        "max_position_embeddings = 512": "max_position_embeddings = 16", "total_steps = 1000": "total_steps = 4",
        "batch_size = 8": "batch_size = 4", 'tensorboard = "': 'tensorboard = "" # "'})
    assert main(["--run", str(path), "--plain", "-o", f'data.prepared_dir="{tmp_path / "prepared"}"',
                 "-o", "runtime.evaluation.every_n_steps=2", "-o", "eval.sample_tokens=0"]) == 0, \
        capsys.readouterr().err
    run = tmp_path / "checkpoints" / load_config(path).run.name
    assert (run / "last").is_dir() and (run / "best").is_dir()


@pytest.mark.train
def test_the_apps_forms_read_rust_names_and_edit_in_llmtuis(tmp_path):
    """The wizard's document shows what 002's names set; an edit writes llmtui's name in place
    of 002's (never both), and what else that key of 002's set stays as it was."""
    from llmtui.engine.config.document import ConfigDocument

    path, _ = write_rust_config(tmp_path)
    doc = ConfigDocument.load(path)
    assert (doc.get("model.n_layer"), doc.get("checkpoint.keep_last")) == (6, 3)
    assert doc.get("data.sources") == [str(tmp_path / "train2.txt")]
    doc.set("model.n_layer", 3)
    doc.set("data.source", str(tmp_path / "valid.txt"))
    doc.set("optimizer.betas", [0.8, 0.9])
    doc.unset("checkpoint.keep_last")
    doc.save()
    text = path.read_text(encoding="utf-8")
    for gone in ("num_layers", "train_shards", "beta1 =", "beta2 =", "max_keep = 3"):
        assert gone not in text, gone
    cfg = load_config(path)
    assert cfg.model.n_layer == 3 and list(cfg.optimizer.betas) == [0.8, 0.9]
    assert (cfg.data.source, cfg.data.sources) == (str(tmp_path / "valid.txt"), [str(tmp_path / "train2.txt")])
    assert cfg.checkpoint.keep_last == 3 and cfg.checkpoint.keep_best == 1 and cfg.model.n_head == 8


@pytest.mark.unit
def test_the_readme_lists_every_rust_name():
    from pathlib import Path

    from llmtui.engine.config import foreign

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for theirs, ours in foreign.KEYS.items():
        assert f"| `{theirs}` | `{ours}` |" in readme
    for theirs in foreign.NO_EFFECT:
        assert f"`{theirs}`" in readme


@pytest.mark.unit
def test_000s_two_names(tmp_path):
    """000's data.processed_dir is prepared_dir; its training.data_format must agree with
    data.source (llmtui reads the format from the source's name)."""
    path = tmp_path / "base.toml"
    path.write_text('[data]\nsource = "data/train.bin"\nprocessed_dir = "data/processed"\n\n'
                    '[training]\ndata_format = "bin"\nbatch_size = 8\n', encoding="utf-8")
    cfg = load_config(path)
    assert cfg.data.prepared_dir == "data/processed" and cfg.data.source == "data/train.bin"
    path.write_text('[training]\ndata_format = "bin"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f'{path}:2: training.data_format = "bin"') and "data.source" in str(err.value)
    assert load_config("cpu", ['training.data_format="txt"']).data.source == "builtin"
    with pytest.raises(ConfigError, match="expected \"txt\" or \"bin\""):
        load_config("cpu", ['training.data_format="csv"'])
