"""A Hugging Face model folder as an llmtui model: the inverse of engine.inference.mapping.

A folder holds config.json, the weights as safetensors (model.safetensors, or
shards listed in model.safetensors.index.json) and tokenizer.json; "hf:ORG/NAME"
names such a folder in the Hugging Face cache (`resolve_source`). `sample`, `eval`
and `export` load a folder wherever they load a run (engine.training.loader's
load_checkpoint_model, the one loader); `model.init_from` starts a
training run from one (engine.training.init_from).

Families and what each config.json field becomes:

- gpt2 (GPT2LMHeadModel): learned positions, LayerNorm with biases, GELU MLP.
  activation_function "gelu_new" (GPT-2's tanh approximation) is model.mlp =
  "gelu_tanh"; Conv1D weights are stored (in, out) and are transposed.
- llama, mistral, qwen2, qwen3 (and SmolLM/SmolLM2, which are llama):
  rotary positions, RMSNorm, SwiGLU. q and k rotate halves in transformers
  and interleaved pairs in llmtui, so their rows (and Qwen3's QK-norm gains)
  are permuted per head back to llmtui's layout (mapping._halves_order).
  Qwen2's q/k/v biases are model.qkv_bias; Qwen3's QK-norm is model.qk_norm.
  A head_dim apart from hidden_size / num_attention_heads (every released Qwen3:
  0.6B has 16 heads of 128 in a 1,024-wide model) is model.head_dim.

Every config.json field is either mapped, checked (it must hold the value
llmtui computes, e.g. no rope scaling, no sliding window shorter than the
context) or known to change nothing llmtui computes (token ids, dropout,
metadata). Anything else is refused with one line naming the field, so a
model llmtui would compute differently is never loaded silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmtui.engine.errors import CheckpointError, UserError

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "qwen3")
ROTARY_FAMILIES = FAMILIES[1:]

# Grouped-query attention: num_key_value_heads becomes model.n_kv_head. The weights need
# nothing more: c_attn is [q; k; v] with k and v num_key_value_heads heads wide.
KV_HEADS_KEY: str | None = "n_kv_head"
# head_dim apart from hidden_size / num_attention_heads becomes model.head_dim: q, k and v are
# heads of head_dim, o_proj maps num_attention_heads * head_dim back to hidden_size
HEAD_DIM_KEY = "head_dim"

# fields that change nothing llmtui computes: metadata, token ids, generation and
# dropout (imported models fine-tune with model.dropout, 0 by default)
IGNORED = {
    "_name_or_path", "architectures", "model_type", "transformers_version", "torch_dtype", "dtype",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "use_cache", "initializer_range", "return_dict", "output_hidden_states", "output_attentions",
    "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "chunk_size_feed_forward",
    "id2label", "label2id", "problem_type", "task_specific_params", "tokenizer_class", "prefix",
    "max_length", "min_length", "do_sample", "temperature", "top_k", "top_p", "num_beams",
    "repetition_penalty", "attention_dropout", "is_decoder", "tie_encoder_decoder",
    "attn_implementation", "_attn_implementation_autoset",
}
GPT2_IGNORED = {"resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_activation", "summary_first_dropout",
                "summary_proj_to_labels", "summary_type", "summary_use_proj", "n_ctx",
                "reorder_and_upcast_attn"}   # the order of fp32 operations only
ROTARY_IGNORED = {
    # SmolLM's nanotron leftovers, which transformers ignores too
    "is_llama_config", "rope_interleaved",
    # Qwen: only read when use_sliding_window (checked) is on
    "max_window_layers",
}
GPT2_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu2": "relu2"}
# tie_word_embeddings when config.json leaves it out: the class's default
TIED_BY_DEFAULT = {"gpt2": True, "llama": False, "mistral": False, "qwen2": False, "qwen3": False}


class ImportRefused(UserError):
    """A model folder llmtui cannot load as it is."""


@dataclass
class HfModel:
    """What a model folder's config.json says, as llmtui [model] settings."""

    folder: Path
    family: str
    settings: dict[str, Any]          # model.<key> -> value (block_size: the longest context)
    eos_token: str | None             # put between documents when fine-tuning
    notes: list[str] = field(default_factory=list)

    @property
    def max_block_size(self) -> int:
        return self.settings["block_size"]


def is_hf_folder(path: Path) -> bool:
    """Whether `path` is a folder holding a Hugging Face config.json (and not llmtui's)."""
    return path.is_dir() and (path / CONFIG).is_file()


