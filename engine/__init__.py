"""llmtui's engine: everything that trains, with no UI imports.

Read it top-down; each layer may import only the layers above it in this list
(the import test in tests/test_architecture.py enforces it, with no cycles):

    errors           one-line user errors with fields (ConfigError, DataError, CheckpointError ...)
    fsutil           atomic and synced file writes, temporary siblings, sha256 of files
    config/          the schema (every setting once), loading, overrides, TOML editing, presets
    data/            corpora, tokenizers, preparation into token files, batches
    model/           the GPT itself (one readable file), its optimizers and shape rules
    planning/        hardware detection, device and precision, estimates, autotune, presets per machine
    builder_api      LLMBuilder's API (003): build_model, TextDataset, a model + datasets as a config
    training/        the trainer, its events and commands, checkpoints, run directories,
                     distributed training, trackers, a checkpoint loaded for use
    inference/       evaluation, generation and HF / GGUF export of a trained checkpoint
    api              load_config / train / train_model / generate / evaluate / export for Python callers

Each subpackage's docstring lists its modules and what it may import.

Nothing here imports llmtui.tui, llmtui.cli, llmtui.headless or Textual: the
app and the headless CLI are front ends over training/'s events and commands.
Package __init__ files hold only their docstring, so importing one module
never pulls in its siblings (or torch).
"""
