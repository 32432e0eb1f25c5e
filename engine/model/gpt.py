"""A GPT decoder in plain PyTorch, in the spirit of nanoGPT's model.py.

Pre-norm blocks (LayerNorm or RMSNorm), causal self-attention through
`F.scaled_dot_product_attention` (flash / memory-efficient kernels where the
device has them) with optional QK-norm and grouped-query attention, an MLP (GELU, squared ReLU or SwiGLU)
of configurable width, learned or rotary (RoPE) positions, heads as wide as
n_embd / n_head or of their own size (model.head_dim, Qwen3's), optional bias,
tied or untied input/output embeddings, GPT-2 style init and optional
gradient checkpointing. The defaults are nanoGPT's model.

A forward pass can carry a KV cache (engine.model.generation.KVCache): the
keys and values of the positions before are read from it instead of being
computed again, so generation computes each new token once; a Decoder
(GPT.decoder) is forward for that one token in eval mode with fewer ops and
lookups (the same logits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, cast

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from llmtui.engine.config.schema import ModelConfig
from llmtui.engine.errors import ConfigError
from llmtui.engine.model.generation import KVCache, generate_tokens
from llmtui.engine.model.shapes import attention_width, ff_width, head_size, kv_heads


@dataclass
class GPTConfig:
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_kv_head: int = 0             # 0 = n_head (multi-head attention)
    head_dim: int = 0              # 0 = n_embd // n_head
    block_size: int = 64
    d_ff: int = 0               # 0 = shapes.ff_width's default
    dropout: float = 0.0
    bias: bool = False
    pos_encoding: str = "learned"  # learned | rope
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    gradient_checkpointing: bool = False
    norm: str = "layernorm"        # layernorm | rmsnorm
    mlp: str = "gelu"              # gelu | gelu_tanh | relu2 | swiglu
    qk_norm: bool = False
    norm_eps: float = 1e-5         # of every norm (blocks, head, QK-norm)
    qkv_bias: bool = False         # bias on the q/k/v projection alone (Qwen2)

    @property
    def ff_width(self) -> int:
        return ff_width(self.n_embd, self.d_ff, self.mlp)

    @property
    def kv_heads(self) -> int:
        return kv_heads(self.n_head, self.n_kv_head)

    @property
    def head_size(self) -> int:
        return head_size(self.n_embd, self.n_head, self.head_dim)

    @property
    def attention_width(self) -> int:
        """n_head * head_size: the queries' width (n_embd unless head_dim is set)."""
        return attention_width(self.n_embd, self.n_head, self.head_dim)


# fields added after 0.1.0: a checkpoint's model fingerprint leaves them out while they
# hold these defaults, so checkpoints of earlier versions still match
NEW_FIELDS = {"norm": "layernorm", "mlp": "gelu", "qk_norm": False, "norm_eps": 1e-5, "qkv_bias": False,
              "n_kv_head": 0, "head_dim": 0}


