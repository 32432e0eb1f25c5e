"""`llmtui export`: for every architecture llmtui trains and every tokenizer kind, on a
tiny trained model, transformers loads the export with no custom code and computes
the same logits (1e-4, fp32), greedy generate() continues like `llmtui sample
--temperature 0`, and AutoTokenizer encodes and decodes like llmtui. GGUF files are
read back with transformers' GGUF loader the same way. Grouped-query attention
(model.n_kv_head) exports as the rotary classes' num_key_value_heads."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, shakespeare_text
from llmtui import load_config, train
from llmtui.cli import main
from llmtui.engine.training.loader import load_checkpoint_model


def corpus_text() -> str:
    return shakespeare_text()[:60_000] + "\nNaïve café — ☃\n"
PROBE = "ROMEO:\nBut soft, what light through yonder window breaks? Naïve ☃"
RMS_SWIGLU = ['model.norm="rmsnorm"', 'model.mlp="swiglu"']
# name -> (pos_encoding, tokenizer overrides, other model settings): GPT-2 and Starcoder2
# with every tokenizer kind, Llama (RMSNorm + SwiGLU) and Qwen3 (+ QK-norm), tied and untied
# heads, with and without biases, GELU and squared ReLU (each run starts from nanoGPT's
# model, whatever the preset's)
MODELS = {
    "learned-char": ("learned", ['tokenizer.kind="char"'], []),
    "rope-char": ("rope", ['tokenizer.kind="char"'], ["model.bias=true", "model.tie_embeddings=false"]),
    "learned-bpe-relu2": ("learned", ['tokenizer.kind="bpe"'],
                          ['model.mlp="relu2"', "model.bias=true", "model.tie_embeddings=false"]),
    "rope-bpe": ("rope", ['tokenizer.kind="bpe"'], []),
    "learned-trained": ("learned", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"],
                        ["model.bias=true", "model.tie_embeddings=false"]),
    "rope-trained": ("rope", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"], ["model.d_ff=48"]),
    "llama-trained": ("rope", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"],
                      RMS_SWIGLU + ["model.bias=true", "model.d_ff=40"]),
    "qwen3-trained": ("rope", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"],
                      RMS_SWIGLU + ["model.qk_norm=true", "model.tie_embeddings=false"]),
    # grouped-query attention: 4 query heads, 2 key/value heads (multi-query for Starcoder2)
    "rope-gqa-trained": ("rope", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"],
                         ["model.n_head=4", "model.n_kv_head=1", "model.bias=true"]),
    "llama-gqa-trained": ("rope", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"],
                          RMS_SWIGLU + ["model.n_head=4", "model.n_kv_head=2"]),
    "qwen3-gqa-trained": ("rope", ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"],
                          RMS_SWIGLU + ["model.qk_norm=true", "model.n_head=4", "model.n_kv_head=2"]),
}
NANOGPT = ['model.norm="layernorm"', 'model.mlp="gelu"', "model.qk_norm=false", "model.bias=false",
           "model.tie_embeddings=true", 'optimizer.name="adamw"', "optimizer.head_learning_rate=0"]
HF_CLASS = {"learned": "GPT2LMHeadModel", "rope": "Starcoder2ForCausalLM", "llama": "LlamaForCausalLM",
            "qwen3": "Qwen3ForCausalLM"}
# every GGUF architecture (the bpe kind: below)
GGUF_MODELS = ["learned-trained", "rope-trained", "llama-trained", "qwen3-trained", "llama-gqa-trained",
               "qwen3-gqa-trained"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny model trained for each entry of MODELS (10 steps: weights far from init)."""
    root = tmp_path_factory.mktemp("export")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text(), encoding="utf-8")
    out = {}
    for name, (pos, tokenizer, model) in MODELS.items():
        cfg = load_config("cpu", TINY + NANOGPT + tokenizer + model + [
            f'run.out_dir="{root / "runs"}"', f'data.prepared_dir="{root / "data"}"', f'run.name="{name}"',
            'run.device="cpu"', f'data.source="{corpus}"', f'model.pos_encoding="{pos}"',
            "training.max_steps=6", "eval.sample_tokens=0", "eval.every_n_steps=6", "training.save_best=false"])
        out[name] = train(cfg).run_dir
    return out


def llmtui_logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(torch.tensor([ids]), torch.tensor([ids]))[0][0]


def probe_ids(loaded):
    return loaded.tokenizer.encode(PROBE, strict=False)[:loaded.model.config.block_size]


def llmtui_greedy(run_dir, prompt, tokens, capsys) -> str:
    """What `llmtui sample --temperature 0` prints, without the trailing newline."""
    capsys.readouterr()
    assert main(["sample", str(run_dir), "--prompt", prompt, "--tokens", str(tokens),
                 "--temperature", "0", "--device", "cpu", "--seed", "7"]) == 0
    return capsys.readouterr().out[:-1]


