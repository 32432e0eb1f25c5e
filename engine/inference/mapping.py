"""Which transformers class computes the same function as a llmtui model, and its weights.

llmtui's GPT (engine/model/gpt.py) is pre-LayerNorm blocks with an exact-erf
GELU MLP and either learned absolute positions or rotary positions:

- learned positions -> GPT-2 (GPT2LMHeadModel, activation_function "gelu" =
  the erf GELU). GPT-2's Conv1D keeps weights as (in, out): the transpose of
  nn.Linear's. GPT-2 always has biases: llmtui's absent ones are zeros.
- rotary positions -> Starcoder2 (Starcoder2ForCausalLM): LayerNorm, a c_fc /
  c_proj GELU MLP, sequential residuals, full-width rotary, q/k/v as separate
  projections. llmtui rotates interleaved pairs (x[2i], x[2i+1]); Starcoder2
  (like Llama and NeoX) rotates halves (x[i], x[i + d/2]). Permuting the rows
  of q and k within each head to [0, 2, 4, ..., 1, 3, 5, ...] turns one into
  the other; q.k is unchanged by a permutation applied to both. Starcoder2 is
  also one of the architectures llama.cpp and transformers' GGUF loader know.

Every [model] setting the mapping does not handle must hold its schema
default; anything else is refused with one line naming it (new model options
stay unexportable until they are mapped here).
"""

from __future__ import annotations

import torch

from llmtui.engine.config.loading import show_value
from llmtui.engine.config.schema import FIELDS, Config
from llmtui.engine.errors import UserError
from llmtui.engine.training.sampling import LoadedModel

# [model] settings the mappings below reproduce (dropout and gradient
# checkpointing only act during training)
HANDLED = {"n_layer", "n_head", "n_embd", "block_size", "d_ff", "dropout", "bias", "pos_encoding",
           "rope_theta", "tie_embeddings", "vocab_size", "gradient_checkpointing"}
ARCHITECTURES = {"learned": "gpt2", "rope": "starcoder2"}
LAYER_NORM_EPS = 1e-5   # nn.LayerNorm's default, which llmtui uses


class ExportError(UserError):
    """The model or its tokenizer has no form in the requested format."""


def architecture(cfg: Config, fmt: str) -> str:
    """"gpt2" or "starcoder2" for this model; ExportError for a setting no class computes."""
    for name, spec in FIELDS["model"].items():
        value = getattr(cfg.model, name, spec.default)
        if name not in HANDLED and value != spec.default:
            raise ExportError(f"model.{name} = {show_value(value)} cannot be exported to {fmt}: no "
                              f"{'transformers class' if fmt == 'hf' else 'GGUF architecture'} llmtui "
                              f"maps to computes it (only model.{name} = {show_value(spec.default)} "
                              "exports)")
    arch = ARCHITECTURES.get(cfg.model.pos_encoding)
    if arch is None:
        raise ExportError(f"model.pos_encoding = {show_value(cfg.model.pos_encoding)} cannot be "
                          f"exported to {fmt}: only {', '.join(ARCHITECTURES)} positions are mapped")
    return arch


def hf_config(loaded: LoadedModel, arch: str, dtype: str) -> dict:
    """config.json for transformers (written by hand: transformers is not needed to export)."""
    c = loaded.model.config
    eot = loaded.tokenizer.eot_token
    common = {"vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_embeddings,
              "bos_token_id": eot, "eos_token_id": eot, "use_cache": True,
              "dtype": "float16" if dtype == "fp16" else "float32"}
    if arch == "gpt2":
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_positions": c.block_size,
                "n_ctx": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
                "n_inner": c.ff_width, "activation_function": "gelu", "resid_pdrop": 0.0,
                "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": LAYER_NORM_EPS,
                "initializer_range": 0.02, "scale_attn_weights": True,
                "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False, **common}
    return {"architectures": ["Starcoder2ForCausalLM"], "model_type": "starcoder2",
            "hidden_size": c.n_embd, "intermediate_size": c.ff_width, "num_hidden_layers": c.n_layer,
            "num_attention_heads": c.n_head, "num_key_value_heads": c.n_head, "hidden_act": "gelu",
            "max_position_embeddings": c.block_size, "norm_epsilon": LAYER_NORM_EPS,
            "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
            "rope_theta": c.rope_theta, "sliding_window": None, "attention_dropout": 0.0,
            "residual_dropout": 0.0, "embedding_dropout": 0.0, "use_bias": c.bias,
            "initializer_range": 0.02, **common}


