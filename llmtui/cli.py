"""Command line: `llmtui` (the app), `llmtui --run CONFIG` (headless) and tools.

Kept free of heavy imports at module level so that `llmtui --help` answers
at once; torch is imported only when a command trains or inspects models.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from llmtui.exits import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, fail, say, silence

DESCRIPTION = """\
Train small GPT-style language models on this machine.

  llmtui                              open the app (hardware, config wizard, live monitor)
  llmtui CONFIG.toml                  open the app on that config, in the wizard
  llmtui PRESET                       ... on a shipped preset (cpu, rtx4060, ...)
  llmtui --run CONFIG.toml            train headless from a config file or preset name
  llmtui --run cpu --max-iters 200    ... with quick overrides
  llmtui --epochs 10                  ... on the preset `llmtui detect` recommends (flags without --run)
  llmtui train [CONFIG] [flags]       the same as --run (LLMBuilder's `train model --data ... --output ...`)
  llmtui detect [--json]              show the hardware and the preset that fits it
  llmtui sample CHECKPOINT            generate text from a checkpoint (--temperature 0: greedy)
  llmtui eval CHECKPOINT --data FILE  loss, perplexity, accuracy, bits per byte on a file
  llmtui export CHECKPOINT OUT        a folder transformers loads (--format hf) or a GGUF (--format gguf)
  llmtui config [PRESET]              print a fully commented config
  llmtui runs [DIR] [--json]          list the runs in DIR (default checkpoints/)
  llmtui watch RUN_DIR                open the app on a run, live while it trains
"""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line, exit 2, without the usage dump."""

    def error(self, message):
        raise UsageError(message)


def run_parser() -> argparse.ArgumentParser:
    from llmtui.engine.config.schema import field_spec  # no torch: --help stays cheap

    p = _Parser(prog="llmtui", description=DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", "--config", metavar="CONFIG",
                   help="train headless from a TOML file or preset name (--config is the same)")
    p.add_argument("--override", "-o", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="set a config value (TOML syntax; lists as data.sources[0]=...); repeatable")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                   help="continue the run from its newest intact checkpoint, or from CHECKPOINT")
    p.add_argument("--resume-from", "--resume_from", metavar="CHECKPOINT",
                   help="continue the run from this checkpoint (same as --resume CHECKPOINT)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run's existing checkpoints and start over")
    p.add_argument("--force", action="store_true",
                   help="train even when the estimated memory is far beyond what the device has, "
                        "or a pretrained model (model.init_from) at a from-scratch learning rate")
    p.add_argument("--max-iters", "--max-steps", "--max_steps", type=int, metavar="N",
                   help="same as --override training.max_steps=N")
    p.add_argument("--device", choices=["cpu", "cuda", "mps", "auto"], help="same as --override run.device=...")
    kinds = field_spec("tokenizer.kind").choices
    p.add_argument("--tokenizer", type=tokenizer_flag, metavar="{" + ",".join(kinds or ()) + "} or PATH",
                   help="same as --override tokenizer.kind=...; a tokenizer.json, or a folder holding "
                        "one, is tokenizer.kind=trained with tokenizer.path set to it")
    p.add_argument("--output", type=output_flag, metavar="DIR",
                   help="the run directory: its parent becomes run.out_dir and its name run.name")
    p.add_argument("--plain", action="store_true", help="plain log lines instead of a progress bar")
    p.add_argument("--version", action="version", version=_version())
    add_schema_flags(p)
    return p


def _snake(flag: str) -> str:
    return "--" + flag[2:].replace("-", "_")


def _flag_dest(spec, index: int) -> str:
    return f"schema__{spec.section}__{spec.name}__{index}"


def add_schema_flags(p: argparse.ArgumentParser) -> None:
    """The source documents' flags (--batch-size, --n-layer, --d-model, --use-amp, ...),
    made from the schema's `flags`: each sets one key, is checked as the config checks
    it, and is listed under its section in --help."""
    from llmtui.engine.config.schema import FIELDS

    for section, fields in FIELDS.items():
        group = None
        for spec in fields.values():
            for index, flag in enumerate(spec.flags):
                group = group or p.add_argument_group(f"[{section}] settings")
                name, switch, const = flag.partition("=")
                names = [name] + ([_snake(name)] if _snake(name) != name else [])
                if switch:
                    value = _schema_value(spec, name)(const)
                    p_help = f"sets {spec.path} = {_toml(value)}"
                    group.add_argument(*names, dest=_flag_dest(spec, index), action="store_const",
                                       const=value, help=p_help)
                else:
                    group.add_argument(*names, dest=_flag_dest(spec, index), type=_schema_value(spec, name),
                                       metavar=spec.type.__name__.upper(),
                                       help=f"{spec.path}: {spec.help.split('. ')[0].rstrip('.')}")


