"""Generation: the one token loop behind `llmtui sample`, the app's generate screen,
training's evaluation samples and the Python API (all reach it through
GPT.generate_tokens / GPT.generate), in the manner of nanochat's Engine.

The prompt (its last block_size tokens) goes through the model once, filling a
KV cache: every layer's keys and values, per position. Each new token then
goes through the model alone, at the next position (learned position
embeddings and rotary angles offset by the cache's length), and attends to
the cached keys and values: one token's work per token, where recomputing the
whole context for every token costs a whole forward pass of up to block_size
tokens each. That one token goes through a Decoder (GPT.decoder): forward's arithmetic
(the same logits, bit for bit) in half its ops, which matters at batch 1, where
a token's matmuls are few and the small ops between them were a quarter of its
time.

Within the context (prompt + new tokens <= block_size) the tokens are those of
recomputing the context for each token (nanoGPT's generate), greedy or sampled
with the same generator: the same logits up to float rounding, the same
random draws. Past the context, nanoGPT's semantics are kept: each further
token is predicted from the last block_size tokens alone, positions counted
from 0 again, so it is computed afresh from those tokens, without the cache
(the cache's entries were computed with longer contexts and other
positions). Tokens past the context therefore cost what they cost before,
and are the same tokens as before.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.nn import functional as F


class KVCache:
    """Keys and values of every layer for the positions seen so far (`pos` of them), in
    buffers of `length` positions allocated on the first write, in the dtype and on the
    device of the keys (16-bit under autocast)."""

    def __init__(self, n_layer: int, length: int):
        self.length = length
        self.pos = 0
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k and v (B, heads, T, head_dim) at positions pos..pos+T of `layer`; return
        that layer's keys and values of positions 0..pos+T."""
        end = self.pos + k.size(2)
        if end > self.length:
            raise ValueError(f"KV cache of {self.length} positions cannot hold {end}")
        keys, values = self.keys[layer], self.values[layer]
        if keys is None or values is None:
            B, H, _, D = k.shape
            keys = self.keys[layer] = k.new_empty(B, H, self.length, D)
            values = self.values[layer] = v.new_empty(B, H, self.length, D)
        keys[:, :, self.pos:end] = k
        values[:, :, self.pos:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def advance(self, tokens: int) -> None:
        """The forward pass has stored `tokens` positions in every layer."""
        self.pos += tokens


def pick(logits: torch.Tensor, temperature: float, top_k: int | None,
         generator: torch.Generator | None) -> torch.Tensor:
    """The next token (B, 1) from the last position's logits (B, vocab): the most likely at
    temperature 0, else sampled from the top_k most likely (all when None) at `temperature`."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits[logits < v[:, [-1]]] = -float("inf")
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def _hooked(model: torch.nn.Module) -> bool:
    """Whether any module runs hooks around its forward (fully_shard's unshard, a user's)."""
    return any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())


@torch.inference_mode()    # no autograd bookkeeping at all: less overhead per op than no_grad
def generate_tokens(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, generator: torch.Generator | None = None
                    ) -> Iterator[torch.Tensor]:
    """Yield max_new_tokens tokens (B, 1) continuing idx (B, T), one at a time (see the
    module docstring for the context length)."""
    if max_new_tokens <= 0:
        return
    block = model.config.block_size
    context = idx[:, -block:]
    cache = KVCache(model.config.n_layer, min(block, context.size(1) + max_new_tokens))
    last = model(context, cache=cache)[0][:, -1, :]
    # one token after the cached ones: forward's arithmetic in fewer ops; forward itself in
    # training mode (dropout) and when the modules have hooks, which the decoder's direct use
    # of the weights would skip (FSDP2 gathers each block's sharded weights in one)
    by_forward = model.training or _hooked(model)
    decode = (lambda ids, cache: model(ids, cache=cache)[0][:, -1, :]) if by_forward else model.decoder()
    ids = [context]    # the tokens so far, joined only when the context is full
    for i in range(max_new_tokens):
        next_id = pick(last, temperature, top_k, generator)
        yield next_id
        if i == max_new_tokens - 1:
            return
        ids.append(next_id)
        if cache.pos < block:
            last = decode(next_id, cache)
        else:
            # past the context: the last block_size tokens alone, from position 0 (nanoGPT's crop)
            context = torch.cat(ids, dim=1)[:, -block:]
            ids = [context]
            last = model(context)[0][:, -1, :]
