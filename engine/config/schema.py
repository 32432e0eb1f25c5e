"""The config schema: the single source of truth for every setting.

Each section is a dataclass; each field carries its type (the annotation), its
default, the allowed range or choices and a help string. Validation, the TUI
forms, `llmtui config --reference` and the README reference table are all
derived from these definitions, so a setting is described exactly once.

Key names are part of the interface (user configs, scripts and docs use
them): add new keys beside the existing ones, never rename them.
"""

from __future__ import annotations

import builtins
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

Auto = Literal["auto"]   # a setting with auto=True may say "auto": chosen at run time (config.resolved)


def spec(default: Any, help: str, *, min: float | None = None, max: float | None = None,
         choices: tuple | None = None, pattern: str | None = None,
         allowed: str | None = None, min_exclusive: bool = False, auto: bool = False,
         flags: tuple[str, ...] = (), flag_values: dict[str, str] | None = None):
    """A schema field: default, help text and the allowed values.

    `allowed` is a human description used in error messages when the rule is
    not a simple range or choice list (for example device strings).
    `auto` lets the field also take the string "auto" (resolved at run time).
    `flags` are the command-line flags of `llmtui --run` that set it: "--name"
    takes a value, "--name=VALUE" is a switch that sets VALUE (the flags the
    source documents' trainers use; each also answers to its snake_case spelling).
    `flag_values` are other words those flags take for a value ("float16" for "fp16").
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices,
            "pattern": pattern, "allowed": allowed,
            "min_exclusive": min_exclusive, "auto": auto, "flags": tuple(flags),
            "flag_values": dict(flag_values or {})}
    if isinstance(default, (list, tuple)):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    name: str = spec("llmtui-run", "Run name; the run directory is <out_dir>/<name>.",
                     pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
                     allowed="letters, digits, '.', '_' or '-' (1-100 characters)")
    out_dir: str = spec("checkpoints", "Folder that holds run directories (relative paths are "
                        "relative to the current directory).")
    seed: int = spec(1337, "Seed for model init, batch sampling and dropout.", min=0, max=2**32 - 1)
    device: str = spec("auto", "Where to train: auto picks CUDA when torch can use it, else an Apple "
                       "GPU (mps), else CPU.",
                       pattern=r"^(auto|cpu|cuda|cuda:\d+|mps)$", allowed="auto, cpu, cuda, cuda:N or mps")
    threads: int = spec(0, "CPU threads for PyTorch's math (0 = one per physical core).",
                        min=0, max=1024)


@dataclass
class DataConfig:
    source: str = spec("builtin", "Corpus: a text file, a folder of .txt files, a .jsonl/.json/.csv/"
                       ".parquet file of records, a Hugging Face dataset (\"hf:ORG/NAME\" or a folder "
                       "written by save_to_disk), a pre-tokenized .bin/.npy file, or \"builtin\" "
                       "(Python's bundled documentation, offline).",
                       flags=("--train-data", "--data"))
    sources: list[str] = spec([], "More corpora, concatenated after `source` (same kinds as source).")
    val_source: str = spec("", "Optional separate validation corpus (a list is taken as val_source "
                           "and val_sources); when empty the last `val_fraction` of the tokens is "
                           "held out.", allowed="a path, or a list of paths", flags=("--val-data",))
    val_sources: list[str] = spec([], "More validation corpora (validation shards), concatenated "
                                  "after `val_source`.")
    text_field: str = spec("text", "Field of a record (.jsonl/.json/.csv/.parquet, datasets) that "
                           "holds its text; a record without it but with a chat \"messages\" list "
                           "is joined as one \"role: content\" line per message.",
                           pattern=r"^[^\x00-\x1f]{1,200}$", allowed="a field name (1-200 characters)")
    split: str = spec("train", "Split of a Hugging Face dataset (data.source = \"hf:ORG/NAME\" or a "
                      "save_to_disk folder of several splits).",
                      pattern=r"^[A-Za-z0-9_.\-\[\]:%+]{1,100}$",
                      allowed="a split name such as train, test or train[:10%]")
    val_fraction: float = spec(0.1, "Share of the tokens held out for validation.",
                               min=0.0, max=0.5, min_exclusive=True)
    prepared_dir: str = spec("data", "Folder for prepared token files (train.bin, val.bin, meta.json).")
    bin_dtype: str = spec("auto", "Token dtype of a raw .bin source (auto reads meta.json beside it, "
                          "else uint16).", choices=("auto", "uint16", "uint32"))


@dataclass
class TokenizerConfig:
    kind: str = spec("char", "char: one token per character (vocabulary built from the corpus); "
                     "bpe: a tiktoken encoding; trained: a byte-level BPE trained on the corpus "
                     "(or loaded from `path`).", choices=("char", "bpe", "trained"))
    encoding: str = spec("gpt2", "tiktoken encoding name used when kind = \"bpe\".",
                         pattern=r"^[A-Za-z0-9_.-]+$", allowed="a tiktoken encoding name such as gpt2")
    vocab_size: int = spec(8192, "Tokens of the trained BPE (kind = \"trained\"): the 256 byte "
                           "tokens, the special tokens and the merges learned from the corpus.",
                           min=256, max=1_000_000, flags=("--vocab-size",))
    special_tokens: list[str] = spec(["<|endoftext|>"], "Special tokens of the trained BPE; the "
                                     "first one is inserted between documents (files, records). A "
                                     "string is the path of a file of them, one per line.",
                                     allowed="a list of strings, or the path of a file of them")
    path: str = spec("", "An existing tokenizer.json to use instead of making one from the corpus "
                     "(empty = make it): for kind = \"trained\" a Hugging Face one or an llmtui "
                     "checkpoint's; for kind = \"char\" an llmtui checkpoint's (its characters).")
    retrain: bool = spec(False, "Tokenize the corpus (and train the tokenizer) again even when "
                         "prepared files with the same settings exist.", flags=("--retrain-tokenizer=true",))


@dataclass
class ModelConfig:
    n_layer: int = spec(4, "Transformer blocks.", min=1, max=96, flags=("--n-layer", "--num-layers"))
    n_head: int = spec(4, "Attention heads per block; must divide n_embd (unless head_dim is set).", min=1, max=128,
                       flags=("--n-head", "--num-heads"))
    n_kv_head: int = spec(0, "Key/value heads per block, shared by groups of query heads "
                          "(grouped-query attention: a smaller KV cache; 0 = n_head, plain multi-head "
                          "attention); must divide n_head.", min=0, max=128, flags=("--n-kv-head",))
    head_dim: int = spec(0, "Width of each attention head (0 = n_embd / n_head); Qwen3 sets its own "
                         "(0.6B: 16 heads of 128 in a 1,024-wide model). Even with rotary positions.",
                         min=0, max=1024, flags=("--head-dim",))
    n_embd: int = spec(128, "Embedding (model) width.", min=8, max=16384, flags=("--n-embd", "--d-model"))
    block_size: int = spec(64, "Context length in tokens.", min=2, max=65536, flags=("--block-size", "--context-length"))
    d_ff: int = spec(0, "MLP hidden width (0 = 4 * n_embd; with mlp = \"swiglu\" 8/3 * n_embd, rounded "
                     "up to a multiple of 8, for the same weights).", min=0, max=262144, flags=("--d-ff",))
    dropout: float = spec(0.0, "Dropout probability during training.", min=0.0, max=0.9, flags=("--dropout",))
    bias: bool = spec(False, "Bias terms in Linear and LayerNorm layers.")
    pos_encoding: str = spec("learned", "Position encoding: learned absolute embeddings or rotary (RoPE).",
                             choices=("learned", "rope"))
    rope_theta: float = spec(10000.0, "RoPE base frequency (pos_encoding = \"rope\").",
                             min=1.0, max=1e9, flags=("--rope-theta",))
    tie_embeddings: bool = spec(True, "Share the token embedding with the output head.")
    vocab_size: int = spec(0, "Vocabulary size (0 = the tokenizer's; a larger value pads it).",
                           min=0, max=1_000_000)
    gradient_checkpointing: bool = spec(False, "Recompute activations in backward to save memory.")
    norm: str = spec("layernorm", "Normalization in the blocks and before the head: layernorm "
                     "(nanoGPT) or rmsnorm (no mean, no bias).", choices=("layernorm", "rmsnorm"))
    mlp: str = spec("gelu", "MLP: gelu (exact), gelu_tanh (GPT-2's tanh approximation), relu2 (squared "
                    "ReLU) or swiglu (gated SiLU, three matrices).", choices=("gelu", "gelu_tanh", "relu2", "swiglu"))
    qk_norm: bool = spec(False, "RMSNorm each attention head's queries and keys (QK-norm): bounded "
                         "attention logits, stable at higher learning rates.")
    norm_eps: float = spec(1e-5, "Epsilon of every norm (blocks, head, QK-norm); imported models bring "
                           "their own (Qwen: 1e-6).", min=0.0, max=0.1, min_exclusive=True)
    qkv_bias: bool = spec(False, "Bias on the query/key/value projection only (Qwen2), whatever "
                          "model.bias says.")
    init_from: str = spec("scratch", "Start weights: scratch (random), an llmtui run or checkpoint folder, "
                          "a Hugging Face model folder (config.json + safetensors) or \"hf:ORG/NAME\" "
                          "(downloaded into the Hugging Face cache; needs the hf extra). The "
                          "architecture and tokenizer come from it.", flags=("--init-from",))


@dataclass
class TrainingConfig:
    batch_size: int | Auto = spec(12, "Sequences per micro-batch (\"auto\": the largest that fits the "
                           "device's free memory, see target_tokens_per_step).", min=1, max=65536,
                           auto=True, flags=("--batch-size",))
    grad_accum_steps: int | Auto = spec(1, "Micro-batches accumulated per optimizer step "
                                 "(effective batch = batch_size * grad_accum_steps; \"auto\": "
                                 "as many as reach target_tokens_per_step).", min=1, max=65536,
                                 auto=True, flags=("--grad-accum-steps",))
    target_tokens_per_step: int = spec(0, "Tokens per optimizer step that \"auto\" batch settings "
                                       "aim for (0 = the numeric batch settings times block_size, "
                                       "or 32 sequences when batch_size is \"auto\").",
                                       min=0, max=10**9)
    max_steps: int = spec(2000, "Optimizer steps to train (--max-iters sets this).", min=1, max=10**9)
    epochs: float = spec(0.0, "If > 0, train this many passes over the training tokens instead of "
                         "max_steps.", min=0.0, max=1e6, flags=("--epochs",))
    sampling: str = spec("shuffle", "Which windows of the training tokens make the batches: shuffle "
                         "(each pass over the data visits every window once, in a new order and at a "
                         "new random offset each pass) or random (windows drawn at random with "
                         "repeats, as nanoGPT's get_batch; not with training.epochs).",
                         choices=("shuffle", "random"))
    precision: str = spec("fp32", "Number format: fp32, mixed precision bf16/fp16 where the device "
                          "runs it fast (else fp32 with a warning), or auto: the fastest for this device "
                          "and model, picked at the start (bf16 on GPUs that have it, else fp16 where "
                          "fast; bf16 on CPUs with AMX for models 192 or more wide; else fp32).",
                          choices=("fp32", "bf16", "fp16", "auto"),
                          flags=("--use-amp=fp16", "--no-amp=fp32", "--dtype"),
                          flag_values={"float16": "fp16", "half": "fp16", "bfloat16": "bf16",
                                       "float32": "fp32", "float": "fp32"})
    grad_clip: float = spec(1.0, "Clip the global gradient norm to this (0 = off).", min=0.0, max=1e6, flags=("--grad-clip",))
    ema_decay: float = spec(0.0, "Evaluate, sample and save an exponential moving average of the weights "
                            "with this decay per step (0 = off: the weights as trained); 0.98 averages "
                            "about the last 50 steps: a lower val loss while the learning rate is high, "
                            "the same once it has decayed.", min=0.0, max=0.9999)
    parallel: str = spec("ddp", "Under torchrun: ddp (every process holds the whole model, gradients "
                         "averaged) or fsdp (FSDP2: weights, gradients and optimizer state sharded over "
                         "the processes, for models that do not fit one GPU; AdamW, bf16 or fp32).",
                         choices=("ddp", "fsdp"))
    compile: bool = spec(False, "torch.compile the model (slow first step, can be faster after).",
                         flags=("--compile=true", "--no-compile=false"))
    early_stopping: bool = spec(False, "Stop when val loss has not improved for `patience` evaluations.")
    early_stopping_patience: int = spec(3, "Evaluations without improvement before stopping.",
                                        min=1, max=100000)
    early_stopping_min_delta: float = spec(0.001, "Smallest val loss decrease that counts as improvement.",
                                           min=0.0, max=100.0)
    save_best: bool = spec(True, "Keep a `best` checkpoint of the lowest val loss.")


@dataclass
class OptimizerConfig:
    name: str = spec("adamw", "adamw (decoupled weight decay), adam, or muon (Muon, torch.optim.Muon's "
                     "algorithm, for the blocks' matrices, AdamW for embeddings, head, gains and biases).",
                     choices=("adamw", "adam", "muon"))
    learning_rate: float = spec(1e-3, "Peak learning rate (muon: of the blocks' matrices, scaled to "
                                "AdamW's update size).", min=0.0, max=10.0, min_exclusive=True, flags=("--learning-rate", "--lr"))
    embedding_learning_rate: float = spec(0.0, "muon only: peak learning rate of the token and position "
                                          "embeddings (a tied head too), AdamW (0 = learning_rate).",
                                          min=0.0, max=10.0)
    head_learning_rate: float = spec(0.0, "muon only: peak learning rate of an untied output head, "
                                     "AdamW (0 = learning_rate).", min=0.0, max=10.0)
    gain_learning_rate: float = spec(0.0, "muon only: peak learning rate of norm gains and biases, "
                                     "AdamW (0 = learning_rate).", min=0.0, max=10.0)
    muon_momentum: float = spec(0.95, "muon only: Muon's (Nesterov) momentum.", min=0.0, max=0.999)
    muon_beta2: float = spec(0.0, "muon only: NorMuon's decay of each neuron's mean squared update "
                             "(0 = off, Muon as PyTorch's). Each row of an orthogonalized update (column "
                             "of a wide matrix) is divided by its running RMS, then the update is scaled "
                             "back to Muon's size: the same step, spread evenly over the neurons. 0.95 is "
                             "NorMuon's.", min=0.0, max=0.9999)
    betas: list[float] = spec([0.9, 0.99], "Adam beta1 and beta2.", min=0.0, max=1.0)
    eps: float = spec(1e-8, "Adam epsilon.", min=0.0, max=1.0, min_exclusive=True)
    weight_decay: float = spec(0.1, "Weight decay on weight matrices and embeddings (never on biases or norm gains).",
                               min=0.0, max=10.0)


@dataclass
class SchedulerConfig:
    kind: str = spec("cosine", "Learning rate after warmup: cosine or linear decay, constant, or wsd "
                     "(warmup-stable-decay: constant, then a linear decay over the last decay_fraction "
                     "of the run; a run extended before its decay keeps its learning rate).",
                     choices=("cosine", "linear", "constant", "wsd"))
    warmup_steps: int = spec(100, "Linear warmup steps from 0 to learning_rate.", min=0, max=10**9, flags=("--warmup-steps",))
    min_learning_rate: float = spec(1e-4, "Learning rate at the end of the decay.", min=0.0, max=10.0,
                                    flags=("--min-learning-rate", "--min-lr"))
    min_lr_ratio: float = spec(0.0, "Learning rate at the end of the decay as a share of "
                               "optimizer.learning_rate (LLMBuilder's min_lr_ratio; 0 = use "
                               "min_learning_rate; set one of the two).", min=0.0, max=1.0)
    decay_steps: int = spec(0, "Step at which decay reaches min_learning_rate (0 = max_steps).",
                            min=0, max=10**9)
    decay_fraction: float = spec(0.2, "wsd only: share of the run (up to decay_steps) spent decaying "
                                 "to min_learning_rate.", min=0.0, max=1.0, min_exclusive=True)


@dataclass
class EvalConfig:
    every_n_steps: int = spec(250, "Evaluate on validation data every N steps (and at the end).",
                              min=1, max=10**9)
    max_batches: int = spec(20, "Validation batches per evaluation (a fixed, evenly spread slice).",
                            min=1, max=100000)
    every_n_epochs: float = spec(0.0, "If > 0, evaluate every this many passes over the training "
                                 "tokens instead of every_n_steps.", min=0.0, max=1e6)
    sample_tokens: int = spec(0, "Generate a text sample of this many tokens at each evaluation (0 = off).",
                              min=0, max=100000)
    sample_prompt: str = spec("\n", "Prompt for the samples generated at evaluations.")
    # at least 0.01: logits divided by less overflow to infinity (in fp16 from 655 up), and
    # sampling from them fails; lower temperatures are greedy in effect anyway
    temperature: float = spec(0.8, "Sampling temperature.", min=0.01, max=10.0)
    top_k: int = spec(200, "Sample only from the k most likely tokens (0 = all).", min=0, max=1_000_000)


@dataclass
class CheckpointConfig:
    every_n_steps: int = spec(500, "Save a step_N checkpoint every N steps (0 = only last/best).",
                              min=0, max=10**9)
    keep_last: int = spec(3, "How many step_N checkpoints to keep (older ones are deleted).",
                          min=1, max=100000)
    keep_best: int = spec(1, "How many best-by-val-loss checkpoints to keep.", min=1, max=1000)
    every_n_epochs: int = spec(0, "With training.epochs: save an epoch_N checkpoint every N epochs "
                               "(kept, never rotated; 0 = off).", min=0, max=10**6)


@dataclass
class LoggingConfig:
    every_n_steps: int = spec(10, "Print and record train metrics every N steps.", min=1, max=10**9)
    progress: str = spec("auto", "Headless output: auto (bar on a terminal, plain lines otherwise), "
                         "bar or plain.", choices=("auto", "bar", "plain"))
    tensorboard_dir: str = spec("", "Also write TensorBoard event files to this folder (needs the "
                                "tensorboard package; empty = off).")
    tensorboard_flush_every_n: int = spec(0, "Write TensorBoard's buffered records to disk every N "
                                          "logged train records (0 = its own timer, every 2 minutes).",
                                          min=0, max=10**9)
    wandb_project: str = spec("", "Also log to this Weights & Biases project (needs the wandb "
                              "package and a login; empty = off).", flags=("--wandb-project", "--use-wandb=llmtui"))
    wandb_run_name: str = spec("", "W&B run name (empty = run.name).", flags=("--wandb-run-name",))


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FieldSpec:
    """One setting, as the forms, validation and docs see it."""

    section: str
    name: str
    # `builtins.type`: in the class body the field `type` shadows the builtin
    type: builtins.type            # int, float, bool, str or list
    item_type: builtins.type | None  # element type of a list field
    default: Any
    help: str
    min: float | None
    max: float | None
    choices: tuple | None
    pattern: str | None
    allowed: str | None
    min_exclusive: bool
    auto: bool
    flags: tuple[str, ...] = ()
    flag_values: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"

    def describe_allowed(self) -> str:
        """Human text of the allowed values, used in error messages and docs."""
        if self.allowed:
            return self.allowed
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        if self.type is list:
            item = kind.get(self.item_type, "values") if self.item_type is not None else "values"
            base = f"a list of {item.split(' ', 1)[-1]}s"
        else:
            base = kind[self.type]
        if self.min is not None and self.max is not None:
            low = ">" if self.min_exclusive else ">="
            base += f" {low} {_num(self.min)} and <= {_num(self.max)}"
        elif self.min is not None:
            base += f" {'>' if self.min_exclusive else '>='} {_num(self.min)}"
        if self.auto:
            base += ' or "auto"'
        return base


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _section_classes() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


SECTIONS = _section_classes()


def _field_specs() -> dict[str, dict[str, FieldSpec]]:
    out: dict[str, dict[str, FieldSpec]] = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        out[section] = {}
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            origin = typing.get_origin(hint)
            if origin is list:
                typ, item = list, typing.get_args(hint)[0]
            elif origin in (typing.Union, types.UnionType):   # `int | Auto`: the number's type
                typ, item = next(a for a in typing.get_args(hint) if typing.get_origin(a) is not Literal), None
            else:
                typ, item = hint, None
            if f.default is not dataclasses.MISSING:
                default = f.default
            else:
                assert f.default_factory is not dataclasses.MISSING, f"{section}.{f.name} has no default"
                default = f.default_factory()
            m = f.metadata
            out[section][f.name] = FieldSpec(
                section=section, name=f.name, type=typ, item_type=item, default=default,
                help=m["help"], min=m["min"], max=m["max"], choices=m["choices"],
                pattern=m["pattern"], allowed=m["allowed"], min_exclusive=m["min_exclusive"],
                auto=m["auto"], flags=m.get("flags", ()), flag_values=m.get("flag_values", {}))
    return out


FIELDS: dict[str, dict[str, FieldSpec]] = _field_specs()


def field_spec(path: str) -> FieldSpec:
    section, _, name = path.partition(".")
    return FIELDS[section][name]


def all_fields():
    """Every FieldSpec, in schema order."""
    for section in FIELDS.values():
        yield from section.values()
