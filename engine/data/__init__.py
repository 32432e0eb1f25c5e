"""Data: corpora -> tokenizers -> prepared token files -> training batches.

    corpus       the embedded default corpus (Python's bundled documentation)
    tokenizers   char, tiktoken BPE and trained BPE tokenizers, saved as JSON
    bpe_training a byte-level BPE trained on the user's corpus, or a tokenizer.json loaded
    bpe_workers  parallel BPE encoding
    records      JSONL/JSON/CSV/Parquet/HF-dataset records read one document at a time
    prepare      streaming preparation into train.bin / val.bin / meta.json, reused while unchanged
    batches      random training windows and the fixed validation slice

May import: llmtui.engine.config, errors, fsutil. No torch at module level.
"""