@pytest.mark.export
@pytest.mark.train
@pytest.mark.parametrize("name", list(MODELS))
def test_hf_export_computes_what_llmtui_computes(name, runs, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "hf"
    assert main(["export", str(runs[name]), str(out), "--format", "hf"]) == 0
    printed = capsys.readouterr().out
    assert f"to {out}/ as hf ({HF_CLASS[name.partition('-')[0]]}" in printed
    assert "AutoModelForCausalLM.from_pretrained" in printed
    loaded = load_checkpoint_model(runs[name], "cpu")
    model = AutoModelForCausalLM.from_pretrained(out)       # no trust_remote_code: stock classes
    assert type(model).__name__ == HF_CLASS[name.partition("-")[0]]
    ids = probe_ids(loaded)
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0]
    assert (theirs - llmtui_logits(loaded, ids)).abs().max().item() < 1e-4

    # the tokenizer: same ids and text as llmtui's own
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer(PROBE)["input_ids"] == loaded.tokenizer.encode(PROBE, strict=False)
    assert tokenizer.decode(ids) == loaded.tokenizer.decode(ids)

    # greedy generation == llmtui sample --temperature 0 (within the context length)
    prompt = "ROMEO:"
    prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    new = loaded.model.config.block_size - prompt_ids.shape[1]
    generated = model.generate(prompt_ids, max_new_tokens=new, do_sample=False,
                               pad_token_id=tokenizer.eos_token_id or 0)
    assert tokenizer.decode(generated[0]) == llmtui_greedy(runs[name], prompt, new, capsys)