def make_norm(config: GPTConfig, dim: int) -> nn.Module:
    """LayerNorm (nanoGPT's) or RMSNorm (no mean subtraction and no bias: fewer
    operations, and the same loss or better at this scale)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(dim, eps=config.norm_eps)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.bias)


def rope_tables(head_dim: int, length: int, theta: float) -> torch.Tensor:
    """Rotations for rotary embeddings: (length, head_dim/2, 2) holding cos and sin of each
    position's angle per pair (real, so it moves and broadcasts like any buffer)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return torch.stack((angles.cos(), angles.sin()), dim=-1)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of x (B, H, T, D) by position-dependent angles.

    As one complex multiplication (LLaMA's way): measured on a 2-core CPU at nanoGPT's CPU
    shapes, forward and backward take a quarter of the time of rotating the pairs with
    real arithmetic (0.28 vs 1.1 ms per call), the same values within float rounding."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(pairs * torch.view_as_complex(rotations.float())).flatten(-2).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        assert (config.head_dim or config.n_embd % config.n_head == 0) and config.n_head % config.kv_heads == 0
        self.layer = layer                  # its place in a KV cache
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.head_size
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        # one matmul for q, k and v (rows [q; k; v], q n_head heads and k and v n_kv_head
        # heads of head_dim each): fewer, larger kernels run faster on every device
        q_width, kv_width = config.attention_width, self.n_kv_head * self.head_dim
        self.widths = (q_width, kv_width, kv_width)
        self.c_attn = nn.Linear(config.n_embd, sum(self.widths), bias=config.bias or config.qkv_bias)
        self.c_proj = nn.Linear(q_width, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.qk_norm:
            # QK-norm: RMSNorm of each head's queries and keys (with a learned gain) bounds the
            # attention logits, so higher learning rates stay stable
            self.q_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps)
            self.k_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps)

    def forward(self, x, rope=None, cache=None):
        B, T, _ = x.size()
        # the heads of q, k and v side by side, (B, heads, T, head_dim) each: three ops where
        # a split, three views and three transposes were seven (the same tensors, strides
        # included); each small op counts when generating one token at a time
        q, k, v = (self.c_attn(x).view(B, T, -1, self.head_dim).transpose(1, 2)
                   .split((self.n_head, self.n_kv_head, self.n_kv_head), dim=1))
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        start = 0 if cache is None else cache.pos    # the position of x's first token
        if rope is not None:
            q, k = apply_rope(q, rope[start:start + T]), apply_rope(k, rope[start:start + T])
        mask = None
        if cache is not None:
            k, v = cache.update(self.layer, k, v)    # the cached positions' keys and values, then x's
            if start and T > 1:
                # x's tokens see every cached position and the tokens of x up to themselves
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
        # from position 0 the causal mask; after cached positions the mask above, or for a
        # single token none: it sees everything
        causal = start == 0
        # grouped-query attention: SDPA shares each key/value head among its group of query
        # heads without copying k and v (the flag only when grouped: the kernels of
        # multi-head attention stay as they were)
        groups = {"enable_gqa": True} if self.n_kv_head != self.n_head else {}
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal, **groups)
        y = self.c_proj(y.transpose(1, 2).reshape(B, T, self.widths[0]))
        return self.resid_dropout(y) if self.training else y


