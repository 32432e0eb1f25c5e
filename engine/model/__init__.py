"""Model: the GPT decoder in one readable file, nanoGPT-style plain PyTorch.

    shapes  the model's shape rules (head size, MLP width), which planning needs without torch
    gpt     the GPT decoder and its config mapping
    optim   the optimizers that train it (AdamW; Muon for the blocks' matrices)
    generation  one token loop with a KV cache: sample, the generate screen, evaluation samples
    import_hf  a Hugging Face model folder (or hf:ORG/NAME) read as an llmtui model and tokenizer

May import: llmtui.engine.config and errors.
"""
