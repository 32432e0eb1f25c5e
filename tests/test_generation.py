"""Generation with a KV cache (engine.model.generation): the same tokens as recomputing the
whole context for every token (nanoGPT's generate, kept here as the oracle), greedy and
sampled, within the context and past it; each token computed once within the context."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmtui.engine.model.generation import KVCache
from llmtui.engine.model.gpt import GPT, GPTConfig
from llmtui.engine.planning.sizing import kv_cache_bytes

pytestmark = pytest.mark.train

VOCAB = 61
# learned / rotary positions, LayerNorm / RMSNorm, GELU / SwiGLU, QK-norm, grouped-query
# (2 query heads per key/value head) and multi-query attention
MODELS = {
    "learned-layernorm": dict(pos_encoding="learned"),
    "rope-rmsnorm-swiglu-qknorm": dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True),
    "rope-gqa": dict(pos_encoding="rope", n_kv_head=2, bias=True),
    "learned-gqa-mqa": dict(pos_encoding="learned", n_kv_head=1, norm="rmsnorm"),
    # heads of their own width (model.head_dim, Qwen3's): 4 heads of 12 in a 32-wide model
    "rope-head-dim-qknorm": dict(pos_encoding="rope", head_dim=12, n_kv_head=2, qk_norm=True, norm="rmsnorm"),
}


def tiny_model(seed: int = 0, **shape) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=24, **shape)).eval()
    # weights well away from init: logits far from uniform, so a wrong position or a
    # wrong cache entry changes the tokens
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@torch.no_grad()
def recompute_tokens(model, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
    """The generation before the KV cache (nanoGPT's): the whole context (its last
    block_size tokens) through the model for every new token."""
    out = []
    for _ in range(max_new_tokens):
        context = idx if idx.size(1) <= model.config.block_size else idx[:, -model.config.block_size:]
        logits, _ = model(context)
        logits = logits[:, -1, :]
        if temperature == 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
        idx = torch.cat((idx, next_id), dim=1)
        out.append(next_id)
    return torch.cat(out, dim=1)


def both(model, prompt, n, temperature, top_k, seed=3):
    cached = torch.cat(list(model.generate_tokens(prompt, n, temperature, top_k,
                                                  torch.Generator().manual_seed(seed))), dim=1)
    oracle = recompute_tokens(model, prompt, n, temperature, top_k, torch.Generator().manual_seed(seed))
    return cached, oracle


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("temperature, top_k", [(0, None), (1.0, None), (0.8, 5)])
def test_cached_generation_gives_the_tokens_of_recomputing(name, temperature, top_k):
    """Within the context (5 prompt tokens + 19 new = block_size) and past it (30 new)."""
    model = tiny_model(**MODELS[name])
    prompt = torch.tensor([[5, 17, 3, 42, 8]])
    for n in (19, 30):
        cached, oracle = both(model, prompt, n, temperature, top_k)
        assert cached.tolist() == oracle.tolist()
    # a batch of prompts, and a prompt longer than the context (its last block_size tokens)
    batch = torch.randint(0, VOCAB, (3, 7), generator=torch.Generator().manual_seed(1))
    long = torch.randint(0, VOCAB, (1, 30), generator=torch.Generator().manual_seed(2))
    for prompt in (batch, long):
        cached, oracle = both(model, prompt, 12, temperature, top_k)
        assert cached.tolist() == oracle.tolist()


def test_greedy_generation_is_not_constant():
    """The models above say something: greedy continuations that differ by prompt and are
    not one token repeated (else the equality above would prove little)."""
    model = tiny_model(**MODELS["rope-gqa"])
    a = model.generate(torch.tensor([[1, 2, 3]]), 20, temperature=0)[0, 3:].tolist()
    b = model.generate(torch.tensor([[4, 5, 6]]), 20, temperature=0)[0, 3:].tolist()
    assert a != b and len(set(a)) > 3


@pytest.mark.parametrize("name", MODELS)
def test_cached_logits_equal_the_full_forward_pass(name):
    """Prefill, then one token at a time, then two at a time (a chunk after cached
    positions is masked causally): each position's logits are the full pass's."""
    model = tiny_model(**MODELS[name])
    ids = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(ids, ids)[0]
        cache = KVCache(model.config.n_layer, 24)
        chunks = [(0, 10)] + [(t, t + 1) for t in range(10, 16)] + [(t, t + 2) for t in range(16, 24, 2)]
        got = []
        for a, b in chunks:
            chunk = ids[:, a:b].contiguous()
            got.append(model(chunk, chunk, cache=cache)[0])     # targets: all positions' logits
    assert cache.pos == 24
    assert (torch.cat(got, dim=1) - full).abs().max().item() < 1e-5


def test_each_token_is_computed_once_within_the_context():
    """The prompt goes through the model once, then each new token alone; past the context
    each token is computed from the last block_size tokens (nanoGPT's crop)."""
    model = tiny_model(**MODELS["learned-layernorm"])
    lengths = []
    forward = model.forward

    def counting(idx, *args, **kwargs):
        lengths.append(idx.size(1))
        return forward(idx, *args, **kwargs)

    decoder = model.decoder

    def counting_decoder():
        decode = decoder()

        def step(idx, cache):
            lengths.append(idx.size(1))
            return decode(idx, cache)
        return step

    model.forward, model.decoder = counting, counting_decoder
    list(model.generate_tokens(torch.tensor([[1, 2, 3, 4]]), 25, temperature=0))
    # 4 prompt tokens, 20 more fill the context of 24, the 21st..25th new tokens crop
    assert lengths == [4] + [1] * 20 + [24] * 4


def test_modules_with_forward_hooks_generate_through_forward():
    """The decoder reads the weights directly and skips module calls: where a module runs a
    hook around its forward (FSDP2's fully_shard gathers a block's sharded weights in one, a
    user may add their own), every token goes through forward and the hook runs for it."""
    model = tiny_model(**MODELS["learned-layernorm"])
    plain = list(model.generate_tokens(torch.tensor([[1, 2, 3]]), 6, temperature=0))
    calls = []
    model.transformer.h[0].register_forward_hook(lambda module, args, out: calls.append(args[0].size(1)))
    hooked = list(model.generate_tokens(torch.tensor([[1, 2, 3]]), 6, temperature=0))
    assert calls == [3, 1, 1, 1, 1, 1]
    assert torch.equal(torch.cat(hooked, 1), torch.cat(plain, 1))


@pytest.mark.parametrize("name", [*MODELS, "gelu-tanh-qkv-bias", "relu2-untied"])
def test_decoder_gives_the_logits_of_forward_bit_for_bit(name):
    """The generator's one-token step (GPT.decoder: fewer ops) computes what forward
    computes for that token after the cached positions, exactly, for every architecture."""
    shape = MODELS.get(name) or {"gelu-tanh-qkv-bias": dict(mlp="gelu_tanh", qkv_bias=True),
                                 "relu2-untied": dict(mlp="relu2", tie_embeddings=False, bias=True)}[name]
    model = tiny_model(**shape)
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        caches = KVCache(model.config.n_layer, 12), KVCache(model.config.n_layer, 12)
        for cache in caches:
            model(ids[:, :4], cache=cache)
        decode = model.decoder()
        for t in range(4, 12):
            expected = model(ids[:, t:t + 1], cache=caches[0])[0][:, -1, :]
            assert torch.equal(decode(ids[:, t:t + 1], caches[1]), expected)
        assert caches[1].pos == 12
        for a, b in zip(caches[0].keys + caches[0].values, caches[1].keys + caches[1].values):
            assert torch.equal(a, b)


def test_the_memory_estimate_counts_the_cache_as_allocated():
    """sizing.kv_cache_bytes (in the inference memory check) is what a full cache holds."""
    for name in ("learned-layernorm", "rope-head-dim-qknorm", "rope-gqa", "learned-gqa-mqa"):
        model = tiny_model(**MODELS[name])
        cache = KVCache(model.config.n_layer, 24)
        with torch.no_grad():
            model(torch.zeros(1, 24, dtype=torch.long), cache=cache)
        held = sum(t.nbytes for t in cache.keys + cache.values)
        assert held == kv_cache_bytes(model.config, 24)
    assert kv_cache_bytes(tiny_model(**MODELS["rope-gqa"]).config, 24) == held * 2    # 2 kv heads vs 1


def test_cache_is_sized_for_the_generation_and_refuses_overflow():
    model = tiny_model(**MODELS["rope-gqa"])
    cache = KVCache(model.config.n_layer, 6)
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4, 5]]), cache=cache)
        assert tuple(cache.keys[0].shape) == (1, 2, 6, 8)       # n_kv_head = 2 heads of 8
        with pytest.raises(ValueError, match="cannot hold 7"):
            model(torch.tensor([[1, 2]]), cache=cache)
    wide = tiny_model(**MODELS["rope-head-dim-qknorm"])
    cache = KVCache(wide.config.n_layer, 6)
    with torch.no_grad():
        wide(torch.tensor([[1, 2, 3]]), cache=cache)
    assert tuple(cache.keys[0].shape) == (1, 2, 6, 12)          # 2 heads of head_dim = 12


def test_evaluation_samples_come_from_the_generator(tiny):
    """Trainer.sample (the samples at each evaluation and "sample now") gives the
    tokens of the recompute oracle with its own seeded generator, past the context too."""
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    trainer = Trainer(load_config(None, tiny + ["eval.temperature=1.0", "eval.top_k=0"]))
    setup = trainer.setup()
    text = trainer.sample("The ", 40)                  # block_size 16: past the context
    c = setup.config
    ids = setup.tokenizer.encode("The ", strict=False)
    generator = torch.Generator().manual_seed(c.run.seed + trainer.state.step)
    oracle = recompute_tokens(setup.raw_model.eval(), torch.tensor([ids]), 40, 1.0, None, generator)
    assert text == setup.tokenizer.decode(oracle[0].tolist()) and len(text) == 40
