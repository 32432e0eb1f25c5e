"""Load, override, validate and write configs, all driven by `engine.config.schema`.

Every problem raises ConfigError with one line that names the file, the key,
the value and what is allowed, before any heavy work (data, torch) starts.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from llmtui.engine.config import foreign
from llmtui.engine.config.presets import is_preset, preset_names, preset_text
from llmtui.engine.config.resolved import is_auto
from llmtui.engine.config.schema import FIELDS, SECTIONS, Config, FieldSpec
from llmtui.engine.errors import ConfigError, config_error

_OVERRIDE_RE = re.compile(r"^(?P<section>[A-Za-z_]\w*)\.(?P<key>[A-Za-z_]\w*)(?:\[(?P<index>\d+)\])?$")


# ---------------------------------------------------------------------------
# where values come from

@dataclass(frozen=True)
class Origin:
    """Where config values came from: a file or preset (with its text, so an
    error can name the line), an override, a form, a keyword argument."""

    name: str
    text: str | None = None

    def line_of(self, section: str, key: str | None = None) -> int | None:
        """The line that sets `section.key` (or opens [section]) in the text."""
        if not self.text:
            return None
        current = None
        for number, raw in enumerate(self.text.splitlines(), start=1):
            line = raw.strip()
            header = _TABLE_RE.match(line)
            if header:
                current = header["name"].strip().strip('"')
                if key is None and current == section:
                    return number
                continue
            if key is not None and current == section:
                match = _KEY_RE.match(line)
                if match and match["key"].strip('"\'') == key:
                    return number
        return None


def _as_origin(origin: Origin | str) -> Origin:
    return origin if isinstance(origin, Origin) else Origin(origin)


_TABLE_RE = re.compile(r"^\[(?!\[)(?P<name>[^\]]+)\]")
_KEY_RE = re.compile(r"^(?P<key>[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')\s*=")


# ---------------------------------------------------------------------------
# loading

def load_config(name_or_path: str | Path | None = None, overrides: Iterable[str] = (), *,
                preset: str | None = None, **settings: Any) -> Config:
    """Load a config file or preset, apply `section.key=value` overrides and then
    keyword settings given as `section__key=value` (a key given both ways takes the
    keyword's value), and validate the result. `preset="cpu"` (LLMBuilder's spelling)
    is the same as naming the preset first."""
    if preset is not None:
        if name_or_path is not None:
            raise ConfigError(f"load_config: give a preset or a file, not both ({preset!r} and "
                              f"{str(name_or_path)!r})")
        name_or_path = preset
    if name_or_path is None:
        data: dict[str, Any] = {}
        origin = Origin("config")
    else:
        text, name, _ = config_source(name_or_path)
        origin = Origin(name, text)
        data = parse_toml(text, name)
    cfg = config_from_dict(data, origin)
    validate(cfg, origin.name, apply_changes(cfg, overrides, settings))
    return remember_parent(cfg)   # Trainer(config=cfg.training) finds the rest of it


PARENT = "_llmtui_config"          # the attribute a loaded config's sections point back with


def remember_parent(cfg: Config) -> Config:
    """Let each section of `cfg` find the whole config again: LLMBuilder's API passes
    config.training alone (engine.builder_api), and the preset's other sections apply."""
    for name in SECTIONS:
        object.__setattr__(getattr(cfg, name), PARENT, cfg)
    return cfg


def parent_of(section: Any) -> Config | None:
    return getattr(section, PARENT, None)


def apply_changes(cfg: Config, overrides: Iterable[str] = (), settings: Mapping[str, Any] | None = None
                  ) -> dict[str, str]:
    """Apply the keys given after the file, in the one order every caller uses: the
    `section.key=value` overrides first, then the `section__key` keyword settings, so a key
    given both ways takes the keyword's value. Returns {path: origin} for `validate`."""
    set_by = {apply_override(cfg, text): "--override" for text in overrides}
    set_by.update(apply_settings(cfg, settings or {}))
    return set_by


def apply_settings(cfg: Config, settings: Mapping[str, Any]) -> dict[str, str]:
    """Set keyword settings written `section__key=value`; returns {path: "argument"} for each."""
    set_by = {}
    for key, value in settings.items():
        section, _, name = key.partition("__")
        set_value(cfg, section, name, value, origin="argument")
        set_by[f"{section}.{name}"] = "argument"
    return set_by


