"""Other trainers' key names, read as llmtui's: the Rust training crate's (source document
002) config and `--override` paths, and the two names of 000's train.py that differ from
llmtui's, so their users' files and commands work as they are.

    [data] train_shards = [...]          ->  data.source (the first), data.sources (the rest)
    [runtime.checkpoint] max_keep = 3    ->  checkpoint.keep_last = 3

llmtui's own names are what it writes (`llmtui config FILE` prints a config file in them) and
what its forms edit; these are only read. No torch here.
"""

from __future__ import annotations

import re
from typing import Any

# 002's key path -> llmtui's; "[i]" names a list item
RUST_KEYS = {
    "tokenizer.tokenizer_json": "tokenizer.path",          # and tokenizer.kind = "trained"
    "data.train_shards": "data.source",                    # a list: the first; the rest data.sources
    "data.validation_shards": "data.val_source",           # a list: val_source and val_sources
    "data.batch_size": "training.batch_size",
    "data.gradient_accumulation_steps": "training.grad_accum_steps",
    "optimizer.beta1": "optimizer.betas[0]",
    "optimizer.beta2": "optimizer.betas[1]",
    "optimizer.epsilon": "optimizer.eps",
    "scheduler.strategy": "scheduler.kind",
    "scheduler.total_steps": "training.max_steps",
    "runtime.seed": "run.seed",
    "runtime.log_every_n_steps": "logging.every_n_steps",
    "runtime.checkpoint.directory": "run.out_dir",
    "runtime.checkpoint.every_n_steps": "checkpoint.every_n_steps",
    "runtime.checkpoint.max_keep": "checkpoint.keep_last",
    "runtime.evaluation.every_n_steps": "eval.every_n_steps",
    "runtime.evaluation.every_n_epochs": "eval.every_n_epochs",
    "runtime.evaluation.max_batches": "eval.max_batches",
    "runtime.evaluation.best.max_keep": "checkpoint.keep_best",
    "runtime.logging.tensorboard": "logging.tensorboard_dir",
    "runtime.logging.tensorboard_flush_every_n": "logging.tensorboard_flush_every_n",
    "model.hidden_size": "model.n_embd",
    "model.intermediate_size": "model.d_ff",
    "model.num_layers": "model.n_layer",
    "model.num_attention_heads": "model.n_head",
    "model.max_position_embeddings": "model.block_size",
}
# 000's (its [data] and [training] keys are llmtui's but these two)
FRENCH_KEYS = {
    "data.processed_dir": "data.prepared_dir",     # its data/processed layout (engine.data.prepare)
    "training.data_format": "data.source",         # "txt" or "bin": checked against data.source
}
# every other trainer's name -> llmtui's
KEYS = {**RUST_KEYS, **FRENCH_KEYS}
# training.data_format's values, and the data.source suffixes each stands for
DATA_FORMATS = {"txt": (".txt",), "bin": (".bin", ".npy")}

# 002's keys llmtui has nothing to set for; read and left alone (the README says why):
# batches are drawn at random offsets (no shuffle buffer), the best checkpoints live in the
# run's own `best` folder, and the console always has the log lines
NO_EFFECT = frozenset({"data.shuffle_buffer_size", "runtime.evaluation.best.directory",
                       "runtime.logging.enable_stdout"})
# the sections only 002 has, whose tables nest
FOREIGN_SECTIONS = frozenset({"runtime"})

_ITEM = re.compile(r"^(?P<path>.+)\[(?P<index>\d+)\]$")


def leaves(section: str, table: dict[str, Any]) -> list[tuple[str, Any]]:
    """('section.key' or 'runtime.sub.key', value) for each value of a 002 section's table,
    nested tables walked (llmtui's sections hold no tables)."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        path = f"{section}.{key}"
        if isinstance(value, dict) and section.partition(".")[0] in FOREIGN_SECTIONS:
            out += leaves(path, value)
        else:
            out.append((path, value))
    return out


def is_foreign(path: str) -> bool:
    """Whether `path` (section.key, maybe nested, maybe with [i]) is one of 002's or 000's names."""
    match = _ITEM.match(path)
    base = match["path"] if match else path
    return base in KEYS or base in NO_EFFECT


def translate(path: str, value: Any) -> list[tuple[str, Any]]:
    """llmtui's (path, value) settings for 002's `path` = `value` ([] for a key with no
    effect); a path may end in [i] (an --override of one list item), and so may the result."""
    match = _ITEM.match(path)
    base, index = (match["path"], int(match["index"])) if match else (path, None)
    if base in NO_EFFECT:
        return []
    target = KEYS[base]
    if base == "data.train_shards":
        if index is not None:   # train_shards[0] is data.source, [i] is data.sources[i-1]
            return [("data.source", value) if index == 0 else (f"data.sources[{index - 1}]", value)]
        if isinstance(value, list):
            return [("data.source", value[0] if value else ""), ("data.sources", value[1:])]
    if base == "tokenizer.tokenizer_json":
        return [("tokenizer.kind", "trained"), (target, value)]
    if base == "training.data_format":
        return []      # llmtui reads the format from data.source; loading checks they agree
    if index is not None:
        return [(f"{target}[{index}]", value)]
    return [(target, value)]


def check_data_format(fmt: Any, source: str) -> str | None:
    """000's training.data_format against data.source: None when they agree (llmtui reads the
    format from the source's name), else what is wrong, in words."""
    if fmt not in DATA_FORMATS:
        return f"training.data_format = {fmt!r} is not allowed; expected \"txt\" or \"bin\""
    is_tokens = source.lower().endswith(DATA_FORMATS["bin"])
    if fmt == "bin" and not is_tokens:
        return (f'training.data_format = "bin" (000\'s) but data.source = "{source}" is not a .bin/.npy '
                'token file; llmtui reads the format from data.source: set it to your train.bin '
                '(its val.bin and meta.json beside it)')
    if fmt == "txt" and is_tokens:
        return (f'training.data_format = "txt" (000\'s) but data.source = "{source}" is a token file; '
                "llmtui reads the format from data.source: drop data_format or give a text source")
    return None