def _schema_value(spec, flag: str):
    """An argparse type: the text as the schema's field takes it (a one-line error otherwise)."""
    def parse(text: str):
        from llmtui.engine.config.loading import coerce, parse_override_value
        from llmtui.engine.errors import ConfigError
        text = spec.flag_values.get(text, text)     # --dtype float16: the schema's "fp16"
        try:
            return coerce(spec, parse_override_value(text) if spec.type is not str else text, flag)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed for {spec.path}; expected "
                                             f"{exc.allowed or spec.describe_allowed()}") from None
    parse.__name__ = spec.type.__name__
    return parse


def _toml(value) -> str:
    import json
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def schema_flag_overrides(args) -> list[str]:
    """The overrides the schema's flags ask for; per key, switches first (`--use-wandb`)
    so that a flag with a value (`--wandb-project NAME`) wins."""
    from llmtui.engine.config.schema import all_fields

    out = []
    for spec in all_fields():
        chosen = [("=" not in flag, getattr(args, _flag_dest(spec, i), None))
                  for i, flag in enumerate(spec.flags)]
        for _, value in sorted((c for c in chosen if c[1] is not None), key=lambda c: c[0]):
            out.append(f"{spec.path}={_toml(value)}")
    return out


def _version() -> str:
    from llmtui import __version__
    return f"llmtui {__version__}"


def bounded(kind: type, low: float, high: float, *, low_open: bool = False):
    """An argparse type: a number of `kind` in [low, high] ((low, high] with low_open)."""
    name = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            low_text = f"> {low:g}" if low_open else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {name} {low_text} "
                                             f"and <= {high:g}")
        return value
    parse.__name__ = kind.__name__
    return parse


def device_name(text: str) -> str:
    """An argparse type: a device as run.device takes it (auto, cpu, cuda, cuda:N)."""
    from llmtui.engine.config.loading import coerce
    from llmtui.engine.config.schema import field_spec
    from llmtui.engine.errors import ConfigError
    try:
        return coerce(field_spec("run.device"), text, "--device")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected {exc.allowed}") from None


def temperature(text: str) -> float:
    """An argparse type: 0 (greedy) or a temperature in eval.temperature's range."""
    from llmtui.engine.errors import UserError
    from llmtui.engine.training.loader import check_temperature
    try:
        return check_temperature(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("temperature ")) from None


def warn(message: str) -> None:
    print(f"llmtui: warning: {message}", file=sys.stderr)


def tokenizer_flag(text: str) -> tuple[str, str | None]:
    """--tokenizer: a kind (char, bpe, trained), or a trained tokenizer's tokenizer.json or a
    folder holding one (LLMBuilder's `--tokenizer ./tokenizer`): (kind, path or None)."""
    from llmtui.engine.config.schema import field_spec

    kinds = field_spec("tokenizer.kind").choices or ()
    if text in kinds:
        return text, None
    path = Path(text)
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        return "trained", str(path)
    raise argparse.ArgumentTypeError(f"{text!r} is neither a tokenizer kind ({', '.join(kinds)}) nor a "
                                     "tokenizer.json or a folder holding one")


def output_flag(text: str) -> tuple[str, str]:
    """--output DIR (LLMBuilder's): (run.out_dir, run.name) of a run living in DIR, the name
    checked as run.name is."""
    from llmtui.engine.config.schema import field_spec

    run_dir = Path(text).resolve() if text.strip(" /") in ("", ".", "..") else Path(text)
    return str(run_dir.parent), _schema_value(field_spec("run.name"), "--output")(run_dir.name)


