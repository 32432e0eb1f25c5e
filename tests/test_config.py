"""Config: the schema, loading, overrides, validation and the generated docs."""

import tomllib
from pathlib import Path

import pytest

from llmtui.engine.config.loading import (
    apply_override,
    config_to_toml,
    load_config,
    preset_names,
    reference_markdown,
)
from llmtui.engine.config.schema import FIELDS, Config, all_fields
from llmtui.engine.errors import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_every_field_has_help_type_and_valid_default():
    for spec in all_fields():
        assert spec.help.strip(), spec.path
        assert spec.type in (int, float, bool, str, list), spec.path
    # the defaults themselves must pass validation
    load_config(None)


def test_product_names_exist():
    """Names that users and scripts rely on (PRODUCT.md) must stay."""
    expected = {
        "run": ["name", "out_dir", "seed", "device"],
        "data": ["source", "val_fraction"],
        "tokenizer": ["kind", "encoding", "vocab_size", "special_tokens", "path"],
        "model": ["n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "pos_encoding"],
        "training": ["batch_size", "grad_accum_steps", "max_steps", "precision", "grad_clip",
                     "early_stopping", "early_stopping_patience", "early_stopping_min_delta",
                     "save_best"],
        "optimizer": ["name", "learning_rate", "betas", "weight_decay"],
        "scheduler": ["kind", "warmup_steps", "min_learning_rate"],
        "eval": ["every_n_steps", "max_batches"],
        "checkpoint": ["every_n_steps", "keep_last"],
        "logging": ["every_n_steps"],
    }
    for section, keys in expected.items():
        for key in keys:
            assert key in FIELDS[section], f"{section}.{key}"


def test_presets_load_and_every_key_is_commented():
    assert {"cpu", "gtx1660", "rtx4060"} <= set(preset_names())
    for name in ("cpu", "gtx1660", "rtx4060"):
        text = (REPO / "presets" / f"{name}.toml").read_text()
        load_config(name)
        for line in text.splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                assert "#" in line, f"{name}.toml: uncommented key: {line}"
    cpu = load_config("cpu")
    assert cpu.training.precision == "fp32"
    assert cpu.data.source == "builtin"


def test_load_file_and_preset_by_path(tmp_path):
    path = write(tmp_path, '[model]\nn_layer = 2\n[training]\nmax_steps = 7\n')
    cfg = load_config(path)
    assert cfg.model.n_layer == 2 and cfg.training.max_steps == 7
    assert cfg.model.n_embd == Config().model.n_embd  # untouched keys keep defaults


def test_unknown_key_suggests_the_right_name(tmp_path):
    msg = error_of(write(tmp_path, "[model]\nn_layr = 2\n"))
    assert "model.n_layr" in msg and "model.n_layer" in msg and "c.toml" in msg
    msg = error_of(write(tmp_path, "[model]\nbatch_size = 2\n"))
    assert "training.batch_size" in msg
    msg = error_of(write(tmp_path, "[trainig]\nmax_steps = 2\n"))
    assert "[trainig]" in msg and "training" in msg


@pytest.mark.parametrize("override, words", [
    ("training.batch_size=0", ["training.batch_size", "0", ">= 1"]),
    ("training.precision=fp8", ["training.precision", "fp8", "fp32, bf16, fp16"]),
    ("run.device=gpu", ["run.device", "gpu", "cuda:N"]),
    ("model.dropout=1.5", ["model.dropout", "1.5", "<= 0.9"]),
    ("training.max_steps=1.5", ["training.max_steps", "1.5", "integer"]),
    ("model.bias=1", ["model.bias", "true or false"]),
    ("model.n_head=5", ["model.n_head", "n_embd"]),
    ("model.n_kv_head=3", ["model.n_kv_head = 3 must divide model.n_head = 4"]),
    ("model.n_kv_head=-1", ["model.n_kv_head", ">= 0"]),
    ("optimizer.betas=[0.9]", ["optimizer.betas", "2"]),
    ("scheduler.min_learning_rate=0.5", ["scheduler.min_learning_rate", "optimizer.learning_rate"]),
    ("run.name=a/b", ["run.name", "letters"]),
])
def test_bad_values_name_key_value_and_allowed(override, words):
    msg = error_of(None, [override])
    for word in words:
        assert word in msg, (word, msg)


def test_bad_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[model\nn_layer = 2\n")
    msg = error_of(path)
    assert str(path) in msg and "TOML" in msg


def test_missing_file_lists_presets(tmp_path):
    msg = error_of(tmp_path / "nope.toml")
    assert "nope.toml" in msg and "cpu" in msg


def test_overrides_are_toml_typed_with_array_indices():
    cfg = load_config(None, ["optimizer.learning_rate=3e-4", "model.bias=true",
                             "optimizer.betas=[0.9, 0.95]", "data.sources[0]=a.txt",
                             'data.sources[1]="b c.txt"', "data.source=./x.txt",
                             "optimizer.betas[1]=0.999"])
    assert cfg.optimizer.learning_rate == 3e-4
    assert cfg.model.bias is True
    assert cfg.optimizer.betas == [0.9, 0.999]
    assert cfg.data.sources == ["a.txt", "b c.txt"]
    assert cfg.data.source == "./x.txt"


def test_override_errors():
    assert "expected section.key=value" in error_of(None, ["training.max_steps"])
    assert "past the end" in error_of(None, ["data.sources[3]=x"])
    assert "not a list" in error_of(None, ["model.n_layer[0]=3"])


def test_keyword_settings_in_api():
    cfg = load_config("cpu", training__max_steps=5, model__n_layer=1)
    assert cfg.training.max_steps == 5 and cfg.model.n_layer == 1


def test_written_toml_round_trips_with_comments():
    cfg = load_config(None, ["model.n_layer=3", "data.sources[0]=x.txt"])
    text = config_to_toml(cfg, header="hello")
    assert text.startswith("# hello")
    assert "# Transformer blocks." in text
    again = load_config(None)
    for section, table in tomllib.loads(text).items():
        for key, value in table.items():
            apply_override(again, f"{section}.{key}={_toml(value)}")
    assert again == cfg


def _toml(value):
    import json
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def test_readme_reference_matches_schema():
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- reference:start -->") + len("<!-- reference:start -->")
    end = readme.index("<!-- reference:end -->")
    assert readme[start:end].strip() == reference_markdown().strip(), \
        "README config reference is stale: regenerate it with `llmtui config --reference`"


def errors_of(*args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return info.value


def test_errors_carry_key_value_allowed_and_the_file_line(tmp_path):
    path = write(tmp_path, "# my config\n[run]\nname = \"x\"\n\n[model]\nn_layer = 0\nn_head = 4\n")
    error = errors_of(path)
    assert (error.origin, error.line, error.key, error.value) == (str(path), 6, "model.n_layer", "0")
    assert error.reason == "out of range" and error.allowed == "an integer >= 1 and <= 96"
    # the one line names the file and line, the key, the value and what is allowed
    assert str(error) == (f"{path}:6: model.n_layer = 0 is not allowed (out of range); "
                          "expected an integer >= 1 and <= 96")
    assert error.detail == str(error).split(f"{path}:6: ", 1)[1]
    unknown = errors_of(write(tmp_path, "[model]\nn_layers = 4\n"))
    assert (unknown.key, unknown.line, unknown.reason) == ("model.n_layers", 2, "unknown key")
    assert "did you mean 'model.n_layer'" in str(unknown)


def test_override_errors_say_they_came_from_an_override():
    error = errors_of("cpu", ["model.dropout=2.0"])
    assert (error.origin, error.line, error.key, error.value) == ("--override", None, "model.dropout", "2.0")
    assert str(error).startswith("--override: model.dropout = 2.0 is not allowed")


def test_cross_key_rules_name_every_key_involved():
    error = errors_of("cpu", ["model.n_head=5"])
    assert error.keys == ("model.n_head", "model.n_embd")
    assert error.detail == "model.n_head = 5 must divide model.n_embd = 96"


def test_grouped_query_attention_heads_must_divide_the_query_heads():
    error = errors_of("cpu", ["model.n_kv_head=3"])
    assert error.keys == ("model.n_kv_head", "model.n_head")
    for fine in ("0", "1", "2", "4"):
        assert load_config("cpu", [f"model.n_kv_head={fine}"]).model.n_kv_head == int(fine)
    # n_kv_head = n_head is multi-head attention, as 0 is: the same model, so the same fingerprint
    # as checkpoints written before the key existed (NEW_FIELDS leaves out 0)
    from llmtui.engine.model.gpt import NEW_FIELDS, gpt_config

    assert gpt_config(load_config("cpu", ["model.n_kv_head=4"]), 65).n_kv_head == NEW_FIELDS["n_kv_head"] == 0
    assert gpt_config(load_config("cpu", ["model.n_kv_head=2"]), 65).n_kv_head == 2


def test_head_dim_sets_the_heads_apart_and_is_even_with_rotary_positions():
    """model.head_dim (Qwen3's head size): 0 = n_embd / n_head; else any width (n_head then
    need not divide n_embd), even with rotary positions; one-line errors naming it."""
    from llmtui.engine.model.gpt import NEW_FIELDS, gpt_config

    error = errors_of("cpu", ["model.head_dim=7"])                 # the cpu preset is rotary
    assert error.keys == ("model.head_dim", "model.pos_encoding")
    assert error.detail.startswith("model.head_dim = 7 must be even with model.pos_encoding = \"rope\"")
    assert "\n" not in str(error)
    assert "model.head_dim" in error_of(None, ["model.head_dim=-2"]) and ">= 0" in error_of(None, ["model.head_dim=-2"])
    assert load_config(None, ["model.head_dim=7"]).model.head_dim == 7   # learned positions: any width
    wide = load_config("cpu", ["model.n_head=5", "model.head_dim=48"])   # 5 heads of 48 in 96
    assert gpt_config(wide, 65).head_dim == 48 and gpt_config(wide, 65).attention_width == 240
    # head_dim = n_embd / n_head is the default model, as 0 is: the fingerprint of older checkpoints
    assert gpt_config(load_config("cpu", ["model.head_dim=24"]), 65).head_dim == NEW_FIELDS["head_dim"] == 0   # 96 / 4


def test_a_cross_key_error_names_where_its_keys_were_set(tmp_path):
    assert errors_of("cpu", ["model.n_head=5"]).origin == "--override"    # not "preset cpu"
    assert errors_of("cpu", model__n_head=5).origin == "argument"          # the Python API's keywords
    path = tmp_path / "mine.toml"
    path.write_text("[model]\nn_head = 5\n")
    assert errors_of(path, []).origin == str(path)
    assert errors_of(path, ["model.n_layer=2"]).origin == str(path)       # the override is not involved
    assert errors_of(path, ["model.n_embd=131"]).origin == "--override"


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes("\ufeff[model]\nn_layer = 2\n".encode("utf-8"))
    assert load_config(path).model.n_layer == 2


def test_absurdly_nested_values_are_one_line_errors(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    assert "nested too deeply" in error_of(write(tmp_path, f"[data]\nsources = {deep}\n"))
    assert "nested too deeply" in error_of("cpu", [f"data.sources={deep}"])
    inline = "{a = " * 5000 + "1" + "}" * 5000
    assert "nested too deeply" in error_of(write(tmp_path, f"[data]\nsources = {inline}\n"))


def test_a_preset_name_never_reaches_outside_the_presets(tmp_path, monkeypatch):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dup.toml").write_text("[model]\nn_layer = 2\n")
    monkeypatch.chdir(tmp_path / "x")
    assert "no such config file or preset" in error_of("../x/dup")
    assert load_config("dup.toml").model.n_layer == 2   # as a file path it loads
