"""Which transformers class computes the same function as a llmtui model, and its weights.

llmtui's GPT (engine/model/gpt.py) is pre-norm blocks (LayerNorm or RMSNorm),
an MLP (exact-erf GELU, squared ReLU or SwiGLU), optional QK-norm, and either
learned absolute positions or rotary positions. Four stock classes cover it:

- learned positions, LayerNorm, GELU or squared-ReLU MLP -> GPT-2
  (GPT2LMHeadModel, activation_function "gelu" = the erf GELU, or "relu2").
  GPT-2's Conv1D keeps weights as (in, out): the transpose of nn.Linear's.
  GPT-2 always has biases: llmtui's absent ones are zeros.
- rotary positions, LayerNorm, GELU or squared-ReLU MLP -> Starcoder2
  (Starcoder2ForCausalLM): LayerNorm, a c_fc / c_proj MLP (hidden_act "gelu"
  or "relu2"), sequential residuals, full-width rotary, q/k/v as separate
  projections.
- rotary positions, RMSNorm, SwiGLU MLP -> Llama (LlamaForCausalLM, hidden_act
  "silu"): llmtui's c_fc rows are [gate; up], so gate_proj is their first half
  and up_proj the second; c_proj is down_proj.
- the same with QK-norm -> Qwen3 (Qwen3ForCausalLM): Llama plus an RMSNorm of
  each head's queries and keys before the rotation, as llmtui's. Qwen3's MLP
  has no biases, so model.bias = true is refused.

llmtui rotates interleaved pairs (x[2i], x[2i+1]); Starcoder2, Llama and Qwen3
(like NeoX) rotate halves (x[i], x[i + d/2]). Permuting the rows of q and k
(and QK-norm's gains) within each head to [0, 2, 4, ..., 1, 3, 5, ...] turns
one into the other; q.k is unchanged by a permutation applied to both, and an
RMSNorm of a head by one too. All four, and Qwen2 below, are architectures
llama.cpp and transformers' GGUF loader know (engine.inference.export_gguf).

- the Llama shape with biases on q/k/v alone (model.qkv_bias) -> Qwen2
  (Qwen2ForCausalLM). GPT-2's tanh GELU (model.mlp = "gelu_tanh") is its
  "gelu_new", Starcoder2's "gelu_pytorch_tanh"; every norm's epsilon is
  model.norm_eps. engine.model.import_hf reads these folders back.
Grouped-query attention (model.n_kv_head) maps to the rotary classes'
num_key_value_heads (GGUF's head_count_kv): c_attn's rows are [q; k; v] with k
and v n_kv_head heads each. GPT-2 has no form of it, so with learned positions
only multi-head attention exports. Heads of their own width (model.head_dim,
Qwen3's) are the Llama-shaped classes' head_dim (GGUF's attention.key_length and
value_length): q, k and v are heads of head_dim and o_proj maps n_head * head_dim
back to hidden_size. GPT-2 and Starcoder2 exports keep n_embd / n_head.

Any other combination of model.norm, model.mlp, model.qk_norm and
model.pos_encoding is refused with one line naming the setting. Every other
[model] setting the mapping does not handle must hold its schema default;
anything else is refused with one line naming it (new model options stay
unexportable until they are mapped here).
"""

from __future__ import annotations

import torch

from llmtui.engine.config.loading import show_value
from llmtui.engine.config.schema import FIELDS, Config
from llmtui.engine.errors import UserError
from llmtui.engine.training.loader import LoadedModel

# [model] settings the mappings below reproduce (dropout and gradient
# checkpointing only act during training)
HANDLED = {"n_layer", "n_head", "n_embd", "block_size", "d_ff", "dropout", "bias", "pos_encoding",
           "rope_theta", "tie_embeddings", "vocab_size", "gradient_checkpointing", "norm", "mlp", "qk_norm",
           "norm_eps", "qkv_bias", "init_from", "n_kv_head", "head_dim"}
# architecture -> the transformers class of the hf export
HF_CLASSES = {"gpt2": "GPT2LMHeadModel", "starcoder2": "Starcoder2ForCausalLM", "llama": "LlamaForCausalLM",
              "qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM"}
# llmtui's GELU MLPs by their name in GPT-2's activation_function and Starcoder2's hidden_act
GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu2": "relu2"}
STARCODER2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu2": "relu2"}
POSITIONS = ("learned", "rope")


class ExportError(UserError):
    """The model or its tokenizer has no form in the requested format."""


