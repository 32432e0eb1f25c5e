"""`model.init_from`: a new run that starts from pretrained or trained weights.

The source is an llmtui run or checkpoint (its newest intact checkpoint), a
Hugging Face model folder, or "hf:ORG/NAME" (engine.model.import_hf). Only the
weights come from it: the optimizer, the schedule and the data are the new
run's own.

`apply` makes the config describe the source's model before anything else
looks at it (the memory estimate, data preparation, the saved config.toml):

- every architecture key takes the source's value. A key the user set to
  something else (neither the schema default nor the source's value) is
  refused with one line naming both values.
- model.block_size may be shorter than the source's context (learned positions
  are cut), never longer; left at its default it becomes the source's context,
  at most FINETUNE_BLOCK_SIZE tokens.
- the tokenizer is the source's: a Hugging Face folder's tokenizer.json (its
  end-of-text token between documents), an llmtui run's tiktoken encoding or
  tokenizer.path file, or (a char vocabulary or a BPE trained on that run's
  corpus) the checkpoint's own tokenizer.json as tokenizer.path. After preparing the data the trainer checks that the
  data's tokenizer is exactly the source's (`check_tokenizer`).
- fine-tuning defaults, for the keys left at their schema defaults: a peak
  learning rate of FINETUNE_LEARNING_RATE (the from-scratch 1e-3 wrecks a
  pretrained model in a few steps), warmup over 5% of the run (at most 100
  steps) and a cosine decay to 10% of the peak. Weight decay never touches
  norm gains or biases (engine.model.optim), pretrained or not.
- a from-scratch learning rate (above FINETUNE_MAX_LEARNING_RATE: a from-scratch
  preset's 5e-3 with Muon, say) on a pretrained Hugging Face model is refused in one
  line naming the key, unless forced (`--force`): it wrecks the weights in a few
  steps, the failure users report most after fine-tuning's fp16 NaNs. A start from
  an llmtui run (continued training of one's own small model) is left alone.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from llmtui.engine.config.loading import config_from_dict, show_value
from llmtui.engine.config.schema import FIELDS, Config
from llmtui.engine.data.tokenizers import Tokenizer, tokenizer_from_json
from llmtui.engine.errors import CheckpointError, ConfigError, UserError
from llmtui.engine.model import import_hf
from llmtui.engine.training import checkpoint as ckpt

if TYPE_CHECKING:
    from llmtui.engine.model.gpt import GPT

# [model] keys that describe the network (the rest are training choices: dropout,
# gradient checkpointing, block_size up to the source's context)
ARCHITECTURE = ("n_layer", "n_head", "n_embd", "d_ff", "bias", "qkv_bias", "pos_encoding", "rope_theta",
                "tie_embeddings", "vocab_size", "norm", "mlp", "qk_norm", "norm_eps", "n_kv_head",
                "head_dim")
FINETUNE_BLOCK_SIZE = 1024
FINETUNE_LEARNING_RATE = 1e-4
FINETUNE_WARMUP_SHARE = 0.05
FINETUNE_MIN_LR_SHARE = 0.1
FINETUNE_MAX_LEARNING_RATE = 1e-3
# the peak rates a run uses: learning_rate, and with muon the AdamW groups' own (0 = learning_rate)
RATES = ("learning_rate", "embedding_learning_rate", "head_learning_rate", "gain_learning_rate")


@dataclass
class InitSource:
    spec: str                          # model.init_from as written
    kind: str                          # hf | llmtui
    path: Path                         # the model folder, or the checkpoint directory
    model: dict[str, Any]              # [model] settings of the source
    tokenizer: Tokenizer
    tokenizer_settings: dict[str, Any]
    hf: import_hf.HfModel | None = None

    @property
    def max_block_size(self) -> int:
        return self.model["block_size"]

    def describe(self) -> str:
        return f'model.init_from = "{self.spec}"'

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Refuse data prepared with another tokenizer than the source's."""
        if tokenizer.fingerprint() != self.tokenizer.fingerprint():
            raise ConfigError(f"{self.describe()}: the data was tokenized with a {tokenizer.kind} tokenizer "
                              f"of {tokenizer.vocab_size:,} tokens, not the source's own "
                              f"({self.tokenizer.kind}, {self.tokenizer.vocab_size:,} tokens); remove the "
                              "[tokenizer] settings, or give text rather than pre-tokenized files")

    def load_into(self, model: GPT) -> None:
        """Copy the source's weights into `model` (built from the applied config)."""
        from llmtui.engine.training.snapshot import load_model_state

        if self.hf is not None:
            weights = import_hf.llmtui_state_dict(self.hf, import_hf.read_weights(self.path), model.config)
        else:
            weights = dict(ckpt.load(self.path).model_state)
            if "transformer.wpe.weight" in weights:      # a shorter context: the first positions
                weights["transformer.wpe.weight"] = weights["transformer.wpe.weight"][:model.config.block_size]
        with torch.no_grad():
            load_model_state(model, {k: v.to(torch.float32) for k, v in weights.items()}, str(self.path))