def hf_state_dict(loaded: LoadedModel, arch: str, *, all_biases: bool = False) -> dict[str, torch.Tensor]:
    """The weights under the transformers class's names (fp32, CPU). `all_biases` writes
    zero biases for Starcoder2's Linear layers too (its GGUF form always has them)."""
    model = loaded.model
    c = model.config
    w = {name: t.detach().to("cpu", torch.float32) for name, t in model.state_dict().items()}
    C, H = c.n_embd, c.n_head

    def get(name: str, size: int | None = None) -> torch.Tensor:
        # llmtui's absent biases are zeros in formats that always have them
        return w[name] if name in w else torch.zeros(size)

    out: dict[str, torch.Tensor] = {}
    if arch == "gpt2":
        out["transformer.wte.weight"] = w["transformer.wte.weight"]
        out["transformer.wpe.weight"] = w["transformer.wpe.weight"]
        for i in range(c.n_layer):
            src, dst = f"transformer.h.{i}.", f"transformer.h.{i}."
            for ln in ("ln_1", "ln_2"):
                out[dst + f"{ln}.weight"] = w[src + f"{ln}.weight"]
                out[dst + f"{ln}.bias"] = get(src + f"{ln}.bias", C)
            for lin, width in (("attn.c_attn", 3 * C), ("attn.c_proj", C), ("mlp.c_fc", c.ff_width),
                               ("mlp.c_proj", C)):
                out[dst + f"{lin}.weight"] = w[src + f"{lin}.weight"].t().contiguous()  # Conv1D: (in, out)
                out[dst + f"{lin}.bias"] = get(src + f"{lin}.bias", width)
        out["transformer.ln_f.weight"] = w["transformer.ln_f.weight"]
        out["transformer.ln_f.bias"] = get("transformer.ln_f.bias", C)
        if not c.tie_embeddings:
            out["lm_head.weight"] = w["lm_head.weight"]
        return out

    biases = c.bias or all_biases
    order = _halves_order(C // H)
    out["model.embed_tokens.weight"] = w["transformer.wte.weight"]
    for i in range(c.n_layer):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        for ln, name in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
            out[dst + f"{name}.weight"] = w[src + f"{ln}.weight"]
            out[dst + f"{name}.bias"] = get(src + f"{ln}.bias", C)
        qkv_w = w[src + "attn.c_attn.weight"].split(C, dim=0)
        qkv_b = get(src + "attn.c_attn.bias", 3 * C).split(C, dim=0)
        for proj, weight, bias, rotated in zip(("q_proj", "k_proj", "v_proj"), qkv_w, qkv_b, (True, True, False)):
            if rotated:
                weight, bias = _per_head(weight, H, order), _per_head(bias, H, order)
            out[dst + f"self_attn.{proj}.weight"] = weight.contiguous()
            if biases:
                out[dst + f"self_attn.{proj}.bias"] = bias.contiguous()
        for lin, name, width in (("attn.c_proj", "self_attn.o_proj", C), ("mlp.c_fc", "mlp.c_fc", c.ff_width),
                                 ("mlp.c_proj", "mlp.c_proj", C)):
            out[dst + f"{name}.weight"] = w[src + f"{lin}.weight"]
            if biases:
                out[dst + f"{name}.bias"] = get(src + f"{lin}.bias", width)
    out["model.norm.weight"] = w["transformer.ln_f.weight"]
    out["model.norm.bias"] = get("transformer.ln_f.bias", C)
    if not c.tie_embeddings:
        out["lm_head.weight"] = w["lm_head.weight"]
    return out


def _halves_order(head_dim: int) -> torch.Tensor:
    """Rows of a head in the halves layout: even (first of each pair) then odd."""
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


def _per_head(t: torch.Tensor, heads: int, order: torch.Tensor) -> torch.Tensor:
    """Reorder the output rows of each head of a q or k projection (weight or bias)."""
    shape = t.shape
    return t.reshape(heads, len(order), *shape[1:])[:, order].reshape(shape)