def architecture(cfg: Config, fmt: str) -> str:
    """"gpt2", "starcoder2", "llama" or "qwen3" for this model; ExportError naming the
    setting for a combination no class computes."""
    for name, spec in FIELDS["model"].items():
        value = getattr(cfg.model, name, spec.default)
        if name not in HANDLED and value != spec.default:
            raise ExportError(f"model.{name} = {show_value(value)} cannot be exported to {fmt}: no "
                              f"{'transformers class' if fmt == 'hf' else 'GGUF architecture'} llmtui "
                              f"maps to computes it (only model.{name} = {show_value(spec.default)} "
                              "exports)")
    m = cfg.model
    pos, norm, mlp, qk_norm = m.pos_encoding, m.norm, m.mlp, m.qk_norm
    layer_norm_mlps = '"gelu", "gelu_tanh" or "relu2"' if fmt == "hf" else '"gelu" or "gelu_tanh"'  # no GGUF relu2

    def refuse(name: str, why: str) -> ExportError:
        return ExportError(f"model.{name} = {show_value(getattr(m, name))} cannot be exported to {fmt}: {why}")

    if pos not in POSITIONS:
        raise refuse("pos_encoding", f"only {', '.join(POSITIONS)} positions are mapped")
    if norm == "rmsnorm":     # (the Llama-shaped classes take any head_dim)
        if pos != "rope":
            raise refuse("norm", 'RMSNorm exports only with rotary positions and model.mlp = "swiglu" '
                                 '(Llama, Qwen3); learned positions export with model.norm = "layernorm" (GPT-2)')
        if mlp != "swiglu":
            raise refuse("mlp", 'with model.norm = "rmsnorm" only model.mlp = "swiglu" exports (Llama, Qwen3); '
                                f'model.mlp = {layer_norm_mlps} exports with model.norm = "layernorm" (GPT-2, Starcoder2)')
        if qk_norm and m.bias:
            raise refuse("bias", "with model.qk_norm = true the model exports as Qwen3, whose MLP has no "
                                 "biases (only model.bias = false exports)")
        if m.qkv_bias and not m.bias:
            if qk_norm:
                raise refuse("qkv_bias", "no class llmtui maps to has QK-norm with biases on q/k/v alone")
            return "qwen2"
        return "qwen3" if qk_norm else "llama"
    if norm != "layernorm":
        raise refuse("norm", 'only "layernorm" and "rmsnorm" are mapped')
    if mlp == "swiglu":
        raise refuse("mlp", 'SwiGLU exports only with model.norm = "rmsnorm" and rotary positions (Llama, '
                            f'Qwen3); with LayerNorm model.mlp = {layer_norm_mlps} exports (GPT-2, Starcoder2)')
    if mlp not in ("gelu", "gelu_tanh", "relu2"):
        raise refuse("mlp", 'only "gelu", "gelu_tanh", "relu2" and "swiglu" are mapped')
    if qk_norm:
        raise refuse("qk_norm", 'QK-norm exports only with rotary positions, model.norm = "rmsnorm" and '
                                'model.mlp = "swiglu" (Qwen3); with LayerNorm only model.qk_norm = false exports')
    if mlp == "relu2" and fmt == "gguf":
        raise refuse("mlp", "llama.cpp's gpt2 and starcoder2 architectures compute GELU (with LayerNorm only "
                            'model.mlp = "gelu" exports to gguf; --format hf exports relu2)')
    if pos == "learned" and m.n_kv_head not in (0, m.n_head):
        raise refuse("n_kv_head", "GPT-2 (learned positions) has no grouped-query attention; with learned "
                                  "positions only model.n_kv_head = 0 (= n_head) exports (rotary models "
                                  "export with it)")
    if m.head_dim and m.head_dim * m.n_head != m.n_embd:
        raise refuse("head_dim", f"{'GPT-2' if pos == 'learned' else 'Starcoder2'} heads are n_embd / n_head "
                                 f"wide; only model.head_dim = 0 exports with model.norm = \"layernorm\" "
                                 '(Llama, Qwen2 and Qwen3 export with it: model.norm = "rmsnorm", model.mlp = "swiglu")')
    return "gpt2" if pos == "learned" else "starcoder2"


