"""Model: the GPT decoder in one readable file (gpt.py), nanoGPT-style plain PyTorch.

May import: llmtui.engine.config and errors.
"""
