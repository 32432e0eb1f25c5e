"""Every llmtui tokenizer as a Hugging Face tokenizer.json, built with `tokenizers`.

- char: a BPE model whose vocabulary is the characters (ids unchanged) and which
  has no merges, so text splits into characters; characters outside the
  vocabulary are dropped, as llmtui's own encode(strict=False) does. The Fuse
  decoder joins tokens without the spaces a plain decode would put between them.
- bpe (a tiktoken encoding): a byte-level BPE with the encoding's ids. tiktoken
  merges the adjacent pair whose concatenation has the lowest rank; a BPE model
  merges the pair listed first. Listing every split (left, right) of every
  token, ordered by the token's rank, makes the two the same procedure.
- trained: its own tokenizer.json.

`tokenizer_files` gives the files transformers' AutoTokenizer reads (no custom
code); `BpeVocabulary` gives GGUF's token and merge lists.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from llmtui.engine.data.tokenizers import BpeTokenizer, CharTokenizer, IdTokenizer, Tokenizer, TrainedTokenizer
from llmtui.engine.errors import UserError

# tiktoken encodings whose split pattern is GPT-2's (tokenizers' ByteLevel regex)
GPT2_PATTERN_ENCODINGS = ("gpt2", "r50k_base", "p50k_base", "p50k_edit")


@functools.cache
def byte_spelling() -> dict[int, str]:
    """GPT-2's printable spelling of each byte: printable Latin-1 bytes stand for
    themselves, the others are shifted past U+0100 in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    spelling, shift = {}, 0
    for b in range(256):
        if b in printable:
            spelling[b] = chr(b)
        else:
            spelling[b] = chr(256 + shift)
            shift += 1
    return spelling


def spell(data: bytes) -> str:
    table = byte_spelling()
    return "".join(table[b] for b in data)


def hf_tokenizer_json(tokenizer: Tokenizer) -> dict:
    """The tokenizer.json (as a dict) that encodes and decodes as `tokenizer` does."""
    if isinstance(tokenizer, TrainedTokenizer):
        return tokenizer.hf_json
    if isinstance(tokenizer, CharTokenizer):
        return _char_json(tokenizer)
    if isinstance(tokenizer, BpeTokenizer):
        return _tiktoken_json(tokenizer)
    if isinstance(tokenizer, IdTokenizer):
        raise UserError(BARE_IDS_EXPORT)
    raise UserError(f"tokenizer kind {tokenizer.kind!r} cannot be exported")


BARE_IDS_EXPORT = ("the model was trained on bare token ids (a .bin/.npy source with no vocabulary "
                   "beside it): there is no tokenizer to export with it; train with tokenizer.path "
                   "set to the tokenizer.json that made the ids, or a meta.json beside them")


def _char_json(tokenizer: CharTokenizer) -> dict:
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers import decoders, models

    vocab = {c: i for i, c in enumerate(tokenizer.chars)}
    hf = HfTokenizer(models.BPE(vocab=vocab, merges=[]))
    hf.decoder = decoders.Fuse()
    return json.loads(hf.to_str())


def _tiktoken_json(tokenizer: BpeTokenizer) -> dict:
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HfTokenizer

    bpe = BpeVocabulary.of(tokenizer)
    vocab = {token: i for i, token in bpe.tokens.items() if i not in bpe.special}
    hf = HfTokenizer(models.BPE(vocab=vocab, merges=bpe.merges))
    if tokenizer.encoding in GPT2_PATTERN_ENCODINGS:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(bpe.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for _, t in sorted(bpe.special.items())])
    return json.loads(hf.to_str())


@dataclass
class BpeVocabulary:
    """A byte-level BPE as token and merge lists: what GGUF stores."""

    tokens: dict[int, str]           # id -> token in GPT-2's byte spelling (special tokens as written)
    merges: list[tuple[str, str]]    # in priority order
    special: dict[int, str]          # id -> special token
    pattern: str                     # the split pattern (tiktoken's), "" for GPT-2's

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> "BpeVocabulary":
        if isinstance(tokenizer, BpeTokenizer):
            return _from_tiktoken(tokenizer)
        if isinstance(tokenizer, TrainedTokenizer):
            return _from_hf(tokenizer)
        raise UserError(f'tokenizer.kind = "{tokenizer.kind}" has no byte-level BPE vocabulary')


def _from_tiktoken(tokenizer: BpeTokenizer) -> BpeVocabulary:
    enc = tokenizer._enc
    ranks: dict[bytes, int] = enc._mergeable_ranks
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], left, right))
    merges.sort()
    return BpeVocabulary(
        tokens={rank: spell(token) for token, rank in ranks.items()} | {
            i: t for t, i in enc._special_tokens.items()},
        merges=[(spell(left), spell(right)) for *_, left, right in merges],
        special={i: t for t, i in enc._special_tokens.items()},
        pattern="" if tokenizer.encoding in GPT2_PATTERN_ENCODINGS else enc._pat_str)


def _from_hf(tokenizer: TrainedTokenizer) -> BpeVocabulary:
    model = tokenizer.hf_json.get("model") or {}
    pre = tokenizer.hf_json.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True) \
            or pre.get("add_prefix_space") or tokenizer.hf_json.get("normalizer"):
        raise UserError("the tokenizer is not a plain byte-level BPE (as llmtui trains them), so it "
                        "has no GGUF form; export --format hf instead")
    merges = [_merge_pair(m) for m in model.get("merges", [])]
    vocab = tokenizer.vocabulary()
    added = {t["id"]: t["content"] for t in tokenizer.hf_json.get("added_tokens") or []}
    return BpeVocabulary(tokens={i: t for t, i in vocab.items()}, merges=merges, special=added, pattern="")


def _merge_pair(merge: str | list[str]) -> tuple[str, str]:
    """One merge of tokenizer.json: "a b" (older files) or ["a", "b"] (newer ones)."""
    left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
    return left, right


def tokenizer_files(tokenizer: Tokenizer, model_max_length: int) -> dict[str, str]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json for an export."""
    hf_json = hf_tokenizer_json(tokenizer)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        # decode must give back the text exactly: no tidying of spaces before punctuation
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        "model_max_length": model_max_length,
    }
    special = {}
    if tokenizer.eot_token is not None:
        eot = tokenizer.decode([tokenizer.eot_token])
        special = {"bos_token": eot, "eos_token": eot}
        config |= special
    return {"tokenizer.json": json.dumps(hf_json, ensure_ascii=False, indent=1),
            "tokenizer_config.json": json.dumps(config, ensure_ascii=False, indent=1),
            "special_tokens_map.json": json.dumps(special, ensure_ascii=False, indent=1)}
