"""Data: corpora -> tokenizers -> prepared token files -> training batches.

    corpus       the embedded default corpus (Python's bundled documentation)
    tokenizers   char and tiktoken BPE tokenizers, saved as JSON
    prepare      streaming preparation into train.bin / val.bin / meta.json, reused while unchanged
    bpe_workers  parallel BPE encoding
    batches      random training windows and the fixed validation slice

May import: llmtui.engine.config, errors, fsutil. No torch at module level.
"""