def quick_flag_overrides(args) -> list[str]:
    import json

    out = []
    if args.max_iters is not None:
        out.append(f"training.max_steps={args.max_iters}")
    if args.device is not None:
        out.append(f'run.device="{args.device}"')
    if args.tokenizer is not None:
        kind, path = args.tokenizer
        out.append(f'tokenizer.kind="{kind}"')
        if path is not None:
            out.append(f"tokenizer.path={json.dumps(path)}")
    if args.output is not None:
        # LLMBuilder's --output ./model: the run lives in ./model
        out_dir, name = args.output
        out += [f"run.out_dir={json.dumps(out_dir)}", f"run.name={json.dumps(name)}"]
    return out


def model_vocab_on_token_files(config: str, overrides: list[str], settings: list[str]) -> list[str]:
    """004's `--vocab_size` is the model's vocabulary. On token files (.bin/.npy: ids, no BPE
    to train) it sets model.vocab_size, so `--train_data train.npy --vocab_size 32000` builds
    the 32,000-row embedding it asks for; on text it stays the trained BPE's size."""
    flag = next((i for i, s in enumerate(settings) if s.startswith("tokenizer.vocab_size=")), None)
    if flag is None:
        return settings
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.data.prepare import TOKEN_SUFFIXES
    from llmtui.engine.errors import UserError
    try:
        cfg = load_config(config, overrides + settings)
    except UserError:
        return settings        # the run refuses it, in one line, as it refuses any bad input
    if Path(cfg.data.source).suffix.lower() not in TOKEN_SUFFIXES or cfg.tokenizer.kind == "trained":
        return settings
    value = settings[flag].partition("=")[2]
    return settings[:flag] + [f"model.vocab_size={value}"] + settings[flag + 1:]


# commands that only print: a closed pipe (`llmtui runs | head -1`) ends them quietly,
# as it ends `cat` or `ls` (SIGPIPE); training and export never die of it
PRINTING_COMMANDS = frozenset({"config", "sample", "detect", "runs", "eval"})
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None   # not when a test or a script calls main() in-process
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            if argv[0] in PRINTING_COMMANDS and from_command_line and _is_main_thread():
                _die_quietly_on_closed_pipe()
            return COMMANDS[argv[0]](argv[1:])
        train = bool(argv) and argv[0] == "train" and not Path("train").is_file()
        if train:
            argv = train_command(argv[1:])
        if len(argv) == 1 and not argv[0].startswith("-"):
            from llmtui.engine.config.presets import is_preset, preset_names

            if is_preset(argv[0]) and not Path(argv[0]).exists():   # `llmtui cpu`: that preset
                return open_app(open_config=argv[0])
            if not Path(argv[0]).is_file():
                raise UsageError(f"{argv[0]}: no such config file or preset (presets: "
                                 f"{', '.join(preset_names())}; commands: {', '.join(COMMANDS)})")
            return open_app(open_config=argv[0])
        args = run_parser().parse_args(argv)
        if args.resume_from is not None:
            if args.resume not in (None, args.resume_from):
                raise UsageError("--resume CHECKPOINT and --resume-from CHECKPOINT name different "
                                 "checkpoints; give one")
            args.resume = args.resume_from
        settings = quick_flag_overrides(args) + schema_flag_overrides(args)
        if args.run is None:
            if not (train or args.override or args.resume or args.force or args.overwrite or settings):
                return open_app()
            # 001's `python train.py --epochs 10`: the flags on the preset this machine gets
            args.run = recommended_preset()
            if args.run is None:
                return EXIT_BAD_INPUT
        settings = model_vocab_on_token_files(args.run, args.override, settings)
        from llmtui.headless import run_headless
        return run_headless(args.run, args.override + settings,
                            resume=args.resume, overwrite=args.overwrite, force=args.force,
                            plain=args.plain)
    except UsageError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:   # where SIGPIPE cannot end the process (not the main thread)
        silence(sys.stdout)
        return EXIT_BROKEN_PIPE


def train_command(argv: list[str]) -> list[str]:
    """`llmtui train [model] [CONFIG] [flags]` as `llmtui --run CONFIG [flags]`: LLMBuilder's
    `llmbuilder train model --data ... --output ...` (source document 003) with its own
    program name swapped; without CONFIG, the preset this machine gets."""
    if argv and argv[0] == "model" and not Path("model").is_file():
        argv = argv[1:]              # its subcommand's noun
    if argv and not argv[0].startswith("-"):
        argv = ["--run", argv[0], *argv[1:]]
    return argv