@pytest.mark.export
@pytest.mark.train
@pytest.mark.parametrize("name", GGUF_MODELS)
def test_gguf_export_reads_back_with_the_same_logits(name, runs, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "gguf"
    assert main(["export", str(runs[name]), str(out), "--format", "gguf"]) == 0
    assert [p.name for p in out.iterdir()] == ["model.gguf"]
    loaded = load_checkpoint_model(runs[name], "cpu")
    block = loaded.model.config.block_size
    # transformers' GGUF loader maps gpt2.context_length to n_ctx, which GPT-2's config no
    # longer reads (it sizes the position table from n_positions): give it the length
    extra = {"n_positions": block} if name.startswith("learned") else {}
    # nor does it read llama's biases (llama.cpp does) or qwen3's head size (its attention.key_length)
    if name.startswith("llama") and loaded.model.config.bias:
        extra = {"attention_bias": True, "mlp_bias": True}
    if name.startswith("qwen3"):
        extra = {"head_dim": loaded.model.config.n_embd // loaded.model.config.n_head}
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf", **extra)
    ids = probe_ids(loaded)
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0]
    assert (theirs - llmtui_logits(loaded, ids)).abs().max().item() < 1e-4
    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
    assert tokenizer(PROBE)["input_ids"] == loaded.tokenizer.encode(PROBE)
    prompt_ids = torch.tensor([loaded.tokenizer.encode("ROMEO:")])
    generated = model.generate(prompt_ids, max_new_tokens=block - prompt_ids.shape[1], do_sample=False,
                               pad_token_id=0)
    text = loaded.tokenizer.decode(generated[0].tolist())
    assert text == llmtui_greedy(runs[name], "ROMEO:", block - prompt_ids.shape[1], capsys)


@pytest.mark.export
@pytest.mark.train
def test_gguf_holds_a_tiktoken_encoding_as_llama_cpp_reads_it(runs, tmp_path):
    """A tiktoken vocabulary in GGUF: the token list, types and merges (gpt2 model, gpt-2
    split pattern), read back by transformers into a tokenizer that encodes like llmtui.
    (The logits of both GGUF architectures are checked above; reading a 50k-token
    vocabulary back is slow in the gguf package, so it is read once, here.)"""
    from transformers import AutoTokenizer

    from llmtui import export

    export(runs["rope-bpe"], tmp_path / "out", format="gguf")
    loaded = load_checkpoint_model(runs["rope-bpe"], "cpu")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out", gguf_file="model.gguf")
    assert tokenizer(PROBE)["input_ids"] == loaded.tokenizer.encode(PROBE)
    assert tokenizer.eos_token == "<|endoftext|>" and len(tokenizer) == 50257


@pytest.mark.export
@pytest.mark.train
def test_fp16_exports_hold_half_precision_weights(runs, tmp_path):
    from gguf import GGUFReader
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from llmtui import export

    loaded = load_checkpoint_model(runs["rope-trained"], "cpu")
    ids = probe_ids(loaded)
    ours = llmtui_logits(loaded, ids)
    result = export(runs["rope-trained"], tmp_path / "hf16", format="hf", dtype="fp16")
    assert result.dtype == "fp16" and result.architecture == "starcoder2"
    with safe_open(tmp_path / "hf16" / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf16", dtype=torch.float32)
    with torch.no_grad():
        assert (model(torch.tensor([ids])).logits[0] - ours).abs().max().item() < 2e-2
    export(runs["rope-trained"], tmp_path / "gguf16", format="gguf", dtype="fp16")
    reader = GGUFReader(str(tmp_path / "gguf16" / "model.gguf"))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "F16" and types["blk.0.attn_q.weight"] == "F16"
    assert types["blk.0.attn_norm.weight"] == "F32"          # 1-D tensors stay fp32, as llama.cpp's
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "gguf16", gguf_file="model.gguf")
    with torch.no_grad():
        assert (model(torch.tensor([ids])).logits[0] - ours).abs().max().item() < 2e-2


# --- refusals: one line, exit 2, nothing written ----------------------------------

def run_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.export
@pytest.mark.train
def test_char_models_are_refused_for_gguf(runs, tmp_path, capsys):
    out = tmp_path / "char-gguf"
    code, err = run_cli(capsys, "export", str(runs["learned-char"]), str(out), "--format", "gguf")
    assert code == 2 and err.count("\n") == 1
    assert 'tokenizer.kind = "char" cannot be exported to gguf' in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.train
def test_bad_export_input_is_one_line_and_exit_2(runs, tmp_path, capsys):
    code, err = run_cli(capsys, "export", str(runs["learned-char"]), str(tmp_path / "x"), "--format", "onnx")
    assert code == 2 and "invalid choice: 'onnx'" in err and err.count("\n") == 1
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    code, err = run_cli(capsys, "export", str(empty_run), str(tmp_path / "x"))
    assert code == 2 and "no intact checkpoint" in err and err.count("\n") == 1
    code, err = run_cli(capsys, "export", str(tmp_path / "nothing-here"), str(tmp_path / "x"))
    assert code == 2 and "no such run or checkpoint directory" in err
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = run_cli(capsys, "export", str(runs["learned-char"]), str(out))
    assert code == 2 and "exists and is not empty" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    code, _ = run_cli(capsys, "export", str(runs["learned-char"]), str(out), "--overwrite")
    assert code == 0 and (out / "config.json").is_file() and not (out / "notes.txt").exists()
    code, err = run_cli(capsys, "export", str(runs["learned-char"]), str(runs["learned-char"].parent),
                        "--overwrite")
    assert code == 2 and "--overwrite never replaces those" in err
    assert (runs["learned-char"] / "last" / "manifest.json").is_file()


@pytest.mark.export
@pytest.mark.train
def test_a_model_setting_without_a_mapping_is_refused_by_name(runs, tmp_path, capsys, monkeypatch):
    """Every [model] setting the exporter does not map must hold its default: a new model
    option is refused until it is mapped. (Simulated by unmapping tie_embeddings, which
    the rope-char model sets to false, and by a fake setting.)"""
    from llmtui.engine.config.schema import FIELDS, FieldSpec
    from llmtui.engine.inference import mapping

    monkeypatch.setattr(mapping, "HANDLED", mapping.HANDLED - {"tie_embeddings"})
    out = tmp_path / "refused"
    code, err = run_cli(capsys, "export", str(runs["rope-char"]), str(out))
    assert code == 2 and err.count("\n") == 1
    assert "model.tie_embeddings = false cannot be exported to hf" in err
    assert not out.exists()
    # a setting the schema gains later (a sliding attention window, say) is refused the same way
    cfg = load_config("cpu", NANOGPT + ['model.pos_encoding="learned"'])
    spec = FieldSpec("model", "window", int, None, 0, "Window.", 0, None, None, None, None, False, False)
    monkeypatch.setitem(FIELDS["model"], "window", spec)
    cfg.model.window = 8
    with pytest.raises(mapping.ExportError, match="model.window = 8 cannot be exported to gguf"):
        mapping.architecture(cfg, "gguf")
    cfg.model.window = 0
    assert mapping.architecture(cfg, "gguf") == "gpt2"


@pytest.mark.unit
@pytest.mark.parametrize("settings, fmt, refused", [
    (['model.norm="rmsnorm"', 'model.mlp="swiglu"'], "hf", 'model.norm = "rmsnorm" cannot be exported to hf'),
    (['model.pos_encoding="rope"', 'model.norm="rmsnorm"'], "hf", 'model.mlp = "gelu" cannot be exported to hf'),
    (['model.pos_encoding="rope"', 'model.mlp="swiglu"'], "gguf", 'model.mlp = "swiglu" cannot be exported to gguf'),
    (['model.pos_encoding="rope"', "model.qk_norm=true"], "hf", "model.qk_norm = true cannot be exported to hf"),
    (['model.pos_encoding="rope"', *RMS_SWIGLU, "model.qk_norm=true", "model.bias=true"], "hf",
     "model.bias = true cannot be exported to hf"),
    (['model.pos_encoding="rope"', 'model.mlp="relu2"'], "gguf", 'model.mlp = "relu2" cannot be exported to gguf'),
    (["model.n_kv_head=2"], "hf", "model.n_kv_head = 2 cannot be exported to hf"),
    (["model.n_kv_head=1"], "gguf", "model.n_kv_head = 1 cannot be exported to gguf"),
    (["model.head_dim=48"], "hf", "model.head_dim = 48 cannot be exported to hf: GPT-2"),
    (['model.pos_encoding="rope"', "model.head_dim=48"], "gguf", "model.head_dim = 48 cannot be exported to gguf: Starcoder2"),
])
def test_unmapped_combinations_are_refused_by_setting(settings, fmt, refused):
    """RMSNorm, SwiGLU and QK-norm export only together as Llama / Qwen3 (rotary), GELU and
    squared ReLU only with LayerNorm as GPT-2 / Starcoder2; the refusal names the setting."""
    from llmtui.engine.inference import mapping

    cfg = load_config("cpu", NANOGPT + ['model.pos_encoding="learned"'] + settings)
    with pytest.raises(mapping.ExportError, match=refused) as info:
        mapping.architecture(cfg, fmt)
    assert "\n" not in str(info.value) and "exports" in str(info.value)


@pytest.mark.export
@pytest.mark.train
def test_an_unmappable_model_is_refused_before_anything_is_written(runs, tmp_path, capsys):
    out = tmp_path / "relu2-gguf"
    code, err = run_cli(capsys, "export", str(runs["learned-bpe-relu2"]), str(out), "--format", "gguf")
    assert code == 2 and err.count("\n") == 1
    assert 'model.mlp = "relu2" cannot be exported to gguf' in err and "GELU" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.export
@pytest.mark.train
def test_hf_config_matches_the_model(runs, tmp_path):
    from llmtui import export

    export(runs["learned-trained"], tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["activation_function"] == "gelu"
    assert config["tie_word_embeddings"] is False and config["eos_token_id"] == 0
    tok_config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert tok_config["clean_up_tokenization_spaces"] is False
    assert tok_config["eos_token"] == "<|endoftext|>"
    export(runs["qwen3-trained"], tmp_path / "qwen3")
    config = json.loads((tmp_path / "qwen3" / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["hidden_act"] == "silu" and config["head_dim"] == 16
    assert config["rms_norm_eps"] == 1e-5 and config["use_sliding_window"] is False
    assert config["attention_bias"] is False and config["tie_word_embeddings"] is False
    assert config["num_attention_heads"] == config["num_key_value_heads"] == 2
    for name, heads in (("llama-gqa-trained", 2), ("rope-gqa-trained", 1)):
        export(runs[name], tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert (config["num_attention_heads"], config["num_key_value_heads"]) == (4, heads)


@pytest.mark.export
@pytest.mark.parametrize("name, heads", [("llama-gqa-trained", 2), ("rope-gqa-trained", 1), ("rope-trained", 2)])
def test_gguf_holds_the_key_value_heads(name, heads, runs, tmp_path):
    """head_count_kv is what llama.cpp sizes k, v and its KV cache by."""
    from gguf import GGUFReader

    from llmtui import export

    export(runs[name], tmp_path / "out", format="gguf")
    reader = GGUFReader(str(tmp_path / "out" / "model.gguf"))
    arch = "llama" if name.startswith("llama") else "starcoder2"
    query_heads = 4 if "gqa" in name else 2          # of 8 (gqa) or 16 numbers each
    assert reader.fields[f"{arch}.attention.head_count"].contents() == query_heads
    assert reader.fields[f"{arch}.attention.head_count_kv"].contents() == heads
    k_shape = {t.name: sorted(t.shape.tolist()) for t in reader.tensors}["blk.0.attn_k.weight"]
    assert k_shape == sorted([32, heads * 32 // query_heads])


@pytest.mark.export
def test_every_exported_file_gets_the_same_permissions(runs, tmp_path):
    """model.safetensors was 0600 (the safetensors writer's own mode) beside 0644 files:
    every file of an export has the mode this process gives new files (umask)."""
    import os

    from llmtui import export

    umask = os.umask(0)
    os.umask(umask)
    for fmt in ("hf", "gguf"):
        result = export(runs["rope-trained"], tmp_path / fmt, format=fmt)
        modes = {name: oct((result.out / name).stat().st_mode & 0o777) for name in result.files}
        assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
