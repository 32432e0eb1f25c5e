"""Planning: what this machine has and what fits on it, before and while training.

    hardware    CPU, RAM and NVIDIA GPUs (NVML, torch.cuda queries)
    gpu_table   published figures of known GPUs
    cpu         the CPU's matrix-instruction flags (/proc/cpuinfo; no torch)
    device      the torch device and the precision it really runs; CPU threads; matmul peak
    host_memory training on a CPU: the C library keeps the memory a step frees for the next (no torch)
    sizing      parameters, FLOPs per token and peak memory by component, by arithmetic (no torch)
    estimate    the labelled estimate of a run from the config alone: memory against the device, time
    autotune    micro-batch, accumulation and precision fitted to a device
    calibrate   seconds per step measured with the real model
    load        how busy the CPU is while training, and whether other processes hold it
    recommend   the preset for this machine, with the reasons

May import: llmtui.engine.config, data, model, errors. Never training.
"""
