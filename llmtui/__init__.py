"""llmtui: train small GPT-style language models on your own machine.

The Python API:

    from llmtui import load_config, train, Trainer, generate, evaluate, export

    cfg = load_config("cpu", overrides=["training.max_steps=100"])   # preset name or TOML path
    result = train(cfg)                                               # a TrainResult
    print(result.best_val_loss, result.last_checkpoint)
    print(generate(result.run_dir, "The ", max_tokens=100))          # a run or checkpoint directory
    print(evaluate(result.run_dir, "held_out.txt").bits_per_byte)    # an EvalResult
    export(result.run_dir, "my-model", format="hf")                   # or "gguf"

The installed package holds the engine (`llmtui.engine`, no UI), the Textual
app (`llmtui.tui`), the shipped presets (`llmtui.presets`) and the command
line (`llmtui.cli`, `llmtui.headless`). Names are imported lazily, so
`import llmtui` (and `llmtui --help`) stays cheap: torch loads only when
something trains.
"""

__version__ = "0.1.0"


def _clone_layout() -> None:
    """Run from a clone's root (where the README's install leaves the user), the
    current directory's llmtui/ folder shadows the installed package, and its
    engine/, tui/ and presets/ stand beside it, not in it (pyproject's package-dir
    maps them under `llmtui` on install). Look for subpackages there too, so the
    clone imports as the installed package does."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and all((root / d / "__init__.py").is_file() for d in ("engine", "tui")):
        __path__.append(str(root))


_clone_layout()


def _enable_mps_fallback() -> None:
    """On macOS, let ops the Apple GPU (MPS) lacks run on the CPU, as PyTorch documents:
    PYTORCH_ENABLE_MPS_FALLBACK=1, read when torch loads (so set here, before it does).
    A value the user set is kept."""
    import os
    import sys

    if sys.platform == "darwin":
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


_enable_mps_fallback()

_API = {
    "load_config": "llmtui.engine.config.loading",
    "train": "llmtui.engine.api",
    "Trainer": "llmtui.engine.training.trainer",
    "TrainResult": "llmtui.engine.training.trainer",
    "export": "llmtui.engine.api",
    "evaluate": "llmtui.engine.api",
    "generate": "llmtui.engine.api",
    "UserError": "llmtui.engine.errors",
    "ConfigError": "llmtui.engine.errors",
    "DataError": "llmtui.engine.errors",
    "CheckpointError": "llmtui.engine.errors",
    # LLMBuilder's API (source document 003): build_model, train_model, llmtui.data.TextDataset
    "build_model": "llmtui.engine.builder_api",
    "train_model": "llmtui.engine.api",
    "TextDataset": "llmtui.engine.builder_api",
}

__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'llmtui' has no attribute {name!r}")
