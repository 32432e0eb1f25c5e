"""Export a checkpoint (or a run's newest intact one) into a folder other tools load.

The folder is written beside its target under a temporary name and renamed
into place when complete: a failure or Ctrl-C leaves no half-written export.
An existing OUT that is not empty is replaced only with `overwrite`, and never
when it holds llmtui runs or checkpoints at any depth; OUT is never inside a
run or checkpoint, nor a symbolic link (engine.inference.export_target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmtui.engine import fsutil
from llmtui.engine.errors import UserError
from llmtui.engine.inference.export_gguf import gguf_tokenizer_pattern, write_gguf
from llmtui.engine.inference.export_hf import write_hf
from llmtui.engine.inference.export_target import TempExport, check_out, remove_leftovers
from llmtui.engine.inference.mapping import architecture
from llmtui.engine.training import checkpoint as ckpt
from llmtui.engine.training.loader import load_checkpoint_model

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
    warnings: list[str] = field(default_factory=list)   # damaged checkpoints skipped


def export(checkpoint: str | Path, out: str | Path, *, format: str = "hf", dtype: str = "fp32",
           overwrite: bool = False) -> ExportResult:
    """Write `checkpoint` (a checkpoint or run directory) into folder `out` as `format`
    ("hf": transformers, "gguf": llama.cpp) with weights in `dtype` ("fp32" or "fp16")."""
    if format not in FORMATS:
        raise UserError(f"--format {format!r} is not allowed; expected one of {', '.join(FORMATS)}")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not allowed; expected one of {', '.join(DTYPES)}")
    out = Path(out).expanduser()
    # a run's newest checkpoint that loads: damaged ones are skipped (each named in warnings)
    loaded = load_checkpoint_model(Path(checkpoint).expanduser(), device="cpu")
    source = loaded.path
    check_out(out, source, overwrite)
    arch = architecture(loaded.config, format)   # every refusal before anything is written
    if format == "gguf":
        gguf_tokenizer_pattern(loaded)
    temp = TempExport(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp.create()
    except OSError as exc:
        temp.remove()
        raise UserError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    try:
        files = FORMATS[format](loaded, tmp, dtype)
        temp.finish()
        fsutil.fsync_dir(tmp)
        ckpt.replace_dir(tmp, out)
        temp.close()
    except OSError as exc:
        temp.remove()
        raise UserError(f"{out}: cannot write the export ({exc.strerror or exc})") from None
    except BaseException:
        temp.remove()
        raise
    remove_leftovers(out)       # what exports to `out` killed earlier left beside it
    return ExportResult(out=out, format=format, dtype=dtype, architecture=arch, checkpoint=source,
                        files=files, vocab_size=loaded.model.config.vocab_size,
                        tokenizer=loaded.tokenizer.kind, warnings=list(loaded.warnings))