def config_source(name_or_path: str | Path) -> tuple[str, str, Path | None]:
    """(TOML text, origin, file path) of a config file, or of a shipped preset
    (then the path is None) named without a path separator or suffix."""
    text_name = str(name_or_path)
    if "\0" in text_name:
        raise ConfigError(f"{text_name!r}: a config path cannot hold a NUL character")
    path = Path(name_or_path)
    if path.is_file():
        return read_text(path), str(path), path
    if is_preset(text_name):
        return preset_text(text_name), f"preset {text_name}", None
    if path.exists():
        raise ConfigError(f"{path}: is not a file; give a TOML config file or a preset name")
    names = ", ".join(preset_names())
    raise ConfigError(f"{name_or_path}: no such config file or preset (presets: {names})")


def read_text(path: Path) -> str:
    """A config file's text; a UTF-8 byte order mark (as some editors write) is dropped."""
    try:
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", origin=origin) from None
    except RecursionError:
        raise ConfigError("not valid here: arrays or tables are nested too deeply",
                          origin=origin) from None


def config_from_dict(data: dict[str, Any], origin: Origin | str = "config") -> Config:
    origin = _as_origin(origin)
    cfg = Config()
    for section, table in data.items():
        if section in foreign.FOREIGN_SECTIONS and isinstance(table, dict):
            for path, value in foreign.leaves(section, table):   # 002's [runtime...] tables
                if not foreign.is_foreign(path):
                    table_name, _, key = path.rpartition(".")
                    raise ConfigError(f"unknown key {path}", origin=origin.name, key=path,
                                      line=origin.line_of(table_name, key), reason="unknown key")
                _set_foreign(cfg, path, value, origin)
            continue
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]{_did_you_mean(section, SECTIONS)}",
                              origin=origin.name, line=origin.line_of(section), reason="unknown section")
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table of settings", origin=origin.name,
                              line=origin.line_of(section), key=None)
        if (section == "data" and isinstance(table.get("val_source"), list)
                and table.get("val_sources")):
            raise ConfigError("data.val_source is a list and data.val_sources is set too; give the "
                              "validation corpora in one of them", origin=origin.name,
                              line=origin.line_of(section, "val_sources"), key="data.val_sources",
                              related=("data.val_source",))
        for key, value in table.items():
            if key not in FIELDS[section] and foreign.is_foreign(f"{section}.{key}"):
                _set_foreign(cfg, f"{section}.{key}", value, origin)
            else:
                set_value(cfg, section, key, value, origin)
    fmt = data.get("training", {}).get("data_format") if isinstance(data.get("training"), dict) else None
    if fmt is not None:
        _check_data_format(cfg, fmt, origin)
    return cfg


def _check_data_format(cfg: Config, fmt: Any, origin: Origin) -> None:
    """000's training.data_format ("txt" or "bin") against data.source, as loaded so far."""
    problem = foreign.check_data_format(fmt, cfg.data.source)
    if problem:
        raise ConfigError(problem, origin=origin.name, line=origin.line_of("training", "data_format"),
                          key="training.data_format", related=("data.source",))


def _set_foreign(cfg: Config, path: str, value: Any, origin: Origin) -> list[str]:
    """Set what 002's `path` = `value` means in llmtui's keys (engine.config.foreign); an
    error names both keys and the line of 002's. Returns the llmtui paths set."""
    table, _, key = path.rpartition(".")
    done = []
    for target, item in foreign.translate(path, value):
        try:
            done.append(_set_path(cfg, target, item, origin))
        except ConfigError as exc:
            raise ConfigError(f"{path} (llmtui's {target.partition('[')[0]}): {exc.detail}",
                              origin=origin.name, line=origin.line_of(table, key) if origin.text else exc.line,
                              key=exc.key, value=exc.value, reason=exc.reason, allowed=exc.allowed) from None
    return done


