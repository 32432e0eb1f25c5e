"""`llmtui export ... --format hf`: a folder transformers loads with no custom code.

    config.json                 GPT2LMHeadModel, Starcoder2ForCausalLM, LlamaForCausalLM or
                                Qwen3ForCausalLM (engine.inference.mapping)
    generation_config.json      end-of-text as bos/eos, when the tokenizer has one
    model.safetensors           the weights under transformers' names
    tokenizer.json, tokenizer_config.json, special_tokens_map.json
                                the tokenizer (engine.inference.hf_tokenizer)

transformers itself is not needed to write it (it is a test extra only).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from llmtui.engine.inference.hf_tokenizer import tokenizer_files
from llmtui.engine.inference.mapping import architecture, hf_config, hf_state_dict
from llmtui.engine.training.loader import LoadedModel


def write_hf(loaded: LoadedModel, folder: Path, dtype: str = "fp32") -> list[str]:
    """Write the export into `folder` (which exists and is empty); return the file names."""
    arch = architecture(loaded.config, "hf")
    weights = hf_state_dict(loaded, arch)
    if dtype == "fp16":
        weights = {k: v.half() for k, v in weights.items()}
    files = {"config.json": json.dumps(hf_config(loaded, arch, dtype), indent=1)}
    eot = loaded.tokenizer.eot_token
    generation = {"bos_token_id": eot, "eos_token_id": eot} if eot is not None else {}
    files["generation_config.json"] = json.dumps(generation, indent=1)
    files.update(tokenizer_files(loaded.tokenizer, loaded.model.config.block_size))
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    weights_path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, str(weights_path), metadata={"format": "pt"})
    # the safetensors writer makes its file 0600; give it the mode the files above got
    # (this process's umask), so whoever may read the export may read its weights
    weights_path.chmod((folder / "config.json").stat().st_mode & 0o777)
    return sorted([*files, "model.safetensors"])