def recommended_preset() -> str | None:
    """The preset `llmtui detect` recommends for this machine, said on stderr with its first
    reason (training flags given without --run train it); None after a one-line error."""
    from llmtui.engine.errors import UserError
    from llmtui.engine.planning.recommend import recommend
    try:
        rec = recommend()
    except UserError as exc:
        fail(str(exc))
        return None
    why = f" ({rec.reasons[0]})" if rec.reasons else ""
    print(f"llmtui: no --run CONFIG given: training the preset for this machine, {rec.preset}{why}",
          file=sys.stderr, flush=True)
    return rec.preset


def _is_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _die_quietly_on_closed_pipe() -> None:
    import signal
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def open_app(open_run: str | None = None, open_config: str | None = None) -> int:
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        return fail("the app needs a terminal; use `llmtui --run CONFIG.toml` for headless training "
                    "and `llmtui runs` to list runs")
    from llmtui.tui.app import run_app
    return run_app(open_run=open_run, open_config=open_config)


def cmd_config(argv: list[str]) -> int:
    p = _Parser(prog="llmtui config", description="Print a complete, commented config.")
    p.add_argument("preset", nargs="?", help="preset name or TOML file to start from")
    p.add_argument("--override", "-o", action="append", default=[])
    p.add_argument("--reference", action="store_true", help="print the Markdown reference of every key")
    args = p.parse_args(argv)
    from llmtui.engine.config.loading import (
        config_to_toml,
        load_config,
        reference_markdown,
    )
    from llmtui.engine.errors import UserError
    if args.reference:
        sys.stdout.write(reference_markdown())
        return EXIT_OK
    try:
        cfg = load_config(args.preset, args.override)
    except UserError as exc:
        return fail(str(exc))
    sys.stdout.write(config_to_toml(cfg))
    return EXIT_OK


