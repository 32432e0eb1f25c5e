"""Training: the loop, what it tells front ends, and what it leaves on disk.

    events       typed events (one per metrics.jsonl kind), EventBuffer, JSONL writer
    commands     what front ends may ask of a running trainer, and the protocol they hold it by
    history      a run's metrics.jsonl read back as events, whole or followed live
    state        the run's state as a checkpoint's state.json records it
    snapshot     live training objects <-> checkpoint files (safetensors and JSON, no pickle)
    checkpoint   atomic checkpoint directories with a sha256 manifest, verification, rotation
    rundir       who owns a run directory (its marker) and who writes to it now (its lock)
    runs         run directories for front ends: where a config's run lives, runs in a folder
    init_from    model.init_from: the config and weights a new run starts from (a run, an HF model)
    start        the commit half of a start: what it changes on disk, how a refusal undoes it; torchrun restarts
    schedule     the learning-rate schedule
    distributed  torchrun data parallelism
    sharded      training.parallel = "fsdp": FSDP2 sharding, a sharded run's checkpoints saved and loaded
    optim_shards a sharded run's optimizer state on disk: one safetensors file per process, a JSON index
    trackers     optional TensorBoard and W&B listeners
    trainer      Trainer: the start (plan, commit, setup), the loop, its finish; emits events, takes commands
    build        what a start builds before the first step (TrainingSetup): samplers, the wrapped model
    steps        one optimizer step (accumulation, scaling, clipping), the micro-batch halved on out-of-memory
    resume       a resumed run: the checkpoint it continues from, its batch, its state restored
    evaluation   evaluation (val loss, perplexity, accuracy) and samples of the model being trained
    weight_average  training.ema_decay: the average of the weights a run evaluates and saves
    meter        the loop's bookkeeping between log lines: loss, tokens, time, tok/s, MFU, CPU load
    cpushare     training on a CPU that other processes use: the busy warning, threads on the free cores
    loader       a saved checkpoint loaded for use: model, tokenizer, config (inference's start)

May import: every engine layer above it (config, data, model, planning); inside it,
nothing imports trainer but the API and the front ends.
"""
