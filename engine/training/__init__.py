"""Training: the loop, what it tells front ends, and what it leaves on disk.

    trainer      Trainer: setup, the loop, evaluation; emits events, takes commands
    events       typed events (one per metrics.jsonl kind), commands, EventBuffer, JSONL writer
    state        the run's mutable state and the conversion of live objects to checkpoint files
    checkpoint   atomic checkpoint directories with a sha256 manifest, verification, rotation
    runs         run directories for front ends: where a config's run lives, runs in a folder
    schedule     the learning-rate schedule
    distributed  torchrun data parallelism
    trackers     optional TensorBoard and W&B listeners
    sampling     text generation from a checkpoint

May import: every engine layer above it (config, data, model, planning).
"""