def read_model(folder: Path) -> HfModel:
    """The folder's config.json as llmtui settings; ImportRefused naming the field llmtui
    does not compute as transformers does."""
    folder = Path(folder)
    config = _read_json(folder / CONFIG)
    family = config.get("model_type")
    if family not in FAMILIES:
        raise ImportRefused(f"{folder / CONFIG}: model_type {json.dumps(family)} is not one llmtui imports "
                           f"(it imports {', '.join(FAMILIES)}; SmolLM and SmolLM2 are llama)")
    reader = _Fields(folder / CONFIG, config)
    settings = _gpt2(reader) if family == "gpt2" else _rotary(reader, family)
    settings["tie_embeddings"] = bool(reader.take("tie_word_embeddings", TIED_BY_DEFAULT[family]))
    settings["vocab_size"] = reader.positive("vocab_size")
    settings.update(dropout=0.0, d_ff=settings.get("d_ff", 0))
    reader.refuse_the_rest(IGNORED | (GPT2_IGNORED if family == "gpt2" else ROTARY_IGNORED))
    if not any(folder.glob("*.safetensors")):
        raise ImportRefused(f"{folder}: holds no .safetensors weights (llmtui loads safetensors only, "
                           "never pickled .bin files)")
    return HfModel(folder, family, settings, _eos_token(folder, config))