def hf_config(loaded: LoadedModel, arch: str, dtype: str) -> dict:
    """config.json for transformers (written by hand: transformers is not needed to export)."""
    c = loaded.model.config
    eot = loaded.tokenizer.eot_token
    common = {"architectures": [HF_CLASSES[arch]], "model_type": arch, "vocab_size": c.vocab_size,
              "tie_word_embeddings": c.tie_embeddings, "bos_token_id": eot, "eos_token_id": eot,
              "use_cache": True, "dtype": "float16" if dtype == "fp16" else "float32",
              "initializer_range": 0.02}
    if arch == "gpt2":
        return {**common, "n_positions": c.block_size, "n_ctx": c.block_size, "n_embd": c.n_embd, "n_layer": c.n_layer,
                "n_head": c.n_head, "n_inner": c.ff_width, "activation_function": GPT2_ACTIVATIONS[c.mlp],
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "layer_norm_epsilon": c.norm_eps,
                "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                "reorder_and_upcast_attn": False}
    rotary = {**common, "hidden_size": c.n_embd, "intermediate_size": c.ff_width, "num_hidden_layers": c.n_layer,
              "num_attention_heads": c.n_head, "num_key_value_heads": c.kv_heads,
              "max_position_embeddings": c.block_size,
              "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
              "rope_theta": c.rope_theta, "attention_dropout": 0.0}
    if arch == "starcoder2":
        return {**rotary, "hidden_act": STARCODER2_ACTIVATIONS[c.mlp], "norm_epsilon": c.norm_eps,
                "sliding_window": None, "residual_dropout": 0.0, "embedding_dropout": 0.0,
                "use_bias": c.bias or c.qkv_bias}
    llama = {**rotary, "hidden_act": "silu", "head_dim": c.head_size, "rms_norm_eps": c.norm_eps,
             "attention_bias": c.bias}
    if arch == "llama":
        return {**llama, "mlp_bias": c.bias, "pretraining_tp": 1}
    if arch == "qwen2":     # q/k/v always have biases in Qwen2
        del llama["attention_bias"]
    return {**llama, "use_sliding_window": False, "sliding_window": None, "max_window_layers": c.n_layer,
            "layer_types": ["full_attention"] * c.n_layer}


def hf_state_dict(loaded: LoadedModel, arch: str, *, all_biases: bool = False,
                  halves: bool = True) -> dict[str, torch.Tensor]:
    """The weights under the transformers class's names (fp32, CPU). `all_biases` writes
    zero biases for Starcoder2's Linear layers too (its GGUF form always has them);
    `halves=False` leaves q and k in llmtui's interleaved-pairs rotary layout (GGUF's llama)."""
    model = loaded.model
    c = model.config
    w = {name: t.detach().to("cpu", torch.float32) for name, t in model.state_dict().items()}
    C, H, KV, D = c.n_embd, c.n_head, c.kv_heads, c.head_size
    Q, K = H * D, KV * D               # the width of q (C unless head_dim is set), of k and of v

    def get(name: str, size: int) -> torch.Tensor:
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

    layer_norm = arch == "starcoder2"           # the others: RMSNorm, no bias
    # Starcoder2's use_bias gives every Linear a bias (llmtui's absent ones are zeros);
    # Qwen2's q/k/v alone have them
    biases = c.bias or (layer_norm and (all_biases or c.qkv_bias))
    qkv_biases = biases or c.qkv_bias
    order = _halves_order(D) if halves else torch.arange(D)
    out["model.embed_tokens.weight"] = w["transformer.wte.weight"]
    for i in range(c.n_layer):
        src, dst = f"transformer.h.{i}.", f"model.layers.{i}."
        for ln, name in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
            out[dst + f"{name}.weight"] = w[src + f"{ln}.weight"]
            if layer_norm:
                out[dst + f"{name}.bias"] = get(src + f"{ln}.bias", C)
        qkv_w = w[src + "attn.c_attn.weight"].split((Q, K, K), dim=0)
        qkv_b = get(src + "attn.c_attn.bias", Q + 2 * K).split((Q, K, K), dim=0)
        for proj, weight, bias, heads in zip(("q_proj", "k_proj", "v_proj"), qkv_w, qkv_b, (H, KV, None)):
            if heads:       # q and k are rotated: their rows in the class's rotary layout
                weight, bias = _per_head(weight, heads, order), _per_head(bias, heads, order)
            out[dst + f"self_attn.{proj}.weight"] = weight.contiguous()
            if qkv_biases:
                out[dst + f"self_attn.{proj}.bias"] = bias.contiguous()
        if arch == "qwen3":
            for norm in ("q_norm", "k_norm"):
                out[dst + f"self_attn.{norm}.weight"] = w[src + f"attn.{norm}.weight"][order].contiguous()
        o_w, o_b = w[src + "attn.c_proj.weight"], get(src + "attn.c_proj.bias", C)
        fc_w = w[src + "mlp.c_fc.weight"]
        fc_b = get(src + "mlp.c_fc.bias", fc_w.shape[0])
        down_w, down_b = w[src + "mlp.c_proj.weight"], get(src + "mlp.c_proj.bias", C)
        linears = [("self_attn.o_proj", o_w, o_b)]
        if layer_norm:
            linears += [("mlp.c_fc", fc_w, fc_b), ("mlp.c_proj", down_w, down_b)]
        else:   # SwiGLU: c_fc's rows are [gate; up]
            (gate_w, up_w), (gate_b, up_b) = fc_w.chunk(2, dim=0), fc_b.chunk(2, dim=0)
            linears += [("mlp.gate_proj", gate_w, gate_b), ("mlp.up_proj", up_w, up_b),
                        ("mlp.down_proj", down_w, down_b)]
        for name, weight, bias in linears:
            out[dst + f"{name}.weight"] = weight.contiguous()
            if biases:
                out[dst + f"{name}.bias"] = bias.contiguous()
    out["model.norm.weight"] = w["transformer.ln_f.weight"]
    if layer_norm:
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
