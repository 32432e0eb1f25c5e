"""A saved checkpoint, loaded for inference (`llmtui sample`, `eval`, `export` and the app).

`load_checkpoint_model` is the one loader: a checkpoint directory is loaded or
refused; a Hugging Face model folder (config.json + safetensors + tokenizer.json)
or "hf:ORG/NAME" is imported (engine.inference.import_hf); a run directory gives its newest checkpoint that loads, each damaged
one skipped with the same "skipped damaged checkpoint: ..." warning `--resume`
gives. Everything a manifest cannot vouch for is checked before the model is
built (a crafted checkpoint can carry a recomputed manifest): state.json's
schema and finite tensors (engine.training.checkpoint.load), the config's
model against the weights' shapes on the meta device, then the memory the
model needs against what the device has, as training checks it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from llmtui.engine.config.loading import config_from_dict
from llmtui.engine.config.schema import Config, field_spec
from llmtui.engine.data.tokenizers import CharTokenizer, IdTokenizer, Tokenizer, tokenizer_from_json
from llmtui.engine.errors import CheckpointError, UserError
from llmtui.engine.model import import_hf
from llmtui.engine.model.gpt import GPT, gpt_config
from llmtui.engine.planning.autotune import REFUSE_MEMORY_FACTOR, gib, placement_target
from llmtui.engine.planning.device import Placement, resolve_device
from llmtui.engine.planning.sizing import activation_bytes, count_params, kv_cache_bytes
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.snapshot import check_model_state, load_model_state

Warn = Callable[[str], None]

# one forward pass scores at most this many tokens (engine.inference.evaluate's batches),
# with fp32 logits of at most LOGITS_BYTES
FORWARD_TOKENS = 8192
LOGITS_BYTES = 256 << 20


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or a run directory (its newest intact checkpoint)."""
    path = Path(path)
    if (path / ckpt.MANIFEST).exists():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run or checkpoint directory")
    found, notes = ckpt.latest_intact(path)
    if found is None:
        detail = f" ({notes[0]})" if notes else ""
        raise CheckpointError(f"{path}: no intact checkpoint found{detail}")
    return found