class _Fields:
    """config.json's fields, each taken once; what is left over is refused."""

    def __init__(self, path: Path, config: dict):
        self.path, self.config = path, config
        self.taken: set[str] = set()

    def take(self, name: str, default: Any = None) -> Any:
        self.taken.add(name)
        return self.config.get(name, default)

    def positive(self, name: str, default: Any = None) -> int:
        value = self.take(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.refuse(name, value, "a positive integer")
        return value

    def expect(self, name: str, allowed: tuple, why: str) -> Any:
        value = self.take(name, allowed[0])
        if value not in allowed:
            raise self.refuse(name, value, why)
        return value

    def refuse(self, name: str, value: Any, why: str) -> ImportRefused:
        return ImportRefused(f"{self.path}: field {name} = {json.dumps(value)} cannot be imported: {why}")

    def refuse_the_rest(self, ignored: set[str]) -> None:
        for name, value in self.config.items():
            if name not in self.taken and name not in ignored:
                raise self.refuse(name, value, "llmtui does not map this field (models that use it "
                                               "compute something llmtui's model does not)")


def _gpt2(f: _Fields) -> dict[str, Any]:
    n_embd, n_head = f.positive("n_embd"), f.positive("n_head")
    if n_embd % n_head:
        raise f.refuse("n_head", n_head, f"it must divide n_embd ({n_embd})")
    activation = f.take("activation_function", "gelu_new")
    if activation not in GPT2_ACTIVATIONS:
        raise f.refuse("activation_function", activation, f"llmtui computes {', '.join(GPT2_ACTIVATIONS)}")
    f.expect("scale_attn_weights", (True,), "llmtui always scales attention by 1/sqrt(head size)")
    f.expect("scale_attn_by_inverse_layer_idx", (False,), "llmtui does not scale attention by layer")
    f.expect("add_cross_attention", (False,), "llmtui is a decoder without cross-attention")
    inner = f.take("n_inner")
    if inner is not None and (not isinstance(inner, int) or inner < 1):
        raise f.refuse("n_inner", inner, "a positive integer or null")
    return {"n_layer": f.positive("n_layer"), "n_head": n_head, "n_embd": n_embd,
            "block_size": f.positive("n_positions"), "d_ff": 0 if inner in (None, 4 * n_embd) else inner,
            "bias": True, "qkv_bias": False, "pos_encoding": "learned", "norm": "layernorm",
            "mlp": GPT2_ACTIVATIONS[activation], "qk_norm": False,
            "norm_eps": float(f.take("layer_norm_epsilon", 1e-5))}


def _rotary(f: _Fields, family: str) -> dict[str, Any]:
    n_embd, n_head = f.positive("hidden_size"), f.positive("num_attention_heads")
    settings: dict[str, Any] = {}
    head_dim = f.take("head_dim")
    if head_dim is None:        # transformers' default: hidden_size / num_attention_heads
        if n_embd % n_head:
            raise f.refuse("num_attention_heads", n_head, f"it must divide hidden_size ({n_embd})")
        head_dim = n_embd // n_head
    elif not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 2 or head_dim % 2:
        raise f.refuse("head_dim", head_dim, "a positive even integer (rotary positions turn pairs of numbers)")
    # heads of their own width (Qwen3's), or 0: n_embd / n_head, as llmtui writes the default
    settings[HEAD_DIM_KEY] = head_dim if n_head * head_dim != n_embd else 0
    kv_heads = f.positive("num_key_value_heads", n_head)
    if kv_heads != n_head:
        if KV_HEADS_KEY is None:
            raise f.refuse("num_key_value_heads", kv_heads, f"grouped-query attention (fewer key/value "
                                                            f"heads than the {n_head} query heads) is "
                                                            "not in llmtui's model yet")
        if n_head % kv_heads:
            raise f.refuse("num_key_value_heads", kv_heads, f"it must divide num_attention_heads ({n_head})")
        settings[KV_HEADS_KEY] = kv_heads
    f.expect("hidden_act", ("silu",), "llmtui's SwiGLU gates with SiLU")
    f.expect("pretraining_tp", (1, None), "llmtui computes the unsplit projections")
    f.expect("partial_rotary_factor", (1.0, 1, None), "llmtui rotates the whole head")
    theta = _rope_theta(f)
    block_size = f.positive("max_position_embeddings")
    if family == "mistral":
        window = f.take("sliding_window")
        if window is not None:
            if not isinstance(window, int) or window < 2:
                raise f.refuse("sliding_window", window, "a window of at least 2 tokens or null")
            block_size = min(block_size, window)   # within its window attention is full
    if family in ("qwen2", "qwen3"):
        f.expect("use_sliding_window", (False,), "llmtui's attention sees the whole context")
        f.take("sliding_window")                    # read only with use_sliding_window
        layers = f.take("layer_types")
        if layers is not None and any(kind != "full_attention" for kind in layers):
            raise f.refuse("layer_types", layers, 'llmtui has only "full_attention" layers')
    bias = False
    if family in ("llama", "qwen3"):
        bias = bool(f.expect("attention_bias", (False, True), "true or false"))
    if family == "llama":
        mlp_bias = bool(f.expect("mlp_bias", (False, True), "true or false"))
        if mlp_bias != bias:
            raise f.refuse("mlp_bias", mlp_bias, f"with attention_bias = {json.dumps(bias)} llmtui's "
                                                 "model.bias gives both or neither their biases")
    if family == "qwen3" and bias:
        raise f.refuse("attention_bias", True, "Qwen3's MLP has no biases; model.bias would give it some")
    return {"n_layer": f.positive("num_hidden_layers"), "n_head": n_head, "n_embd": n_embd,
            "block_size": block_size, "d_ff": f.positive("intermediate_size"), "bias": bias,
            "qkv_bias": family == "qwen2", "pos_encoding": "rope", "rope_theta": theta,
            "norm": "rmsnorm", "mlp": "swiglu", "qk_norm": family == "qwen3",
            "norm_eps": float(f.take("rms_norm_eps", 1e-6)), **settings}


def _rope_theta(f: _Fields) -> float:
    """rope_theta from rope_parameters (transformers 5) or the field itself (4.x); any
    rope scaling is refused."""
    theta = f.take("rope_theta")
    for name in ("rope_scaling", "rope_parameters"):
        params = f.take(name)
        if params is None:
            continue
        if not isinstance(params, dict) or params.get("rope_type", params.get("type", "default")) != "default":
            raise f.refuse(name, params, "llmtui computes plain rotary positions (no rope scaling)")
        theta = params.get("rope_theta", theta)
    theta = 10000.0 if theta is None else theta
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or theta <= 0:
        raise f.refuse("rope_theta", theta, "a positive number")
    return float(theta)


def _eos_token(folder: Path, config: dict) -> str | None:
    """The end-of-text token: tokenizer_config.json's eos_token, else config.json's eos_token_id."""
    path = folder / "tokenizer_config.json"
    if path.is_file():
        eos = _read_json(path).get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        if isinstance(eos, str) and eos:
            return eos
    eos_id = config.get("eos_token_id")
    if isinstance(eos_id, list):
        eos_id = eos_id[0] if eos_id else None
    if isinstance(eos_id, int) and (folder / TOKENIZER).is_file():
        for token in _read_json(folder / TOKENIZER).get("added_tokens") or []:
            if isinstance(token, dict) and token.get("id") == eos_id:
                return token.get("content")
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportRefused(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ImportRefused(f"{path}: cannot read it as JSON ({getattr(exc, 'strerror', None) or exc})") from None
    if not isinstance(data, dict):
        raise ImportRefused(f"{path}: not a JSON object")
    return data


# ---------------------------------------------------------------------------
# the tokenizer

def hf_tokenizer(model: HfModel):
    """The folder's tokenizer.json as a TrainedTokenizer, its end-of-text token first."""
    from llmtui.engine.data.tokenizers import TrainedTokenizer
    from llmtui.engine.errors import DataError

    path = model.folder / TOKENIZER
    if not path.is_file():
        raise ImportRefused(f"{model.folder}: has no {TOKENIZER} (llmtui reads the tokenizer in the "
                           "`tokenizers` library's format; older vocab.json/merges.txt or sentencepiece "
                           "folders are not read)")
    data = _read_json(path)
    try:
        plain = TrainedTokenizer(data)
        special = [model.eos_token] if model.eos_token and plain.vocabulary().get(model.eos_token) is not None \
            else []
        tokenizer = TrainedTokenizer(data, special)
    except DataError as exc:
        raise ImportRefused(f"{path}: {exc.detail}") from None
    if tokenizer.vocab_size > model.settings["vocab_size"]:
        raise ImportRefused(f"{path}: {tokenizer.vocab_size:,} tokens, more than the model's vocab_size "
                           f"{model.settings['vocab_size']:,} in {CONFIG}")
    return tokenizer


def tokenizer_settings(model: HfModel) -> dict[str, Any]:
    """[tokenizer] settings that prepare the user's text with the folder's tokenizer."""
    return {"kind": "trained", "path": str((model.folder / TOKENIZER).resolve()),
            "special_tokens": [model.eos_token] if model.eos_token else []}


# ---------------------------------------------------------------------------
# the weights

def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors (shards too), as stored."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ImportRefused(f"{index}: has no weight_map")
        files = sorted(set(weight_map.values()))
    elif (folder / WEIGHTS).is_file():
        files = [WEIGHTS]
    else:
        files = sorted(p.name for p in folder.glob("*.safetensors"))
    weights: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        if "/" in name or not path.is_file():
            raise ImportRefused(f"{folder}: weight file {name} is missing")
        try:
            weights.update(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ImportRefused(f"{path}: not readable safetensors ({str(exc)[:160]})") from None
    return weights


def llmtui_state_dict(model: HfModel, weights: dict[str, torch.Tensor], gpt) -> dict[str, torch.Tensor]:
    """`weights` (transformers' names) under llmtui's names and layout, fp32, for the GPT
    config `gpt` (its block_size may be shorter than the source's: learned positions are cut)."""
    w = {name: t for name, t in weights.items()}
    taken: set[str] = set()

    def get(name: str) -> torch.Tensor:
        for key in (name, name.removeprefix("transformer."), name.removeprefix("model.")):
            if key in w:
                taken.add(key)
                return w[key].to(torch.float32)
        raise CheckpointError(f"{model.folder}: weight {name} is missing")

    out: dict[str, torch.Tensor] = {}
    if model.family == "gpt2":
        out["transformer.wte.weight"] = get("transformer.wte.weight")
        out["transformer.wpe.weight"] = get("transformer.wpe.weight")[:gpt.block_size]
        for i in range(gpt.n_layer):
            p = f"transformer.h.{i}."
            for name in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"):
                out[p + name] = get(p + name)
            for lin in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
                out[p + f"{lin}.weight"] = get(p + f"{lin}.weight").t().contiguous()   # Conv1D: (in, out)
                out[p + f"{lin}.bias"] = get(p + f"{lin}.bias")
        out["transformer.ln_f.weight"] = get("transformer.ln_f.weight")
        out["transformer.ln_f.bias"] = get("transformer.ln_f.bias")
        # attention masks older GPT-2 files store as buffers: not weights
        taken.update(k for k in w if k.endswith((".attn.bias", ".attn.masked_bias")) and k not in taken
                     and w[k].dim() != 1)
    else:
        head_dim = gpt.head_size
        back = torch.argsort(_halves_order(head_dim))     # halves layout -> interleaved pairs
        out["transformer.wte.weight"] = get("model.embed_tokens.weight")
        for i in range(gpt.n_layer):
            src, dst = f"model.layers.{i}.", f"transformer.h.{i}."
            out[dst + "ln_1.weight"] = get(src + "input_layernorm.weight")
            out[dst + "ln_2.weight"] = get(src + "post_attention_layernorm.weight")
            qkv_w: list[torch.Tensor] = []
            qkv_b: list[torch.Tensor] = []
            for proj, rotated in (("q_proj", True), ("k_proj", True), ("v_proj", False)):
                weight = get(src + f"self_attn.{proj}.weight")
                bias = get(src + f"self_attn.{proj}.bias") if gpt.bias or gpt.qkv_bias else None
                if rotated:
                    weight = _per_head(weight, head_dim, back)
                    bias = None if bias is None else _per_head(bias, head_dim, back)
                qkv_w.append(weight)
                if bias is not None:
                    qkv_b.append(bias)
            out[dst + "attn.c_attn.weight"] = torch.cat(qkv_w)
            if gpt.bias or gpt.qkv_bias:
                out[dst + "attn.c_attn.bias"] = torch.cat(qkv_b)
            if gpt.qk_norm:
                out[dst + "attn.q_norm.weight"] = get(src + "self_attn.q_norm.weight")[back].contiguous()
                out[dst + "attn.k_norm.weight"] = get(src + "self_attn.k_norm.weight")[back].contiguous()
            out[dst + "attn.c_proj.weight"] = get(src + "self_attn.o_proj.weight")
            out[dst + "mlp.c_fc.weight"] = torch.cat((get(src + "mlp.gate_proj.weight"),
                                                      get(src + "mlp.up_proj.weight")))
            out[dst + "mlp.c_proj.weight"] = get(src + "mlp.down_proj.weight")
            if gpt.bias:
                out[dst + "attn.c_proj.bias"] = get(src + "self_attn.o_proj.bias")
                out[dst + "mlp.c_fc.bias"] = torch.cat((get(src + "mlp.gate_proj.bias"),
                                                        get(src + "mlp.up_proj.bias")))
                out[dst + "mlp.c_proj.bias"] = get(src + "mlp.down_proj.bias")
        out["transformer.ln_f.weight"] = get("model.norm.weight")
    if gpt.tie_embeddings:
        if "lm_head.weight" in w:   # a tied model may store its head too: the same values
            taken.add("lm_head.weight")
    else:
        out["lm_head.weight"] = get("lm_head.weight")
    left = sorted(set(w) - taken)
    if left:
        raise CheckpointError(f"{model.folder}: weight {left[0]} has no place in the {model.family} model "
                              f"{CONFIG} describes ({len(left)} such weight(s))")
    return out


def _halves_order(head_dim: int) -> torch.Tensor:
    """Rows of a head in transformers' halves layout: the even (first of each pair) then the
    odd rows of llmtui's interleaved pairs (as engine.inference.mapping writes them)."""
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


def _per_head(t: torch.Tensor, head_dim: int, order: torch.Tensor) -> torch.Tensor:
    """Reorder the rows of each head of a q or k projection (weight or bias)."""
    shape = t.shape
    return t.reshape(-1, head_dim, *shape[1:])[:, order].reshape(shape).contiguous()


# ---------------------------------------------------------------------------
# "hf:ORG/NAME" and names

# what a model folder needs from the Hub (never pickled .bin weights)
HUB_FILES = [CONFIG, "*.safetensors", WEIGHTS_INDEX, TOKENIZER, "tokenizer_config.json",
             "generation_config.json", "special_tokens_map.json"]
HF_ID = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)$")


def resolve_source(spec: str, key: str | None = None) -> Path:
    """The folder `spec` names: "hf:ORG/NAME" through huggingface_hub's cache (downloaded
    when online), else the path itself. `key` names the setting in messages (None: a
    command-line argument)."""
    shown = f'{key} = "{spec}"' if key else spec
    match = HF_ID.match(spec)
    if not match:
        if spec.startswith("hf:"):
            raise UserError(f'{shown}: not a Hugging Face model id; expected "hf:ORG/NAME"')
        return Path(spec).expanduser()
    repo = match["repo"]
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise UserError(f'{shown}: needs the huggingface_hub package; install the hf extra: '
                        'pip install "llmtui[hf]"') from None
    try:
        return Path(snapshot_download(repo, allow_patterns=HUB_FILES))
    except Exception as exc:  # offline miss, network, unknown repo, gated model: all one line
        cause = _first_sentence(exc)
    raise UserError(f'{shown}: {repo} is not in the Hugging Face cache and could not be '
                    f"downloaded ({cause}); download it where there is network with "
                    f"`hf download {repo}` (or `huggingface-cli download {repo}`), or give the "
                    "downloaded folder")


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    sentence = text.split(". ")[0].rstrip(".")
    return (sentence[:157] + "...") if len(sentence) > 160 else (sentence or type(exc).__name__)


def run_name_for(folder: Path) -> str:
    """A valid run.name from a folder's name (the hf export's and GGUF's model name)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip(".-_")[:100]
    return name or "imported"


# ---------------------------------------------------------------------------
# a folder for inference (llmtui sample, eval, export)

def hf_config(model: HfModel):
    """An llmtui Config that builds this folder's model and reads text with its tokenizer."""
    from llmtui.engine.config.schema import Config

    cfg = Config()
    for key, value in model.settings.items():
        setattr(cfg.model, key, value)
    for key, value in tokenizer_settings(model).items():
        setattr(cfg.tokenizer, key, value)
    cfg.run.name = run_name_for(model.folder)
    return cfg