def cmd_sample(argv: list[str]) -> int:
    p = _Parser(prog="llmtui sample", description="Generate text from a checkpoint.")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (uses its newest)")
    # nanoGPT's sample.py names (--start, --max_new_tokens, --num_samples, --top_k) work too
    p.add_argument("--prompt", "--start", default="\n",
                   help='text to continue; "FILE:path" reads it from a file (nanoGPT\'s --start)')
    p.add_argument("--tokens", "--max-new-tokens", "--max_new_tokens", type=bounded(int, 1, 100_000),
                   default=300, help="tokens to generate per sample")
    p.add_argument("--num-samples", "--num_samples", type=bounded(int, 1, 1000), default=1,
                   help="samples to draw, one after another, separated by a line of dashes")
    p.add_argument("--temperature", type=temperature, default=0.8,
                   help="0 = greedy (always the most likely token), else 0.01 to 10")
    p.add_argument("--top-k", "--top_k", type=bounded(int, 0, 10**9), default=200, help="0 = all tokens")
    p.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=1337)
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true",
                   help="load the model even when the estimated memory is far beyond what the device has")
    args = p.parse_args(argv)
    prompt = args.prompt
    if prompt.startswith("FILE:"):
        try:
            prompt = Path(prompt[len("FILE:"):]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return fail(f"--prompt {args.prompt!r}: cannot read the prompt file "
                        f"({getattr(exc, 'strerror', None) or exc})")
    from llmtui.engine.errors import UserError
    from llmtui.engine.training.loader import samples_from_checkpoint
    try:
        texts = samples_from_checkpoint(Path(args.checkpoint), prompt, args.tokens, count=args.num_samples,
                                        temperature=args.temperature, top_k=args.top_k,
                                        seed=args.seed, device=args.device, force=args.force, warn=warn,
                                        loaded_from=lambda m: print(f"sampling from {m.describe()}",
                                                                    file=sys.stderr, flush=True))
    except UserError as exc:
        return fail(str(exc))
    sys.stdout.write(SAMPLE_SEPARATOR.join(prompt + text + "\n" for text in texts))
    return EXIT_OK


SAMPLE_SEPARATOR = "---------------\n"   # between samples, as nanoGPT's sample.py prints them


def cmd_detect(argv: list[str]) -> int:
    p = _Parser(prog="llmtui detect",
                description="Show the hardware, the preset that fits it, why, the autotuned "
                            "settings and the estimates.")
    p.add_argument("--json", action="store_true", help="print the same as one JSON object")
    p.add_argument("--gpu", metavar="NAME[:VRAM_GB[:CC]]",
                   help='plan for a GPU this machine does not have, e.g. "RTX 4060" or "My GPU:12:8.6"')
    p.add_argument("--calibrate", action="store_true",
                   help="time a few real training steps here instead of estimating the time")
    p.add_argument("--override", "-o", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="plan with this setting on top of the preset (e.g. tokenizer.kind=trained "
                        "-o tokenizer.vocab_size=16384); repeatable")
    args = p.parse_args(argv)
    if args.calibrate and args.gpu:
        raise UsageError("--calibrate times this machine; it cannot be combined with --gpu")
    import json

    from llmtui.engine.errors import UserError
    from llmtui.engine.planning.hardware import detect
    from llmtui.engine.planning.recommend import recommend, report_text
    try:
        hardware = detect()
        rec = recommend(hardware, gpu=args.gpu, overrides=args.override)
        if args.calibrate:
            from llmtui.engine.planning.recommend import calibrate_recommendation
            rec = calibrate_recommendation(rec, hardware)
    except UserError as exc:
        return fail(str(exc))
    if args.json:
        out = hardware.to_json() | rec.to_json()
        out["warnings"] = list(dict.fromkeys(hardware.warnings + rec.warnings))
        print(json.dumps(out, indent=1))
    else:
        sys.stdout.write(report_text(hardware, rec))
    return EXIT_OK


def cmd_runs(argv: list[str]) -> int:
    p = _Parser(prog="llmtui runs", description="List the runs in a folder: status, steps, losses, "
                "time, size; the process training a run now, if any.")
    p.add_argument("folder", nargs="?", default="checkpoints", help="a folder of runs (default checkpoints)")
    p.add_argument("--json", action="store_true", help="print them as a JSON list")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        return fail(f"{folder}: {'a file, not a folder of runs' if folder.exists() else 'no such folder'}")
    import json

    from llmtui.engine.training.runs import list_runs
    runs = list_runs(folder)
    if args.json:
        print(json.dumps([r.to_json() for r in runs], indent=1))
        return EXIT_OK
    if not runs:
        print(f"no runs in {folder}")
        return EXIT_OK
    print(runs_table(runs))
    return EXIT_OK


def runs_table(runs) -> str:
    import time

    def loss(x):
        return "-" if x is None else f"{x:.4f}"

    def duration(seconds):
        if seconds is None:
            return "-"
        m, s = divmod(int(seconds), 60)
        h, m = divmod(m, 60)
        return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"

    rows = [("name", "status", "steps", "best val", "last val", "tokens", "time", "date", "model",
             "tokenizer", "held by")]
    for r in runs:
        holder = f"PID {r.holder.pid} on {r.holder.host}" if r.holder is not None and r.holder.alive else ""
        rows.append((r.name, r.status, f"{r.steps:,}" + (f"/{r.max_steps:,}" if r.max_steps else ""),
                     loss(r.best_val_loss), loss(r.last_val_loss),
                     f"{r.tokens_seen:,}" if r.tokens_seen else "-", duration(r.training_time),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(r.modified)), r.model, r.tokenizer,
                     holder))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def cmd_watch(argv: list[str]) -> int:
    p = _Parser(prog="llmtui watch", description="Open the app on a run: its curves, config and "
                "checkpoints, followed live while a process (headless, torchrun) trains it.")
    p.add_argument("run_dir", help="a run directory, e.g. checkpoints/cpu")
    args = p.parse_args(argv)
    from llmtui.engine.training.runs import run_info
    if not Path(args.run_dir).is_dir() or run_info(Path(args.run_dir)) is None:
        return fail(f"{args.run_dir}: not a run directory made by llmtui")
    return open_app(open_run=args.run_dir)


