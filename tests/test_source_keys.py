"""The source documents' keys (issue 20): 002's validation shards and special-tokens file,
003's min_lr_ratio, 000's data/processed layout for .bin token files."""

import json

import numpy as np
import pytest

from llmtui.engine.config.loading import config_from_dict, config_to_toml, load_config, parse_toml
from llmtui.engine.config.schema import Config
from llmtui.engine.data.prepare import prepare_data
from llmtui.engine.errors import ConfigError
from llmtui.engine.training.schedule import lr_at

pytestmark = pytest.mark.train


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- data.val_source as a list (002's validation_shards) --------------------

def test_val_source_list_is_validation_shards(tmp_path):
    train = write(tmp_path / "train.txt", "abcdefgh\n" * 200)
    a, b = write(tmp_path / "va.txt", "aaaa\n" * 20), write(tmp_path / "vb.txt", "bbbb\n" * 20)
    toml = tmp_path / "c.toml"
    toml.write_text(f'[data]\nsource = "{train}"\nval_source = ["{a}", "{b}"]\n'
                    f'prepared_dir = "{tmp_path / "p"}"\n', encoding="utf-8")
    cfg = load_config(toml)
    assert cfg.data.val_source == str(a) and cfg.data.val_sources == [str(b)]
    d = prepare_data(cfg)
    assert d.tokenizer.decode(d.val.tolist()) == "aaaa\n" * 20 + "bbbb\n" * 20
    assert d.tokenizer.decode(d.train.tolist()) == "abcdefgh\n" * 200
    assert prepare_data(load_config(toml)).reused
    # the written config reads back to the same settings
    again = config_from_dict(parse_toml(config_to_toml(cfg), "x"))
    assert (again.data.val_source, again.data.val_sources) == (str(a), [str(b)])
    # one shard changed: prepared again
    write(b, "bbbx\n" * 20)
    assert not prepare_data(load_config(toml)).reused


def test_val_source_list_as_override_and_with_val_sources_refused(tmp_path):
    cfg = load_config(None, ['data.val_source=["x.txt", "y.txt", "z.txt"]'])
    assert (cfg.data.val_source, cfg.data.val_sources) == ("x.txt", ["y.txt", "z.txt"])
    assert load_config(None, ["data.val_source=[]"]).data.val_source == ""
    toml = write(tmp_path / "c.toml", '[data]\nval_source = ["a.txt"]\nval_sources = ["b.txt"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(toml)
    assert "data.val_source is a list and data.val_sources is set too" in str(err.value)
    assert err.value.line == 3


# --- tokenizer.special_tokens as a file (002) -------------------------------

def test_special_tokens_file_one_per_line(tmp_path):
    special = write(tmp_path / "artifacts" / "special_tokens.txt", "<|endoftext|>\n\n<|pad|>\r\n  <|sep|>  \n")
    toml = write(tmp_path / "c.toml", f'[tokenizer]\nkind = "trained"\nspecial_tokens = "{special}"\n')
    assert load_config(toml).tokenizer.special_tokens == ["<|endoftext|>", "<|pad|>", "<|sep|>"]
    cfg = load_config(None, [f'tokenizer.special_tokens="{special}"'])
    assert cfg.tokenizer.special_tokens[0] == "<|endoftext|>"


def test_special_tokens_file_missing_is_one_line(tmp_path):
    toml = write(tmp_path / "c.toml", '[tokenizer]\nkind = "trained"\nspecial_tokens = "nope.txt"\n')
    with pytest.raises(ConfigError) as err:
        load_config(toml)
    message = str(err.value)
    assert message.startswith(f'{toml}:3: tokenizer.special_tokens = "nope.txt": cannot read the '
                              "special-tokens file nope.txt")
    assert err.value.key == "tokenizer.special_tokens" and "\n" not in message


# --- scheduler.min_lr_ratio (003) ------------------------------------------

def test_min_lr_ratio_is_the_end_of_the_decay():
    cfg = load_config(None, ["optimizer.learning_rate=2e-3", "scheduler.min_lr_ratio=0.1",
                             "scheduler.warmup_steps=0"])
    assert lr_at(100, cfg.scheduler, 2e-3, 100) == pytest.approx(2e-4)
    assert lr_at(50, cfg.scheduler, 2e-3, 100) == pytest.approx(2e-4 + 0.5 * (2e-3 - 2e-4))
    assert lr_at(100, cfg.scheduler, 1e-2, 100) == pytest.approx(1e-3)   # a share of each peak
    plain = Config().scheduler
    assert lr_at(100, plain, 2e-3, 100) == plain.min_learning_rate


def test_min_lr_ratio_and_min_learning_rate_both_set_is_refused(tmp_path):
    toml = write(tmp_path / "c.toml", "[scheduler]\nmin_learning_rate = 3e-5\nmin_lr_ratio = 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(toml)
    assert str(err.value) == (f"{toml}: scheduler.min_lr_ratio = 0.1 and scheduler.min_learning_rate = "
                              "3e-05 are both set; set one of them (min_lr_ratio is a share of "
                              "optimizer.learning_rate)")
    with pytest.raises(ConfigError, match="both set"):
        load_config(None, ["scheduler.min_learning_rate=3e-5", "scheduler.min_lr_ratio=0.1"])


def test_the_one_given_after_the_file_replaces_the_other(tmp_path):
    cfg = load_config("cpu", ["scheduler.min_lr_ratio=0.1"])   # the cpu preset sets min_learning_rate
    assert cfg.scheduler.min_lr_ratio == 0.1
    # the config written with the run reads back on its own, with the same end of decay
    again = load_config(write(tmp_path / "run.toml", config_to_toml(cfg)))
    assert again.scheduler.min_lr_ratio == 0.1
    assert lr_at(10**6, again.scheduler, 1e-3, 100) == pytest.approx(1e-4)
    toml = write(tmp_path / "c.toml", "[scheduler]\nmin_lr_ratio = 0.1\n")
    later = load_config(toml, ["scheduler.min_learning_rate=1e-5"])
    assert (later.scheduler.min_lr_ratio, later.scheduler.min_learning_rate) == (0.0, 1e-5)


# --- 000's layout: data/train.bin, data/val.bin, data/meta.json, prepared_dir data/processed ---

def test_bin_in_data_processed_uses_the_meta_json_of_data(tmp_path):
    root = tmp_path / "data"
    (root / "processed").mkdir(parents=True)
    chars = list("abcdefgh")
    (root / "meta.json").write_text(json.dumps({"vocab_size": 8, "chars": chars}))
    np.array([0, 1, 2, 3] * 300, dtype=np.uint16).tofile(root / "processed" / "train.bin")
    np.array([4, 5] * 100, dtype=np.uint16).tofile(root / "processed" / "val.bin")
    cfg = load_config(None, data__source=str(root / "processed" / "train.bin"),
                      data__prepared_dir=str(root / "processed"))
    d = prepare_data(cfg)
    assert d.tokenizer.chars == chars and d.tokenizer.decode(d.val[:2].tolist()) == "ef"
    assert d.meta["side_meta"]["chars"] == chars


def test_bin_named_in_data_processed_is_found_in_data(tmp_path):
    root = tmp_path / "data"
    (root / "processed").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"chars": list("xyz")}))
    np.array([0, 1, 2] * 400, dtype=np.uint16).tofile(root / "train.bin")
    np.array([2, 1] * 100, dtype=np.uint16).tofile(root / "val.bin")
    cfg = load_config(None, data__source=str(root / "processed" / "train.bin"),
                      data__prepared_dir=str(root / "processed"))
    d = prepare_data(cfg)
    assert len(d.train) == 1200 and len(d.val) == 200 and d.tokenizer.decode([0, 1, 2]) == "xyz"