@dataclass
class LoadedModel:
    """A checkpoint ready for inference: the model in eval mode, its tokenizer and config."""

    model: GPT
    tokenizer: Tokenizer
    config: Config
    path: Path          # the checkpoint directory
    # what loading has to say: damaged checkpoints skipped, a device that was not available
    warnings: list[str] = field(default_factory=list)
    step: int | None = None   # the training step the checkpoint holds (None: a Hugging Face folder)

    def describe(self) -> str:
        """Which weights these are, for a front end to say: `checkpoints/x/best (step 250)`."""
        return f"{self.path} (step {self.step:,})" if self.step is not None else str(self.path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_checkpoint_model(path: Path, device: str = "auto", *, force: bool = False) -> LoadedModel:
    """The model (eval mode), tokenizer and config of a checkpoint, or of a run's newest
    checkpoint that loads (damaged ones skipped, each named in `warnings`). `force` builds
    a model even when its estimated memory is far beyond what the device has free."""
    path = Path(path)
    if (path / ckpt.MANIFEST).exists():
        return _load(path, device, force)
    if str(path).startswith("hf:") or import_hf.is_hf_folder(path):
        return load_hf_folder(import_hf.resolve_source(str(path)), device, force=force)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run or checkpoint directory")
    skipped: list[str] = []
    for found, note in ckpt.intact_newest_first(path):
        if found is not None:
            try:
                loaded = _load(found, device, force)
            except CheckpointError as exc:
                note = str(exc)
            else:
                loaded.warnings[:0] = [f"skipped damaged checkpoint: {n}" for n in skipped]
                return loaded
        skipped.append(note)
    detail = f" ({len(skipped)} damaged, the newest: {skipped[0]})" if skipped else ""
    raise CheckpointError(f"{path}: no intact checkpoint found{detail}")


def _load(path: Path, device: str, force: bool) -> LoadedModel:
    """One checkpoint directory, or CheckpointError when anything in it is damaged."""
    loaded = ckpt.load(path)
    source = path / "config.toml"
    try:
        cfg = config_from_dict(tomllib.loads(loaded.config_toml), str(source))
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{source}: not valid TOML ({exc})") from None
    except UserError as exc:         # a value the schema refuses: the file was edited
        raise CheckpointError(str(exc)) from None
    try:
        tokenizer = tokenizer_from_json(loaded.tokenizer)
    except (UserError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / 'tokenizer.json'}: {exc}") from None
    try:
        shape = gpt_config(cfg, tokenizer.vocab_size)
    except UserError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    with torch.device("meta"):       # the config's model, checked against the weights unallocated
        check_model_state(GPT(shape), loaded.model_state, str(path))
    torch_device, notes = resolve_device(device)
    warnings = [device_warning(device)] if notes else []
    check_memory(path, cfg, shape.vocab_size, torch_device, force)
    model = GPT(shape)
    load_model_state(model, loaded.model_state, str(path))
    return LoadedModel(model.to(torch_device).eval(), tokenizer, cfg, path, warnings,
                       step=loaded.state.run.step)


def load_hf_folder(folder: Path, device: str = "auto", *, force: bool = False) -> LoadedModel:
    """A Hugging Face model folder (engine.model.import_hf), refused with one line before
    anything is allocated when a config.json field is not mapped, a weight does not fit,
    or its memory is far beyond what the device has (unless `force`)."""
    model = import_hf.read_model(folder)
    tokenizer = import_hf.hf_tokenizer(model)
    cfg = import_hf.hf_config(model)
    shape = gpt_config(cfg, tokenizer.vocab_size)
    torch_device, notes = resolve_device(device)
    check_memory(folder, cfg, shape.vocab_size, torch_device, force)
    weights = import_hf.llmtui_state_dict(model, import_hf.read_weights(folder), shape)
    with torch.device("meta"):
        check_model_state(GPT(shape), weights, str(folder))
    gpt = GPT(shape)
    load_model_state(gpt, weights, str(folder))
    warnings = [device_warning(device)] if notes else []
    return LoadedModel(gpt.to(torch_device).eval(), tokenizer, cfg, folder, warnings)


def inference_memory(cfg: Config, vocab: int, kind: str) -> int:
    """Estimated bytes to hold a model and run one forward pass of up to FORWARD_TOKENS
    tokens in fp32 without autograd: the weights, one layer's tensors (without autograd
    each layer's are freed before the next), the logits with their log-softmax, and
    generation's KV cache (keys and values of every layer for block_size positions)."""
    m = cfg.model
    n, _ = count_params(m, vocab)
    tokens = max(1, min(FORWARD_TOKENS, LOGITS_BYTES // (4 * vocab)))
    batch = max(1, tokens // m.block_size)
    one_layer = dataclasses.replace(m, n_layer=1, gradient_checkpointing=False)
    return (4 * n + activation_bytes(one_layer, batch, kind, "fp32") + 12 * tokens * vocab
            + kv_cache_bytes(m, m.block_size))


def device_warning(device: str) -> str:
    """What to say when `device` asked for CUDA and this torch cannot use it."""
    reason = "CPU-only build" if torch.version.cuda is None else "no usable GPU or driver"
    return (f'device "{device}" asked for, but this torch build cannot use CUDA '
            f"({reason}); running on CPU")


def check_memory(path: Path, cfg: Config, vocab: int, device: torch.device, force: bool) -> None:
    """Refuse before allocating a model whose estimated memory is far beyond what the device
    has free (the factor training refuses at; `force` loads anyway)."""
    target = placement_target(Placement(device, "fp32"))
    need = inference_memory(cfg, vocab, device.type)
    if force or target.memory is None or need <= REFUSE_MEMORY_FACTOR * target.memory:
        return
    raise UserError(f"{path}: will not fit: its model needs an estimated {gib(need)} to load and "
                    f"run, over {REFUSE_MEMORY_FACTOR:g}x the {gib(target.memory)} available on "
                    f"{target.label}; pass --force to try anyway")


def check_temperature(value: float) -> float:
    """`value` when it is 0 (greedy) or in eval.temperature's range, else UserError."""
    spec = field_spec("eval.temperature")
    assert spec.min is not None and spec.max is not None   # the schema gives its range
    if not (value == 0 or spec.min <= value <= spec.max):    # NaN fails both
        raise UserError(f"temperature {value!r} is not allowed; expected 0 (greedy) or a number "
                        f">= {spec.min:g} and <= {spec.max:g}")
    return value


def encode_prompt(tokenizer: Tokenizer, prompt: str) -> tuple[list[int], str | None]:
    """The prompt's token ids, and a warning naming the characters a char vocabulary does
    not hold (they are dropped) or None."""
    ids = tokenizer.encode(prompt, strict=False)
    if isinstance(tokenizer, IdTokenizer):
        dropped = [w for w in prompt.split() if not tokenizer.is_id(w)]
        if not dropped:
            return ids, None
        return ids, (f"prompt: dropped {len(dropped):,} word(s) that are not token ids below "
                     f"{tokenizer.vocab_size} (first {dropped[0][:40]!r}): this model was trained on "
                     'bare token ids, so a prompt is ids written out ("17 905 3")')
    if not isinstance(tokenizer, CharTokenizer) or len(ids) == len(prompt):
        return ids, None
    missing = [c for c in prompt if c not in tokenizer]
    distinct = list(dict.fromkeys(missing))
    shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in distinct[:8]) + (", ..." if len(distinct) > 8 else "")
    return ids, (f"prompt: dropped {len(missing):,} character(s) the char vocabulary of "
                 f"{tokenizer.vocab_size} does not hold: {shown}")


def sample_from_checkpoint(path: Path, prompt: str, max_tokens: int, **options) -> str:
    """The continuation of `prompt` (samples_from_checkpoint's first)."""
    return samples_from_checkpoint(path, prompt, max_tokens, **options)[0]


def samples_from_checkpoint(path: Path, prompt: str, max_tokens: int, *, count: int = 1,
                            temperature: float = 0.8, top_k: int | None = 200, seed: int = 1337,
                            device: str = "auto", force: bool = False, warn: Warn | None = None,
                            loaded_from: Callable[[LoadedModel], None] | None = None) -> list[str]:
    """`count` continuations of `prompt`, one after another from one seeded generator (as
    nanoGPT's sample.py draws its num_samples); `warn` is told what loading and encoding the
    prompt had to say (damaged checkpoints skipped, the device, dropped characters), and
    `loaded_from` which checkpoint was loaded (a run directory names none)."""
    check_temperature(temperature)
    loaded = load_checkpoint_model(path, device, force=force)
    model, tokenizer = loaded.model, loaded.tokenizer
    ids, dropped = encode_prompt(tokenizer, prompt)
    for message in loaded.warnings + ([dropped] if dropped else []):
        if warn is not None:
            warn(message)
    if loaded_from is not None:
        loaded_from(loaded)
    ids = ids or [0]
    dev = next(model.parameters()).device
    idx = torch.tensor([ids[-model.config.block_size:]], dtype=torch.long, device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    texts = []
    for _ in range(count):
        out = model.generate(idx, max_tokens, temperature=temperature, top_k=top_k or None, generator=gen)
        texts.append(tokenizer.decode(out[0, idx.size(1):].tolist()))
    return texts
