"""llmtui's engine: everything that trains, with no UI imports.

Read it top-down; each layer may import only the layers above it in this list
(the import test in tests/test_architecture.py enforces it, with no cycles):

    errors, fsutil   one-line user errors with fields; atomic file writes
    config/          the schema (every setting once), loading, overrides, TOML editing, presets
    data/            corpora, tokenizers, preparation into token files, batches
    model/           the GPT itself (one readable file) and its config mapping
    planning/        hardware detection, device and precision, estimates, autotune, presets per machine
    training/        the trainer, its events and commands, checkpoints, run directories,
                     distributed training, trackers, sampling
    api              load_config / train for Python callers

Nothing here imports llmtui.tui, llmtui.cli, llmtui.headless or Textual: the
app and the headless CLI are front ends over training/'s events and commands.
Package __init__ files hold only their docstring, so importing one module
never pulls in its siblings (or torch).
"""
