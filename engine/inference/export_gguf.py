"""`llmtui export ... --format gguf`: one model.gguf for llama.cpp and the tools built on it.

Written with the `gguf` package (the writer maintained with llama.cpp). The
architectures are those of the hf export (engine.inference.mapping): gpt2
(learned positions, LayerNorm, GELU), starcoder2 (rotary, LayerNorm, GELU),
llama (rotary, RMSNorm, SwiGLU), qwen3 (llama with QK-norm) and qwen2 (llama
with biases on q/k/v alone: attn_q.bias, attn_k.bias, attn_v.bias, the
tensors llama.cpp's qwen2 reads), which llama.cpp runs and transformers' GGUF
loader reads back. A squared-ReLU MLP
has no GGUF form (llama.cpp's gpt2 and starcoder2 compute GELU) and is
refused. Tensor names come from gguf's own name map for the transformers
names, so they are what both readers expect. Linear weights are stored as
(out, in), the layout llama.cpp's converters write (GPT-2's Conv1D weights
are transposed back); 1-D tensors stay fp32 in an fp16 file, as llama.cpp's
converters keep them.

Rotary layouts: llama.cpp's llama rotates interleaved pairs, llmtui's own
layout (its converter permutes HF Llama's halves into pairs, and
transformers' GGUF loader permutes them back), so llama's q and k are written
as llmtui holds them; starcoder2, qwen2 and qwen3 rotate halves (NeoX), so
theirs (biases included) are written in the hf export's halves layout.
The head size (model.head_dim, or n_embd / n_head) is attention.key_length and
value_length (llama.cpp's llama, qwen2 and qwen3 read it there) and rope.dimension_count.

The tokenizer goes in as a byte-level BPE (tokenizer.ggml.model "gpt2": token
list, types, merges, split pattern name, end-of-text as bos/eos). A char
vocabulary has no such form, and llama.cpp needs an end-of-text token a char
vocabulary does not have, so char models are refused (export --format hf).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmtui.engine.data.tokenizers import BpeTokenizer, CharTokenizer, IdTokenizer
from llmtui.engine.inference.hf_tokenizer import BARE_IDS_EXPORT, BpeVocabulary
from llmtui.engine.inference.mapping import ExportError, architecture, hf_state_dict
from llmtui.engine.training.loader import LoadedModel

FILE_NAME = "model.gguf"
# tiktoken split patterns by the name llama.cpp (and transformers' GGUF loader) give them
PRE_TOKENIZER = {"gpt2": "gpt-2", "r50k_base": "gpt-2", "p50k_base": "gpt-2", "p50k_edit": "gpt-2",
                 "cl100k_base": "llama-bpe", "o200k_base": "gpt-4o"}
# GPT-2 weights transformers' GGUF loader transposes on reading (llama.cpp's layout is (out, in))
GPT2_TRANSPOSED = ("attn_qkv.weight", "attn_output.weight", "ffn_up.weight", "ffn_down.weight")


def write_gguf(loaded: LoadedModel, folder: Path, dtype: str = "fp32") -> list[str]:
    import gguf

    arch = architecture(loaded.config, "gguf")
    pre = gguf_tokenizer_pattern(loaded)
    c = loaded.model.config
    # llama keeps llmtui's interleaved-pairs q and k (above)
    weights = hf_state_dict(loaded, arch, all_biases=True, halves=arch != "llama")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], c.n_layer)   # GGUF's names are mapping's

    writer = gguf.GGUFWriter(str(folder / FILE_NAME), arch)
    writer.add_name(loaded.config.run.name)
    writer.add_description(f"llmtui checkpoint {loaded.path}")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "fp16" else gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(c.block_size)
    writer.add_embedding_length(c.n_embd)
    writer.add_feed_forward_length(c.ff_width)
    writer.add_block_count(c.n_layer)
    writer.add_head_count(c.n_head)
    if arch in ("gpt2", "starcoder2"):
        writer.add_layer_norm_eps(c.norm_eps)
    else:
        writer.add_layer_norm_rms_eps(c.norm_eps)
        writer.add_key_length(c.head_size)      # model.head_dim, or n_embd / n_head
        writer.add_value_length(c.head_size)
    if arch != "gpt2":
        writer.add_head_count_kv(c.kv_heads)     # grouped-query attention (gpt2 has none)
        writer.add_rope_freq_base(c.rope_theta)
        writer.add_rope_dimension_count(c.head_size)
    _add_tokenizer(writer, loaded, pre)

    for hf_name, tensor in weights.items():
        base, _, suffix = hf_name.rpartition(".")
        name = names.get_name(base)
        if name is None:
            raise ExportError(f"no GGUF name for weight {hf_name} of {arch}")  # a bug, not bad input
        name = f"{name}.{suffix}"
        data = tensor.numpy()
        if arch == "gpt2" and name.endswith(GPT2_TRANSPOSED):
            data = data.T
        data = np.ascontiguousarray(data, dtype=np.float16 if dtype == "fp16" and data.ndim == 2 else np.float32)
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return [FILE_NAME]


def gguf_tokenizer_pattern(loaded: LoadedModel) -> str:
    """The name of the tokenizer's split pattern in GGUF; ExportError when it has no GGUF form."""
    tok = loaded.tokenizer
    if isinstance(tok, IdTokenizer):
        raise ExportError(BARE_IDS_EXPORT)
    if isinstance(tok, CharTokenizer):
        raise ExportError('tokenizer.kind = "char" cannot be exported to gguf: llama.cpp\'s tokenizers '
                          "need a byte-level vocabulary with an end-of-text token; export --format hf, "
                          'or train with tokenizer.kind = "trained" or "bpe"')
    if isinstance(tok, BpeTokenizer):
        if tok.encoding not in PRE_TOKENIZER:
            raise ExportError(f'tokenizer.encoding = "{tok.encoding}" cannot be exported to gguf: its '
                              "split pattern has no name llama.cpp knows")
        return PRE_TOKENIZER[tok.encoding]
    if tok.eot_token is None:
        raise ExportError("the tokenizer has no end-of-text token (tokenizer.special_tokens is empty); "
                          "llama.cpp needs one: export --format hf instead")
    BpeVocabulary.of(tok)  # a tokenizer.json that is not a plain byte-level BPE is refused here
    return "gpt-2"        # a trained BPE splits with GPT-2's pattern (engine.data.bpe_training)


def _add_tokenizer(writer, loaded: LoadedModel, pre: str) -> None:
    import gguf

    bpe = BpeVocabulary.of(loaded.tokenizer)
    tokens, types = [], []
    for i in range(loaded.model.config.vocab_size):    # the model's rows: padding ids get placeholders
        token = bpe.tokens.get(i)
        tokens.append(token if token is not None else f"[PAD{i}]")
        types.append(gguf.TokenType.CONTROL if i in bpe.special else
                     gguf.TokenType.NORMAL if token is not None else gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{left} {right}" for left, right in bpe.merges])
    writer.add_bos_token_id(loaded.tokenizer.eot_token)
    writer.add_eos_token_id(loaded.tokenizer.eot_token)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