def _set_path(cfg: Config, path: str, value: Any, origin: Origin) -> str:
    """Set `section.key` or one item `section.key[N]` (N equal to the length appends)."""
    match = _OVERRIDE_RE.match(path)
    assert match, path
    section, key, index = match["section"], match["key"], match["index"]
    if index is None:
        set_value(cfg, section, key, value, origin)
        return f"{section}.{key}"
    spec = FIELDS[section][key]
    if spec.type is not list:
        raise ConfigError(f"{spec.path} is not a list; drop the [{index}]", origin=origin.name,
                          key=spec.path)
    items = list(getattr(getattr(cfg, section), key))
    i = int(index)
    if i > len(items):
        raise ConfigError(f"{spec.path}[{i}] is past the end of the list (it has {len(items)} "
                          f"items; use index {len(items)} to append)", origin=origin.name, key=spec.path)
    if i == len(items):
        items.append(value)
    else:
        items[i] = value
    set_value(cfg, section, key, items, origin)
    return f"{section}.{key}"


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_key(origin: Origin, section: str, key: str) -> ConfigError:
    elsewhere = [f"{s}.{key}" for s, keys in FIELDS.items() if key in keys]
    if elsewhere:  # right key, wrong section
        hint = f" (did you mean '{elsewhere[0]}'?)"
    else:
        hint = _did_you_mean(key, FIELDS[section])
        if hint:
            hint = hint.replace("'", f"'{section}.", 1)
        else:
            hint = _did_you_mean(f"{section}.{key}",
                                 [f"{s}.{k}" for s, keys in FIELDS.items() for k in keys])
    return ConfigError(f"unknown key {section}.{key}{hint}", origin=origin.name,
                       line=origin.line_of(section, key), key=f"{section}.{key}", reason="unknown key")


def set_value(cfg: Config, section: str, key: str, value: Any, origin: Origin | str = "config") -> None:
    origin = _as_origin(origin)
    if section not in FIELDS:
        raise ConfigError(f"unknown section [{section}]{_did_you_mean(section, SECTIONS)}",
                          origin=origin.name, line=origin.line_of(section), reason="unknown section")
    if key not in FIELDS[section]:
        raise _unknown_key(origin, section, key)
    spec = FIELDS[section][key]
    if spec.path == "data.val_source" and isinstance(value, (list, tuple)):
        # 002's validation shards: the first is val_source, the others val_sources
        items = coerce(FIELDS["data"]["val_sources"], value, origin)
        cfg.data.val_source, cfg.data.val_sources = (items[0], items[1:]) if items else ("", [])
        return
    if spec.path == "tokenizer.special_tokens" and isinstance(value, str):
        value = _special_tokens_file(value, origin)   # 002: a file of them, one per line
    setattr(getattr(cfg, section), key, coerce(spec, value, origin))


def _special_tokens_file(path_text: str, origin: Origin) -> list[str]:
    """The special tokens a file lists, one per line (blank lines skipped)."""
    shown = f"tokenizer.special_tokens = {show_value(path_text)}"
    where: dict[str, Any] = dict(origin=origin.name, line=origin.line_of("tokenizer", "special_tokens"),
                                 key="tokenizer.special_tokens")
    if "\0" in path_text or not path_text.strip():
        raise ConfigError(f"{shown}: expected a list of strings or the path of a special-tokens "
                          "file (one token per line)", **where)
    path = Path(path_text).expanduser()
    try:
        text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: {path} is not UTF-8 text", **where) from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the special-tokens file {path} "
                          f"({exc.strerror or exc}); give a file with one token per line, or a "
                          "list of strings", **where) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def coerce(spec: FieldSpec, value: Any, origin: Origin | str = "config") -> Any:
    """Check one value against its field; return it in the field's type."""
    origin = _as_origin(origin)

    def bad(reason: str | None = None) -> ConfigError:
        return config_error(origin.name, spec.path, show_value(value), spec.describe_allowed(),
                            reason, line=origin.line_of(spec.section, spec.name))

    if spec.auto and is_auto(value):
        return value
    if spec.type is list:
        if not isinstance(value, (list, tuple)):
            raise bad()
        assert spec.item_type is not None, f"{spec.path}: a list field names its item type"
        return [_coerce_scalar(spec, spec.item_type, item, bad) for item in value]
    return _coerce_scalar(spec, spec.type, value, bad)


