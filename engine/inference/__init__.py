"""Inference: a trained checkpoint outside training.

    export_target where an export may write, what it may replace, what it cleans up
    mapping       which transformers class computes the same function, and its weights
    hf_tokenizer  every tokenizer kind as a Hugging Face tokenizer.json (and GGUF's lists)
    export_hf     a folder transformers loads with no custom code
    export_gguf   one model.gguf for llama.cpp, written with the gguf package
    export        the export entry point: checks, then an atomic folder
    evaluate      loss, perplexity, accuracy and bits per byte on a text or token file
    generate      generation from a checkpoint, token by token

May import: every engine layer above it (config, data, model, planning, training).
Never transformers: it is a test extra that proves the exports load.
"""