_SOURCES: dict[str, InitSource] = {}


def source_of(spec: str) -> InitSource:
    """The source `spec` (model.init_from) names, read once per process."""
    if spec not in _SOURCES:
        _SOURCES[spec] = _read_source(spec)
    return _SOURCES[spec]


def _read_source(spec: str) -> InitSource:
    key = "model.init_from"
    path = import_hf.resolve_source(spec, key)
    if (path / ckpt.MANIFEST).exists() or (path.is_dir() and not import_hf.is_hf_folder(path)):
        return _llmtui_source(spec, path)
    if not path.exists():
        raise ConfigError(f'{key} = "{spec}": no such folder; give "scratch", an llmtui run or checkpoint, '
                          'a Hugging Face model folder (config.json + safetensors) or "hf:ORG/NAME"')
    if not path.is_dir():
        raise ConfigError(f'{key} = "{spec}": is a file; give an llmtui run or checkpoint folder or a '
                          "Hugging Face model folder")
    hf = import_hf.read_model(path)
    tokenizer = import_hf.hf_tokenizer(hf)
    return InitSource(spec, "hf", path, hf.settings, tokenizer, import_hf.tokenizer_settings(hf), hf)


def _llmtui_source(spec: str, path: Path) -> InitSource:
    from llmtui.engine.training.loader import resolve_checkpoint

    found = resolve_checkpoint(path)
    ckpt.verify(found)
    where = f'model.init_from = "{spec}"'
    try:
        cfg = config_from_dict(tomllib.loads((found / "config.toml").read_text(encoding="utf-8")),
                               str(found / "config.toml"))
        tokenizer = tokenizer_from_json(json.loads((found / "tokenizer.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, UserError) as exc:
        raise CheckpointError(f"{where}: cannot read {found} ({exc})") from None
    model = {name: getattr(cfg.model, name) for name in (*ARCHITECTURE, "block_size")}
    model["vocab_size"] = cfg.model.vocab_size or tokenizer.vocab_size
    settings = _llmtui_tokenizer_settings(cfg, tokenizer.kind, found, list(getattr(tokenizer, "special_tokens", [])))
    return InitSource(spec, "llmtui", found, model, tokenizer, settings)


def _llmtui_tokenizer_settings(cfg: Config, kind: str, found: Path, special: list[str]) -> dict[str, Any]:
    """[tokenizer] settings that read text as the run in checkpoint `found` (config `cfg`) did."""
    t = cfg.tokenizer
    if kind == "bpe":
        return {"kind": "bpe", "encoding": t.encoding}
    if kind == "trained" and t.path:
        return {"kind": "trained", "path": t.path, "special_tokens": list(t.special_tokens)}
    # a char vocabulary built from that run's corpus, or a BPE trained on it: the
    # checkpoint's own tokenizer.json holds it (engine.data.bpe_training.load_tokenizer_file)
    settings: dict[str, Any] = {"kind": kind, "path": str((found / "tokenizer.json").resolve())}
    if kind == "trained":
        settings["special_tokens"] = special
    return settings


def apply(cfg: Config, force: bool = False) -> tuple[Config, InitSource | None]:
    """`cfg` (a copy) made to describe model.init_from's model, with the fine-tuning
    defaults (module docstring), and the source; `cfg` itself and None for "scratch".
    `force` trains a pretrained model at a from-scratch learning rate all the same."""
    spec = cfg.model.init_from
    if spec == "scratch":
        return cfg, None
    source = source_of(spec)
    described = _described(cfg, source.model, source.tokenizer_settings, source.describe())
    if source.kind == "hf" and not force:
        check_finetune_rates(described)
    return described, source


def too_high_rates(cfg: Config) -> list[str]:
    """The optimizer's learning-rate keys of `cfg` above FINETUNE_MAX_LEARNING_RATE (with
    muon the AdamW groups' own rates count, where set)."""
    o = cfg.optimizer
    names = RATES if o.name == "muon" else RATES[:1]
    return [f"optimizer.{name}" for name in names if getattr(o, name) > FINETUNE_MAX_LEARNING_RATE]


def check_finetune_rates(cfg: Config) -> None:
    """Refuse a from-scratch learning rate on pretrained weights (module docstring)."""
    high = too_high_rates(cfg)
    if not high:
        return
    first = high[0]
    value = getattr(cfg.optimizer, first.split(".")[1])
    more = f" (and {', '.join(high[1:])})" if len(high) > 1 else ""
    raise ConfigError(f"{first} = {show_value(value)}{more} is a from-scratch rate: it would wreck the "
                      f'pretrained weights of model.init_from = "{cfg.model.init_from}" in a few steps; '
                      f"fine-tuning needs at most {show_value(FINETUNE_MAX_LEARNING_RATE)} (remove the "
                      f"setting for the fine-tuning default {show_value(FINETUNE_LEARNING_RATE)}, as "
                      "presets/finetune-cpu.toml does; --force trains anyway)",
                      key=first, related=("model.init_from", *high[1:]),
                      allowed=f"at most {show_value(FINETUNE_MAX_LEARNING_RATE)}")


def _described(cfg: Config, model: dict[str, Any], tokenizer: dict[str, Any], where: str) -> Config:
    """A copy of `cfg` that describes the source whose [model] and [tokenizer] settings are
    `model` and `tokenizer` (`where` names it in refusals), with the fine-tuning defaults."""
    cfg = copy.deepcopy(cfg)
    for name, value in model.items():
        if name != "block_size":
            _take(cfg, "model", name, value, where)
    block, default, longest = cfg.model.block_size, FIELDS["model"]["block_size"].default, model["block_size"]
    if block == default and block != longest:
        cfg.model.block_size = min(longest, FINETUNE_BLOCK_SIZE)
    elif block > longest:
        raise ConfigError(f"model.block_size = {block} is longer than the {longest:,}-token "
                          f"context of {where}; use at most {longest}", key="model.block_size",
                          related=("model.init_from",))
    for name, value in tokenizer.items():
        _take(cfg, "tokenizer", name, value, where)
    _finetune_defaults(cfg)
    return cfg


# ---------------------------------------------------------------------------
# a cheap look at a source, for a form that checks model.init_from as it is typed

@dataclass
class SourcePeek:
    kind: str                              # scratch | hub | hf | llmtui
    summary: str                           # one line: what the source is
    model: dict[str, Any] | None = None    # its [model] settings, when read without loading it
    tokenizer: dict[str, Any] | None = None


def peek(spec: str) -> SourcePeek:
    """What `spec` (model.init_from) names, without loading weights, verifying checkpoints or
    downloading: an "hf:ORG/NAME" id is checked for its shape only; a folder must be an
    llmtui run or checkpoint (its config.toml is read) or a Hugging Face model folder (its
    config.json is read and checked). ConfigError, one line, when it is none of these."""
    key = "model.init_from"
    where = f'{key} = "{spec}"'
    if spec == "scratch":
        return SourcePeek("scratch", "random weights, the model the settings below describe")
    if spec.startswith("hf:"):
        match = import_hf.HF_ID.match(spec)
        if not match:
            raise ConfigError(f'{where}: not a Hugging Face model id; expected "hf:ORG/NAME"', key=key)
        repo = match["repo"]
        hf = _cached_model(repo)
        if hf is not None:
            return SourcePeek("hub", f"{repo} (in the Hugging Face cache), a {hf.family} model: "
                                     f"{_shape(hf.settings)}; architecture and tokenizer come from it",
                              hf.settings, import_hf.tokenizer_settings(hf))
        return SourcePeek("hub", f"{repo} from the Hugging Face Hub (fetched into its cache when the "
                                 "run starts): architecture and tokenizer come from it")
    path = Path(spec).expanduser()
    if not spec.strip() or not path.exists():
        raise ConfigError(f'{where}: no such folder; give "scratch", an llmtui run or checkpoint, a '
                          'Hugging Face model folder (config.json + safetensors) or "hf:ORG/NAME"', key=key)
    if not path.is_dir():
        raise ConfigError(f"{where}: is a file; give an llmtui run or checkpoint folder or a Hugging "
                          "Face model folder", key=key)
    if not (path / ckpt.MANIFEST).exists() and import_hf.is_hf_folder(path):
        try:
            hf = import_hf.read_model(path)
        except UserError as exc:
            raise ConfigError(f"{where}: {exc.detail}", key=key) from None
        if not (path / import_hf.TOKENIZER).is_file():
            raise ConfigError(f"{where}: has no {import_hf.TOKENIZER} (its tokenizer, in the `tokenizers` "
                              "library's format)", key=key)
        m = hf.settings
        return SourcePeek("hf", f"Hugging Face {hf.family} model: {_shape(m)}; architecture and "
                                "tokenizer come from it", m, import_hf.tokenizer_settings(hf))
    found = path if (path / ckpt.MANIFEST).exists() else next(iter(ckpt.candidates(path)), None)
    if found is None:
        raise ConfigError(f"{where}: neither an llmtui run or checkpoint (no checkpoint in it) nor a "
                          "Hugging Face model folder (config.json + safetensors)", key=key)
    try:
        cfg = config_from_dict(tomllib.loads((found / "config.toml").read_text(encoding="utf-8")),
                               str(found / "config.toml"))
    except (OSError, ValueError, UserError) as exc:
        raise ConfigError(f"{where}: cannot read {found / 'config.toml'} ({getattr(exc, 'detail', exc)})",
                          key=key) from None
    model = {name: getattr(cfg.model, name) for name in (*ARCHITECTURE, "block_size")}
    if not model["vocab_size"]:
        model.pop("vocab_size")       # the tokenizer's: known once its file is read
    tokenizer = _llmtui_tokenizer_settings(cfg, cfg.tokenizer.kind, found, list(cfg.tokenizer.special_tokens))
    what = "checkpoint" if found == path else f"run (its {found.name} checkpoint)"
    return SourcePeek("llmtui", f"llmtui {what}: {_shape(model)}; architecture and tokenizer come "
                                "from it", model, tokenizer)


def _cached_model(repo: str) -> import_hf.HfModel | None:
    """The model `repo` names when the Hugging Face cache holds it whole, read from there
    (never the network); None when it does not, or huggingface_hub is not installed."""
    try:
        from huggingface_hub import try_to_load_from_cache
        cached = try_to_load_from_cache(repo, import_hf.CONFIG)
    except Exception:   # not installed, or a cache it cannot read: known when the run starts
        return None
    if not isinstance(cached, str):
        return None
    try:
        return import_hf.read_model(Path(cached).parent)
    except UserError:   # only part of it is cached: the run fetches the rest
        return None


def _shape(m: dict[str, Any]) -> str:
    return f"{m['n_layer']} layers x {m['n_embd']} wide, {m['n_head']} heads, context {m['block_size']:,}"


def preview(cfg: Config, source: SourcePeek) -> Config:
    """`cfg` as a run would start it from `source` (peeked): the source's architecture and
    tokenizer, the fine-tuning defaults; ConfigError naming both values when a setting
    contradicts the source. `cfg` itself when nothing was read from the source."""
    if source.model is None:
        return cfg
    described = _described(cfg, source.model, source.tokenizer or {}, f'model.init_from = "{cfg.model.init_from}"')
    if source.kind in ("hf", "hub"):
        check_finetune_rates(described)
    return described


def _take(cfg: Config, section: str, name: str, value: Any, where: str) -> None:
    """Set section.name to the source's value, unless the user set another one."""
    current = getattr(getattr(cfg, section), name)
    if _same(current, value):
        return
    if _same(current, FIELDS[section][name].default):
        setattr(getattr(cfg, section), name, value)
        return
    raise ConfigError(f"{section}.{name} = {show_value(current)} contradicts {where}, whose "
                      f"model has {section}.{name} = {show_value(value)}; remove the setting or set it "
                      f"to {show_value(value)}", key=f"{section}.{name}", related=("model.init_from",))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _finetune_defaults(cfg: Config) -> None:
    """Fine-tuning's learning rate and schedule for the keys left at their defaults."""
    def default(section: str, name: str) -> bool:
        return _same(getattr(getattr(cfg, section), name), FIELDS[section][name].default)

    if default("optimizer", "learning_rate"):
        cfg.optimizer.learning_rate = FINETUNE_LEARNING_RATE
    if default("scheduler", "warmup_steps"):
        cfg.scheduler.warmup_steps = min(FIELDS["scheduler"]["warmup_steps"].default,
                                         max(1, round(FINETUNE_WARMUP_SHARE * cfg.training.max_steps)))
    if default("scheduler", "min_learning_rate"):
        cfg.scheduler.min_learning_rate = FINETUNE_MIN_LR_SHARE * cfg.optimizer.learning_rate