def _coerce_scalar(spec: FieldSpec, typ: type, value: Any, bad) -> Any:
    if typ is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if typ is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise bad()
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad()
    elif typ is str:
        if not isinstance(value, str):
            raise bad()
        if "\0" in value:
            raise bad("holds a NUL character")
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            raise bad()
    if spec.choices is not None and value not in spec.choices:
        raise bad()
    if spec.min is not None:
        if value < spec.min or (spec.min_exclusive and value == spec.min):
            raise bad("out of range")
    if spec.max is not None and value > spec.max:
        raise bad("out of range")
    return value


def show_value(value: Any) -> str:
    """A value as TOML writes it (for messages)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # TOML basic strings escape like JSON: quotes, backslashes, control characters
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


# ---------------------------------------------------------------------------
# overrides: section.key=value, values in TOML syntax, bare words as strings

def parse_override_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word or path: take it as a string
    except RecursionError:
        raise ConfigError("the value is nested too deeply", origin="--override") from None


def _parse_override(text: str) -> tuple[re.Match, str]:
    """(the key's match: section, key, index; the value's text) of `section.key=value`."""
    key_part, sep, value_text = text.partition("=")
    if not sep:
        raise ConfigError(f"--override {text}: expected section.key=value")
    match = _OVERRIDE_RE.match(key_part.strip())
    if not match:
        raise ConfigError(f"--override {text}: expected section.key=value or section.key[N]=value")
    return match, value_text


def override_path(text: str) -> str:
    """The key path ("section.key") that the override `text` sets (llmtui's name for one of
    002's)."""
    key_part, _, value_text = text.partition("=")
    if foreign.is_foreign(key_part.strip()):
        targets = foreign.translate(key_part.strip(), parse_override_value(value_text.strip()))
        return targets[-1][0].partition("[")[0] if targets else key_part.strip()
    match, _ = _parse_override(text)
    return f"{match['section']}.{match['key']}"


def apply_override(cfg: Config, text: str) -> str:
    """Set one `section.key=value` (or `section.key[N]=value`; 002's key names too, as
    `runtime.log_every_n_steps=5`); returns the key's path."""
    origin = Origin("--override")
    key_part, sep, value_text = text.partition("=")
    if sep and key_part.strip() == "training.data_format":
        _check_data_format(cfg, parse_override_value(value_text.strip()), origin)
        return "data.source"
    if sep and foreign.is_foreign(key_part.strip()):
        done = _set_foreign(cfg, key_part.strip(), parse_override_value(value_text.strip()), origin)
        return done[-1] if done else key_part.strip()
    match, value_text = _parse_override(text)
    section, key, index = match["section"], match["key"], match["index"]
    if section not in FIELDS:
        raise ConfigError(f"unknown section [{section}]{_did_you_mean(section, SECTIONS)}",
                          origin=origin.name, reason="unknown section")
    if key not in FIELDS[section]:
        raise _unknown_key(origin, section, key)
    value = parse_override_value(value_text.strip())
    path = f"{section}.{key}" if index is None else f"{section}.{key}[{index}]"
    return _set_path(cfg, path, value, origin)


# ---------------------------------------------------------------------------
# rules that span several keys

def validate(cfg: Config, origin: str = "config", set_by: Mapping[str, str] | None = None) -> None:
    """Check the rules that span several keys. An error names where its keys were set:
    `set_by` maps keys given after the file (overrides, arguments) to their origin."""
    m, o, s = cfg.model, cfg.optimizer, cfg.scheduler
    set_by = set_by or {}

    def fail(msg: str, *keys: str) -> None:
        where = next((set_by[k] for k in keys if k in set_by), origin)
        raise ConfigError(msg, origin=where, key=keys[0], related=keys[1:])

    if m.n_embd % m.n_head and not m.head_dim:
        fail(f"model.n_head = {m.n_head} must divide model.n_embd = {m.n_embd}",
             "model.n_head", "model.n_embd")
    if m.n_kv_head and m.n_head % m.n_kv_head:
        fail(f"model.n_kv_head = {m.n_kv_head} must divide model.n_head = {m.n_head} (each key/value "
             "head serves the same number of query heads; 0 = n_head)", "model.n_kv_head", "model.n_head")
    if m.pos_encoding == "rope" and m.head_dim % 2:
        fail(f"model.head_dim = {m.head_dim} must be even with model.pos_encoding = \"rope\" (rotary "
             "positions turn pairs of numbers; 0 = n_embd / n_head)", "model.head_dim", "model.pos_encoding")
    if m.pos_encoding == "rope" and not m.head_dim and (m.n_embd // m.n_head) % 2:
        fail(f"model.pos_encoding = \"rope\" needs an even head size; "
             f"n_embd / n_head = {m.n_embd // m.n_head}", "model.pos_encoding", "model.n_embd",
             "model.n_head")
    if len(o.betas) != 2:
        fail(f"optimizer.betas = {show_value(o.betas)} must have exactly 2 numbers [beta1, beta2]",
             "optimizer.betas")
    if any(not 0.0 <= b < 1.0 for b in o.betas):
        fail(f"optimizer.betas = {show_value(o.betas)}: each beta must be >= 0 and < 1",
             "optimizer.betas")
    if o.name == "muon" and o.head_learning_rate and m.tie_embeddings:
        fail(f"optimizer.head_learning_rate = {o.head_learning_rate:g} needs an untied head: with "
             "model.tie_embeddings = true the head is the token embedding (set "
             "optimizer.embedding_learning_rate, or model.tie_embeddings = false)",
             "optimizer.head_learning_rate", "model.tie_embeddings")
    _validate_min_lr(s, set_by, fail)
    # a fine-tune's min_learning_rate left at its default becomes a share of its learning rate
    # (engine.training.init_from), so that default is no conflict
    finetune_min_lr = (m.init_from != "scratch"
                       and s.min_learning_rate == FIELDS["scheduler"]["min_learning_rate"].default)
    if s.min_learning_rate > o.learning_rate and not s.min_lr_ratio and not finetune_min_lr:
        fail(f"scheduler.min_learning_rate = {s.min_learning_rate:g} must not exceed "
             f"optimizer.learning_rate = {o.learning_rate:g}", "scheduler.min_learning_rate",
             "optimizer.learning_rate")
    if s.decay_steps and s.decay_steps < s.warmup_steps:
        fail(f"scheduler.decay_steps = {s.decay_steps} must be 0 or >= scheduler.warmup_steps "
             f"= {s.warmup_steps}", "scheduler.decay_steps", "scheduler.warmup_steps")
    if not cfg.data.source and not cfg.data.sources:
        fail("data.source is empty; give a text file, a folder, a .bin/.npy file or \"builtin\"",
             "data.source")
    if cfg.training.parallel == "fsdp" and o.name == "muon":
        fail("optimizer.name = \"muon\" cannot be used with training.parallel = \"fsdp\": Muon "
             "orthogonalizes whole matrices and FSDP shards them; use \"adamw\" (or \"ddp\")",
             "optimizer.name", "training.parallel")
    if cfg.training.parallel == "fsdp" and cfg.training.ema_decay:
        fail(f"training.ema_decay = {cfg.training.ema_decay:g} cannot be used with training.parallel = "
             "\"fsdp\": the average would need every weight on every process; set it to 0 (or use "
             "\"ddp\")", "training.ema_decay", "training.parallel")
    if cfg.training.parallel == "fsdp" and cfg.training.precision == "fp16":
        fail("training.precision = \"fp16\" cannot be used with training.parallel = \"fsdp\" (loss "
             "scaling of sharded gradients is not supported here); use \"bf16\" or \"fp32\"",
             "training.precision", "training.parallel")
    if cfg.training.sampling == "random" and cfg.training.epochs > 0:
        fail(f"training.sampling = \"random\" cannot be used with training.epochs = "
             f"{cfg.training.epochs:g}: random windows repeat, so they make no passes to count; use "
             "\"shuffle\" (or training.max_steps)", "training.sampling", "training.epochs")
    if cfg.eval.sample_tokens and not cfg.eval.sample_prompt:
        fail("eval.sample_prompt must not be empty when eval.sample_tokens > 0",
             "eval.sample_prompt", "eval.sample_tokens")
    _validate_tokenizer(cfg, fail)


def _validate_min_lr(s, set_by: Mapping[str, str], fail) -> None:
    """scheduler.min_lr_ratio (003) and min_learning_rate say the same thing: one given after
    the file or preset that sets the other (an override, an argument) replaces it; both set
    in the same place are refused. min_learning_rate at its default counts as not set."""
    ratio_key, min_key = "scheduler.min_lr_ratio", "scheduler.min_learning_rate"
    default = FIELDS["scheduler"]["min_learning_rate"].default
    if not s.min_lr_ratio:
        return
    if min_key in set_by and ratio_key not in set_by:
        s.min_lr_ratio = 0.0
    elif s.min_learning_rate != default:
        if ratio_key in set_by and min_key not in set_by:
            s.min_learning_rate = default   # so the config written with the run reads back alone
        else:
            fail(f"scheduler.min_lr_ratio = {s.min_lr_ratio:g} and scheduler.min_learning_rate = "
                 f"{s.min_learning_rate:g} are both set; set one of them (min_lr_ratio is a share "
                 "of optimizer.learning_rate)", ratio_key, min_key)


BYTE_TOKENS = 256  # a byte-level BPE starts from one token per byte


def _validate_tokenizer(cfg: Config, fail) -> None:
    t = cfg.tokenizer
    if t.path and t.kind == "bpe":
        fail(f"tokenizer.path = {show_value(t.path)} is used only with tokenizer.kind = \"trained\" "
             f"or \"char\" (kind is \"{t.kind}\"); set kind = \"trained\" to use that "
             "tokenizer.json, or path = \"\"", "tokenizer.path", "tokenizer.kind")
    if t.kind != "trained":
        return
    for i, token in enumerate(t.special_tokens):
        if not token.strip():
            fail(f"tokenizer.special_tokens[{i}] = {show_value(token)}: a special token must hold "
                 "visible characters", "tokenizer.special_tokens")
    if len(set(t.special_tokens)) != len(t.special_tokens):
        fail(f"tokenizer.special_tokens = {show_value(t.special_tokens)}: each special token may "
             "appear only once", "tokenizer.special_tokens")
    least = BYTE_TOKENS + len(t.special_tokens)
    if not t.path and t.vocab_size < least:
        fail(f"tokenizer.vocab_size = {t.vocab_size} is smaller than the {BYTE_TOKENS} byte tokens "
             f"plus {len(t.special_tokens)} special token(s); use at least {least}",
             "tokenizer.vocab_size", "tokenizer.special_tokens")


# ---------------------------------------------------------------------------
# writing

def config_to_toml(cfg: Config, *, comments: bool = True, header: str | None = None) -> str:
    """A complete TOML document for `cfg`, each key commented with its help."""
    import tomlkit

    doc = tomlkit.document()
    if header:
        for line in header.splitlines():
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    values = cfg.to_dict()
    for section, fields in FIELDS.items():
        table = tomlkit.table()
        for name, spec in fields.items():
            item = tomlkit.item(values[section][name])
            if comments:
                item.comment(spec.help)
            table.add(name, item)
        doc.add(section, table)
    return tomlkit.dumps(doc)


def config_replace(cfg: Config, overrides: Iterable[str] = (), **settings: Any) -> Config:
    """A copy of cfg with `section.key=value` overrides and then `section__key=value`
    settings applied (the order of `load_config`), and validated."""
    new = copy.deepcopy(cfg)
    validate(new, set_by=apply_changes(new, overrides, settings))
    return new


def reference_markdown() -> str:
    """The config reference table for the README, generated from the schema."""
    lines = []
    for section, fields in FIELDS.items():
        lines += [f"**[{section}]**", "", "| key | default | allowed | meaning |", "|---|---|---|---|"]
        for name, spec in fields.items():
            default = show_value(spec.default).replace("\n", "\\n").replace("|", "\\|")
            allowed, meaning = (_md(spec.describe_allowed()), _md(spec.help))
            lines.append(f"| `{name}` | `{default}` | {allowed} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    # escape `<name>` so Markdown does not take it for an HTML tag
    return re.sub(r"<(?=\w)", "&lt;", text.replace("|", "\\|"))
