"""Export a checkpoint (or a run's newest intact one) into a folder other tools load.

The folder is written beside its target under a temporary name and renamed
into place when complete: a failure or Ctrl-C leaves no half-written export.
An existing OUT that is not empty is replaced only with `overwrite`, and never
when it holds llmtui runs or checkpoints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from llmtui.engine import fsutil
from llmtui.engine.errors import UserError
from llmtui.engine.inference.export_gguf import gguf_tokenizer_pattern, write_gguf
from llmtui.engine.inference.export_hf import write_hf
from llmtui.engine.inference.mapping import architecture
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.rundir import MARKER
from llmtui.engine.training.sampling import load_checkpoint_model, resolve_checkpoint

FORMATS = {"hf": write_hf, "gguf": write_gguf}
DTYPES = ("fp32", "fp16")


@dataclass
class ExportResult:
    out: Path
    format: str
    dtype: str
    architecture: str          # gpt2 | starcoder2 | llama | qwen3
    checkpoint: Path           # the checkpoint exported
    files: list[str]
    vocab_size: int
    tokenizer: str             # char | bpe | trained


def export(checkpoint: str | Path, out: str | Path, *, format: str = "hf", dtype: str = "fp32",
           overwrite: bool = False) -> ExportResult:
    """Write `checkpoint` (a checkpoint or run directory) into folder `out` as `format`
    ("hf": transformers, "gguf": llama.cpp) with weights in `dtype` ("fp32" or "fp16")."""
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not allowed; expected one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not allowed; expected one of {', '.join(DTYPES)}")
    out = Path(out).expanduser()
    source = resolve_checkpoint(Path(checkpoint).expanduser())
    _check_out(out, source, overwrite)
    loaded = load_checkpoint_model(source, device="cpu")
    arch = architecture(loaded.config, format)   # every refusal before anything is written
    if format == "gguf":
        gguf_tokenizer_pattern(loaded)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = fsutil.temp_sibling(out)
        tmp.mkdir()
    except OSError as exc:
        raise UserError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    try:
        files = FORMATS[format](loaded, tmp, dtype)
        fsutil.fsync_dir(tmp)
        ckpt.replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{out}: cannot write the export ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out=out, format=format, dtype=dtype, architecture=arch, checkpoint=source,
                        files=files, vocab_size=loaded.model.config.vocab_size,
                        tokenizer=loaded.tokenizer.kind)


def _check_out(out: Path, source: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; give a folder to export into")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise UserError(f"{out}: exists and is not empty; choose another folder, or pass --overwrite "
                        "to replace it")
    resolved = out.resolve()
    if (out / MARKER).exists() or (out / ckpt.MANIFEST).exists() or resolved in source.resolve().parents \
            or resolved == source.resolve():
        raise UserError(f"{out}: holds llmtui runs or checkpoints; --overwrite never replaces "
                        "those: choose another folder")