def cmd_export(argv: list[str]) -> int:
    p = _Parser(prog="llmtui export",
                description="Export a checkpoint for other tools: --format hf writes a folder that "
                            "transformers' AutoModelForCausalLM and AutoTokenizer load with no custom "
                            "code; --format gguf writes OUT/model.gguf for llama.cpp.")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (uses its newest)")
    p.add_argument("out", help="the folder to write (must not exist or be empty, unless --overwrite)")
    p.add_argument("--format", choices=["hf", "gguf"], default="hf", help="hf (default) or gguf")
    p.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="weight format (default fp32)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT when it is not empty")
    args = p.parse_args(argv)
    from llmtui.engine.errors import UserError
    from llmtui.engine.inference.export import export
    try:
        result = export(args.checkpoint, args.out, format=args.format, dtype=args.dtype,
                        overwrite=args.overwrite)
    except UserError as exc:
        return fail(str(exc))
    for warning in result.warnings:
        say(f"llmtui: warning: {warning}", sys.stderr)
    from llmtui.engine.inference.mapping import HF_CLASSES
    arch = HF_CLASSES[result.architecture] if result.format == "hf" else f"{result.architecture} architecture"
    print(f"exported {result.checkpoint} to {result.out}/ as {result.format} "
          f"({arch}, {result.dtype}, vocabulary {result.vocab_size:,}, "
          f"{result.tokenizer} tokenizer): {', '.join(result.files)}")
    if result.format == "hf":
        print(f'load it with: AutoModelForCausalLM.from_pretrained("{result.out}"), '
              f'AutoTokenizer.from_pretrained("{result.out}")')
    else:
        print(f'run it with: llama-cli -m {result.out}/model.gguf -p "..."')
    return EXIT_OK


def cmd_eval(argv: list[str]) -> int:
    p = _Parser(prog="llmtui eval",
                description="Loss, perplexity, accuracy and bits per byte of a checkpoint on a text "
                            "file or a .bin/.npy token file (every token predicted once, in windows "
                            "of block_size).")
    p.add_argument("checkpoint", help="a checkpoint directory, or a run directory (uses its newest)")
    p.add_argument("--data", required=True, metavar="FILE",
                   help="a text file, a .jsonl/.json/.csv/.parquet record file (each record's text "
                        "field one document, as in training) or a .bin/.npy token file")
    p.add_argument("--text-field", metavar="NAME",
                   help="the records' field that holds the text (default: the run's data.text_field)")
    p.add_argument("--max-tokens", type=bounded(int, 2, 10**12), metavar="N",
                   help="evaluate only the first N tokens")
    p.add_argument("--strict", action="store_true",
                   help="refuse characters the char vocabulary lacks instead of skipping them")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true",
                   help="load the model even when the estimated memory is far beyond what the device has")
    args = p.parse_args(argv)
    import json

    from llmtui.engine.errors import UserError
    from llmtui.engine.inference.evaluate import evaluate
    bar = _progress_bar("evaluating")
    try:
        result = evaluate(args.checkpoint, args.data, max_tokens=args.max_tokens, strict=args.strict,
                          device=args.device, progress=bar.update if bar else None, force=args.force,
                          text_field=args.text_field)
    except UserError as exc:
        return fail(str(exc))
    finally:
        if bar:
            bar.close()
    for warning in result.warnings:
        warn(warning)
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
        return EXIT_OK
    print(f"{result.checkpoint} on {result.data}: {result.tokens:,} tokens predicted "
          f"({result.bytes:,} bytes)")
    print(f"  loss           {result.loss:.4f} nats per token")
    print(f"  perplexity     {result.perplexity:,.2f}")
    print(f"  accuracy       {100 * result.accuracy:.1f}% (most likely token was right)")
    bpb = "n/a (token ids with no text behind them)" if result.bits_per_byte is None else f"{result.bits_per_byte:.4f}"
    print(f"  bits per byte  {bpb}")
    return EXIT_OK


class _Bar:
    """A rich progress bar on stderr (only on a terminal: pipes and --json stay clean)."""

    def __init__(self, label: str):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn
        self.progress = Progress("[bold]" + label, BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task(label, total=None)
        self.progress.start()

    def update(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        self.progress.stop()


def _progress_bar(label: str) -> _Bar | None:
    return _Bar(label) if sys.stderr.isatty() else None


COMMANDS = {"config": cmd_config, "sample": cmd_sample, "detect": cmd_detect, "runs": cmd_runs,
            "watch": cmd_watch, "export": cmd_export, "eval": cmd_eval}


if __name__ == "__main__":
    raise SystemExit(main())