class MLP(nn.Module):
    """GELU (exact erf, or GPT-2's tanh approximation), squared ReLU (relu(x)^2, Primer: cheaper than GELU and better) or
    SwiGLU (silu(gate) * up, LLaMA; gate and up come from one matmul of twice the width)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        width = config.ff_width * (2 if config.mlp == "swiglu" else 1)
        self.c_fc = nn.Linear(config.n_embd, width, bias=config.bias)
        self.c_proj = nn.Linear(config.ff_width, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def activation(self, h):
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            return F.silu(gate) * up
        if self.kind == "relu2":
            return F.relu(h).square()
        if self.kind == "gelu_tanh":
            return F.gelu(h, approximate="tanh")
        return F.gelu(h)

    def forward(self, x):
        h = self.c_proj(self.activation(self.c_fc(x)))
        return self.dropout(h) if self.training else h   # no call at all in eval: one op less


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = make_norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config, config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x, rope=None, cache=None):
        x = x + self.attn(self.ln_1(x), rope, cache)
        return x + self.mlp(self.ln_2(x))


class _Layers(nn.ModuleDict):
    """GPT's `transformer` ModuleDict, its entries declared for the type checker
    (the state dict's names, "transformer.wte.weight" and so on, are the ModuleDict's)."""

    wte: nn.Embedding
    wpe: nn.Embedding        # learned positions only (pos_encoding = "learned")
    drop: nn.Dropout
    h: nn.ModuleList         # of Block
    ln_f: nn.Module


class GPT(nn.Module):
    rope: torch.Tensor       # the RoPE tables (a buffer), without learned positions
    # set by llmtui.build_model (engine.builder_api) on the models it makes
    llmtui_model_config: ModelConfig
    llmtui_vocab_provisional: bool

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = _Layers(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=make_norm(config, config.n_embd),
        ))
        if config.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        else:
            # a buffer follows .to(device) but is not a parameter and not saved
            self.register_buffer("rope", rope_tables(config.head_size, config.block_size, config.rope_theta),
                                 persistent=False)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so the
        # residual stream's variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- sizes -------------------------------------------------------------

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; tied weights counted once. Non-embedding excludes
        position embeddings and, when untied, the token embedding (nanoGPT's
        convention: the tied token embedding is also the output head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N for the matmuls plus 12*L*T*d for attention
        (PaLM appendix B; nanoGPT's estimate_mfu uses the same), d the queries' width
        (n_head * head_size: n_embd unless model.head_dim sets the heads apart)."""
        c = self.config
        return 6 * self.num_params() + 12 * c.n_layer * c.block_size * c.attention_width

    # -- forward -----------------------------------------------------------

    def forward(self, idx, targets=None, cache=None):
        """Logits (and the loss when `targets` is given). With a KV cache
        (engine.model.generation.KVCache) idx continues the positions the cache holds, and
        their keys and values are read from it; idx's are added to it."""
        B, T = idx.size()
        start = 0 if cache is None else cache.pos
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of length {start + T} exceeds block_size {self.config.block_size}")
        x = self.transformer.wte(idx)
        rope = None
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(start, start + T, device=idx.device))
        else:
            rope = self.rope
        if self.training:
            x = self.transformer.drop(x)
        for block in self.transformer.h:
            if self.config.gradient_checkpointing and self.training:
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope, cache)
        if cache is not None:
            cache.advance(T)
        x = self.transformer.ln_f(x)
        if targets is None:
            # generation needs only the last position's logits (one token: x itself)
            return self.lm_head(x if T == 1 else x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def decoder(self) -> Decoder:
        """One token at a time after a KV cache's positions, as forward computes it in eval
        mode (see Decoder)."""
        return Decoder(self)

    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None):
        """idx (B, T) continued by max_new_tokens tokens; temperature 0 is greedy decoding."""
        new = list(self.generate_tokens(idx, max_new_tokens, temperature, top_k, generator))
        return torch.cat((idx, *new), dim=1)

    def generate_tokens(self, idx, max_new_tokens: int, temperature: float = 1.0,
                        top_k: int | None = None, generator: torch.Generator | None = None):
        """Yield each new token (B, 1) as it is chosen, so a front end can stream them
        (engine.model.generation: a KV cache, nanoGPT's tokens)."""
        return generate_tokens(self, idx, max_new_tokens, temperature, top_k, generator)


class Decoder:
    """GPT.forward in eval mode for one token per row after a KV cache's positions, as few
    ops and Python lookups as that takes: the same arithmetic, the same logits bit for bit
    (tests/test_generation.py checks every architecture), in about half of forward's ops
    and a fraction of its Python. At batch 1 a token's matmuls read every weight once (0.5
    GB for GPT-2 124M in fp32) and each small op or lookup between them runs with cold
    caches, several times slower than alone: forward's small ops and Python were about a
    quarter of a generated token's time. Built per generation (it holds the model's
    parameters, not copies)."""

    def __init__(self, model: GPT):
        tr = model.transformer
        blocks = cast("list[Block]", list(tr.h))
        attn = blocks[0].attn
        self.block_size = model.config.block_size
        self.wte = tr.wte.weight
        self.wpe = tr.wpe.weight if "wpe" in tr else None
        self.rope = model.rope if self.wpe is None else None
        self.heads = (attn.n_head, attn.n_kv_head, attn.n_kv_head)
        self.head_dim = attn.head_dim
        self.groups = {"enable_gqa": True} if attn.n_kv_head != attn.n_head else {}
        self.layers = [
            (_norm_fn(b.ln_1), b.attn.c_attn.weight, b.attn.c_attn.bias,
             (b.attn.q_norm, b.attn.k_norm) if hasattr(b.attn, "q_norm") else None,
             b.attn.c_proj.weight, b.attn.c_proj.bias, _norm_fn(b.ln_2),
             b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.activation, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
            for b in blocks]
        self.ln_f, self.head = _norm_fn(tr.ln_f), model.lm_head.weight

    def __call__(self, idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, vocab) of the token after idx (B, 1), which continues the cache's
        positions; idx's keys and values are added to the cache."""
        pos, B, D = cache.pos, idx.size(0), self.head_dim
        end = pos + 1
        if end > self.block_size or end > cache.length or not pos:
            raise ValueError(f"cannot decode position {pos} (block_size {self.block_size}, a cache of "
                             f"{cache.length} filled by a forward pass first)")
        # filled by the forward pass of the prompt (checked above: pos > 0)
        all_keys, all_values = cast("list[torch.Tensor]", cache.keys), cast("list[torch.Tensor]", cache.values)
        x = torch.embedding(self.wte, idx[:, 0])
        rope = None
        if self.wpe is not None:
            x = x + self.wpe[pos]
        else:
            rope = cast(torch.Tensor, self.rope)[pos:pos + 1]
        for i, (ln_1, w_qkv, b_qkv, qk_norm, w_o, b_o, ln_2, w_fc, b_fc, act, w_p, b_p) in enumerate(self.layers):
            # the heads of q, k and v side by side, (B, heads, 1, head_dim) each
            q, k, v = F.linear(ln_1(x), w_qkv, b_qkv).view(B, -1, 1, D).split(self.heads, dim=1)
            if qk_norm:
                q, k = qk_norm[0](q), qk_norm[1](k)
            if rope is not None:
                q, k = apply_rope(q, rope), apply_rope(k, rope)
            keys, values = all_keys[i], all_values[i]    # KVCache.update, inline
            keys[:, :, pos:end] = k
            values[:, :, pos:end] = v
            # one query after the cached positions: it sees them all, no mask
            y = F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end], attn_mask=None,
                                               dropout_p=0.0, is_causal=False, **self.groups)
            x = x + F.linear(y.reshape(B, -1), w_o, b_o)
            x = x + F.linear(act(F.linear(ln_2(x), w_fc, b_fc)), w_p, b_p)
        cache.advance(1)
        return F.linear(self.ln_f(x), self.head)


def _norm_fn(norm: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The norm module's forward as a function of x alone: what F.layer_norm / F.rms_norm
    call, without the module call, the lookups and those functions' own Python."""
    if isinstance(norm, nn.RMSNorm):
        shape, weight, eps = norm.normalized_shape, norm.weight, norm.eps
        return lambda x: torch.rms_norm(x, shape, weight, eps)
    assert isinstance(norm, nn.LayerNorm)
    shape, weight, bias, eps = norm.normalized_shape, norm.weight, norm.bias, norm.eps
    cudnn = torch.backends.cudnn.enabled
    return lambda x: torch.layer_norm(x, shape, weight, bias, eps, cudnn)


def gpt_config(cfg, vocab_size: int) -> GPTConfig:
    """The model part of a llmtui Config, for a tokenizer of `vocab_size` tokens."""
    m = cfg.model
    if m.vocab_size and m.vocab_size < vocab_size:
        raise ConfigError(f"model.vocab_size = {m.vocab_size} is smaller than the tokenizer's "
                          f"vocabulary ({vocab_size}); use 0 or at least {vocab_size}")
    # n_kv_head = n_head is multi-head attention, as 0 is: one form, so a checkpoint's model
    # fingerprint (NEW_FIELDS) does not depend on which of the two was written
    n_kv_head = 0 if m.n_kv_head == m.n_head else m.n_kv_head
    # likewise head_dim = n_embd / n_head is the default head size
    head_dim = 0 if m.n_head * m.head_dim == m.n_embd else m.head_dim
    return GPTConfig(vocab_size=m.vocab_size or vocab_size, n_layer=m.n_layer, n_head=m.n_head,
                     n_kv_head=n_kv_head, head_dim=head_dim, n_embd=m.n_embd, block_size=m.block_size, d_ff=m.d_ff,
                     dropout=m.dropout,
                     bias=m.bias, pos_encoding=m.pos_encoding, rope_theta=m.rope_theta,
                     tie_embeddings=m.tie_embeddings,
                     gradient_checkpointing=m.gradient_checkpointing, norm=m.norm, mlp=m.mlp,
                     qk_norm=m.qk_norm, norm_eps=m.norm_eps, qkv_bias=m.qkv_bias)
