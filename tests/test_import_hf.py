"""Hugging Face model folders in llmtui: eval, sample, export and model.init_from.

Each family's folder is made by transformers itself (its *Config, random weights,
save_pretrained) with a tokenizer made by the `tokenizers` library, offline; llmtui
must then compute what transformers computes on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from conftest import SHAKESPEARE
from llmtui.cli import main as cli_main
from llmtui.engine.errors import UserError

pytestmark = [pytest.mark.train, pytest.mark.export]

BLOCK = 64
TEXT = SHAKESPEARE.read_text(encoding="utf-8")
EOT = "<|endoftext|>"

# family -> (config class, settings): tiny, every weight random (biases and norm gains too)
FAMILIES = {
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=2, n_positions=BLOCK, activation_function="gelu_new",
                                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
    "llama": ("LlamaConfig", dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, max_position_embeddings=BLOCK, rms_norm_eps=1e-6,
                                  tie_word_embeddings=False)),
    # SmolLM2 is a llama with tied embeddings, rope_theta 1e5, eps 1e-5 and grouped-query
    # attention (135M: 9 query heads share 3 key/value heads)
    "smollm2": ("LlamaConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                    num_key_value_heads=2, max_position_embeddings=BLOCK, rms_norm_eps=1e-5,
                                    rope_theta=100000.0, tie_word_embeddings=True)),
    "mistral": ("MistralConfig", dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=2, max_position_embeddings=BLOCK, sliding_window=4096,
                                      tie_word_embeddings=False)),
    "qwen2": ("Qwen2Config", dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, max_position_embeddings=BLOCK, tie_word_embeddings=True,
                                  vocab_pad=8)),
    "qwen3": ("Qwen3Config", dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, head_dim=16, max_position_embeddings=BLOCK,
                                  tie_word_embeddings=False)),
    # every released Qwen3 has a head_dim apart from hidden_size / heads (0.6B: 16 heads of 128
    # in 1,024): here 4 heads of 16 (q 64 wide) in a 32-wide model, 2 key/value heads
    "qwen3-head-dim": ("Qwen3Config", dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                           max_position_embeddings=BLOCK, tie_word_embeddings=True)),
}


def make_tokenizer(folder: Path) -> None:
    """A byte-level BPE of 300 tokens, trained by the `tokenizers` library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT[:20000]], trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOT, "clean_up_tokenization_spaces": False}))


def make_folder(folder: Path, family: str, **changes) -> Path:
    """A tiny model of `family` saved by transformers into `folder` (random weights)."""
    from tokenizers import Tokenizer

    folder.mkdir(parents=True)
    make_tokenizer(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    class_name, settings = FAMILIES[family]
    settings = dict(settings, **changes)
    vocab = tok.get_vocab_size() + settings.pop("vocab_pad", 0)
    eot = tok.token_to_id(EOT)
    config = getattr(transformers, class_name)(vocab_size=vocab, bos_token_id=eot, eos_token_id=eot, **settings)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.normal_(1.0, 0.1)       # gains near one, each different
            else:
                p.normal_(0.0, 0.2)       # biases too: a bias left out would show
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {family: make_folder(root / family, family) for family in FAMILIES}


def hf_model(folder: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def hf_ids(folder: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False).ids


@torch.no_grad()
def hf_mean_loss(model, ids: list[int], block: int) -> float:
    """transformers' mean loss over llmtui eval's windows: block_size predictions each,
    overlapping by one token, the shorter last one included."""
    nats, count, start = 0.0, 0, 0
    while len(ids) - start >= 2:
        window = torch.tensor([ids[start:start + block + 1]])
        logits = model(window[:, :-1]).logits
        nats += torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum").item()
        count += window.size(1) - 1
        start += block
    return nats / count


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def eval_json(capsys, target, data: Path) -> dict:
    code, out, err = cli(capsys, "eval", target, "--data", data, "--json", "--device", "cpu")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("evaldata") / "held_out.txt"
    path.write_text(TEXT[-1500:], encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# eval and sample compute what transformers computes

@pytest.mark.parametrize("family", list(FAMILIES))
def test_eval_of_a_folder_equals_transformers_loss(family, folders, eval_file, capsys):
    folder = folders[family]
    result = eval_json(capsys, folder, eval_file)
    ids = hf_ids(folder, eval_file.read_text(encoding="utf-8"))
    assert len(ids) > 2 * BLOCK      # several windows
    assert result["tokens"] == len(ids) - 1
    assert result["loss"] == pytest.approx(hf_mean_loss(hf_model(folder), ids, BLOCK), abs=1e-4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_sample_of_a_folder_equals_transformers_generate(family, folders, capsys):
    folder, prompt = folders[family], "ROMEO:\nBut soft"
    code, out, err = cli(capsys, "sample", folder, "--prompt", prompt, "--tokens", "24", "--temperature", "0",
                         "--device", "cpu")
    assert code == 0, err
    model = hf_model(folder)
    model.generation_config.eos_token_id = None      # llmtui does not stop at end-of-text
    ids = hf_ids(folder, prompt)
    out_ids = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False, pad_token_id=0)
    from tokenizers import Tokenizer
    expected = Tokenizer.from_file(str(folder / "tokenizer.json")).decode(out_ids[0, len(ids):].tolist(),
                                                                          skip_special_tokens=False)
    assert out == prompt + expected + "\n"


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "qwen3", "qwen3-head-dim"])
def test_export_of_a_folder_computes_what_the_folder_computes(family, folders, eval_file, tmp_path, capsys):
    folder = folders[family]
    code, out, err = cli(capsys, "export", folder, tmp_path / "out")
    assert code == 0, err
    ids = hf_ids(folder, eval_file.read_text(encoding="utf-8"))
    assert hf_mean_loss(hf_model(tmp_path / "out"), ids, BLOCK) == pytest.approx(
        hf_mean_loss(hf_model(folder), ids, BLOCK), abs=1e-5)


def test_a_qwen2_model_exports_to_gguf_with_its_qkv_biases(folders, eval_file, tmp_path, capsys):
    """Qwen2's biases on q/k/v alone (model.qkv_bias) go into GGUF as llama.cpp's qwen2 reads
    them (attn_q.bias, attn_k.bias, attn_v.bias); transformers' GGUF reader loads the file
    back and computes what the folder computes."""
    import gguf

    folder = folders["qwen2"]
    code, _, err = cli(capsys, "export", folder, tmp_path / "out", "--format", "gguf")
    assert code == 0, err
    reader = gguf.GGUFReader(str(tmp_path / "out" / "model.gguf"))
    assert bytes(reader.fields["general.architecture"].parts[-1]).decode() == "qwen2"
    names = {t.name for t in reader.tensors}
    assert {"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} <= names
    assert "blk.0.attn_output.bias" not in names and "blk.0.ffn_up.bias" not in names
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", gguf_file="model.gguf",
                                                               dtype=torch.float32).eval()
    assert type(loaded).__name__ == "Qwen2ForCausalLM"
    ids = hf_ids(folder, eval_file.read_text(encoding="utf-8"))
    assert hf_mean_loss(loaded, ids, BLOCK) == pytest.approx(hf_mean_loss(hf_model(folder), ids, BLOCK), abs=1e-4)


def test_a_gpt2_file_as_the_hub_ships_it(folders, eval_file, tmp_path, capsys):
    """openai-community/gpt2's model.safetensors: GPT2Model's names (no "transformer."),
    with the causal-mask buffers older transformers versions saved beside the weights."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "gpt2-hub"
    shutil.copytree(folders["gpt2"], folder)
    weights = load_file(str(folder / "model.safetensors"))
    hub = {k.removeprefix("transformer."): v for k, v in weights.items() if k != "lm_head.weight"}
    assert not any(k.startswith("transformer.") for k in hub) and "wte.weight" in hub
    for i in range(2):
        hub[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, BLOCK, BLOCK))
        hub[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(hub, str(folder / "model.safetensors"))
    assert eval_json(capsys, folder, eval_file)["loss"] == eval_json(capsys, folders["gpt2"], eval_file)["loss"]


# ---------------------------------------------------------------------------
# model.init_from: fine-tune, then export back

def finetune_overrides(tmp_path: Path, source, *extra: str) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT[:15000], encoding="utf-8")
    return [f'model.init_from="{source}"', f'data.source="{data}"', f'data.prepared_dir="{tmp_path / "prepared"}"',
            f'run.out_dir="{tmp_path / "runs"}"', 'run.name="ft"', 'run.device="cpu"', "model.block_size=32",
            "training.batch_size=8", "training.max_steps=30", "eval.every_n_steps=30", "eval.max_batches=2",
            "logging.every_n_steps=10", "checkpoint.every_n_steps=0", *extra]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_finetuning_a_folder_lowers_val_loss_and_exports_back(family, folders, eval_file, tmp_path, capsys):
    from llmtui import load_config
    from llmtui.engine.inference.export import export
    from llmtui.engine.training.trainer import Trainer

    folder = folders[family]
    before = eval_json(capsys, folder, eval_file)["loss"]
    cfg = load_config(None, finetune_overrides(tmp_path, folder))
    result = Trainer(cfg).run()        # the fine-tuning defaults: no learning rate given
    after = eval_json(capsys, result.run_dir, eval_file)
    assert after["loss"] < before - 0.01, (before, after["loss"])
    saved = load_config(result.run_dir / "config.toml")
    assert saved.optimizer.learning_rate == 1e-4 and saved.model.block_size == 32
    assert saved.tokenizer.kind == "trained" and saved.tokenizer.special_tokens == [EOT]

    out = export(result.run_dir, tmp_path / "exported", format="hf")
    model = hf_model(out.out)
    ids = hf_ids(out.out, eval_file.read_text(encoding="utf-8"))
    assert hf_mean_loss(model, ids, 32) == pytest.approx(after["loss"], abs=1e-4)
    if family in ("qwen2", "qwen3", "gpt2", "qwen3-head-dim"):
        assert type(model).__name__ == {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                                        "gpt2": "GPT2LMHeadModel", "qwen3-head-dim": "Qwen3ForCausalLM"}[family]
    if family == "qwen3-head-dim":      # the fine-tuned run keeps its heads of 16, and says so
        assert saved.model.head_dim == 16 and model.config.head_dim == 16


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_new_run_starts_from_the_weights(family, folders, eval_file, tmp_path, capsys):
    """One step at a negligible learning rate leaves the source's function: the run's
    loss is the folder's, not a fresh random model's (about ln 300 = 5.7 here)."""
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    folder = folders[family]
    cfg = load_config(None, finetune_overrides(tmp_path, folder, "training.max_steps=1",
                                               "optimizer.learning_rate=1e-9", "model.block_size=64"))
    result = Trainer(cfg).run()
    assert eval_json(capsys, result.run_dir, eval_file)["loss"] == pytest.approx(
        eval_json(capsys, folder, eval_file)["loss"], abs=1e-3)


def test_a_finetuned_run_can_be_the_source_of_another(folders, tmp_path, capsys):
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    first = Trainer(load_config(None, finetune_overrides(tmp_path / "a", folders["gpt2"], "training.max_steps=2"))
                    ).run()
    cfg = load_config(None, finetune_overrides(tmp_path / "b", first.run_dir, "training.max_steps=2",
                                               "model.block_size=16"))
    second = Trainer(cfg).run()
    assert load_config(second.run_dir / "config.toml").model.n_layer == 2


@pytest.mark.parametrize("kind", ["char", "trained"])
def test_a_run_with_a_tokenizer_of_its_corpus_passes_it_on(kind, tmp_path, capsys):
    """A run whose tokenizer was made from its own corpus (a char vocabulary, a BPE trained on
    it) as model.init_from: the new run reads its text with that tokenizer, not one made
    from the new corpus (whose ids would mean other things to the weights)."""
    from conftest import TINY
    from llmtui import load_config
    from llmtui.engine.data.tokenizers import tokenizer_from_json
    from llmtui.engine.training.trainer import Trainer

    own = ['tokenizer.kind="trained"', "tokenizer.vocab_size=300"] if kind == "trained" else []
    first = Trainer(load_config(None, TINY + finetune_overrides(tmp_path / "a", "scratch", *own)[1:] +
                                ["training.max_steps=2"])).run()
    # the new corpus: the same lines in another order (no character the first run lacks),
    # where a vocabulary made from it would differ (char: the same set, BPE: other merges)
    lines = TEXT[:15000].splitlines()
    second_dir = tmp_path / "b"
    overrides = TINY + finetune_overrides(second_dir, first.run_dir, "training.max_steps=2")
    (second_dir / "corpus.txt").write_text("\n".join(lines[::-1][:200]), encoding="utf-8")
    second = Trainer(load_config(None, overrides)).run()

    def tokenizer(run):
        return tokenizer_from_json(json.loads((run.run_dir / "last" / "tokenizer.json").read_text()))
    assert tokenizer(second).kind == kind
    assert tokenizer(second).fingerprint() == tokenizer(first).fingerprint()
    saved = load_config(second.run_dir / "config.toml").tokenizer
    assert saved.kind == kind and Path(saved.path).parent.parent == first.run_dir.resolve()
    if kind == "char":   # text the vocabulary cannot read: one line naming the file
        (second_dir / "corpus.txt").write_text("Naïve ☃\n" * 50, encoding="utf-8")
        (tmp_path / "c.toml").write_text("")
        again = [a for a in overrides if not a.startswith("run.name")] + ['run.name="c"']
        code, _, err = cli(capsys, "--run", tmp_path / "c.toml", *[x for a in again for x in ("-o", a)])
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "corpus.txt" in err and "not in the char vocabulary" in err


# ---------------------------------------------------------------------------
# refusals: one line, exit 2, nothing written

def test_config_keys_that_contradict_the_source_are_refused(folders, tmp_path, capsys):
    config = tmp_path / "finetune.toml"
    config.write_text(f'[model]\ninit_from = "{folders["llama"]}"\nn_layer = 7\n')
    args = finetune_overrides(tmp_path, folders["llama"])
    code, _, err = cli(capsys, "--run", config, *[x for a in args for x in ("-o", a)])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model.n_layer = 7" in err and "model.n_layer = 2" in err and "model.init_from" in err
    assert not (tmp_path / "runs").exists()


def test_a_context_longer_than_the_sources_is_refused(folders, tmp_path):
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    cfg = load_config(None, finetune_overrides(tmp_path, folders["gpt2"], "model.block_size=128"))
    with pytest.raises(UserError, match="model.block_size = 128 is longer than the 64-token context"):
        Trainer(cfg).run()


@pytest.mark.parametrize("field,value,named", [
    ("num_key_value_heads", 3, "num_key_value_heads"),      # must divide the 2 query heads
    ("rope_scaling", {"rope_type": "linear", "factor": 2.0}, "rope_scaling"),
    ("rope_parameters", {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}, "rope_parameters"),
    ("hidden_act", "gelu", "hidden_act"),
    ("head_dim", 7, "head_dim"),                             # rotary heads turn pairs: even
    ("some_new_field", 3, "some_new_field"),
])
def test_an_unmapped_source_is_refused_naming_the_field(field, value, named, folders, tmp_path, capsys):
    folder = tmp_path / "edited"
    folder.mkdir()
    for f in folders["llama"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = cli(capsys, "sample", folder, "--tokens", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"field {named} = " in err


def test_a_qwen3_with_its_own_head_size_exports_to_gguf_as_llama_cpp_reads_it(folders, eval_file, tmp_path,
                                                                              capsys):
    """llama.cpp's qwen3 reads the head size from attention.key_length / value_length (and
    rotates rope.dimension_count of each head): 16 here, not hidden_size / heads = 8.
    transformers' GGUF reader does not map key_length for qwen3, so it is given the file's."""
    import gguf

    folder = folders["qwen3-head-dim"]
    code, _, err = cli(capsys, "export", folder, tmp_path / "out", "--format", "gguf")
    assert code == 0, err
    reader = gguf.GGUFReader(str(tmp_path / "out" / "model.gguf"))

    def number(key: str) -> int:
        return int(reader.fields[key].parts[-1][0])
    assert [number(f"qwen3.{k}") for k in ("attention.key_length", "attention.value_length",
                                             "rope.dimension_count", "attention.head_count",
                                             "attention.head_count_kv", "embedding_length")] == [16, 16, 16, 4, 2, 32]
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}       # GGUF lists (in, out)
    assert shapes["blk.0.attn_q.weight"] == [32, 64] and shapes["blk.0.attn_k.weight"] == [32, 32]
    assert shapes["blk.0.attn_output.weight"] == [64, 32] and shapes["blk.0.attn_q_norm.weight"] == [16]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "out", gguf_file="model.gguf", dtype=torch.float32,
        head_dim=number("qwen3.attention.key_length")).eval()
    ids = hf_ids(folder, eval_file.read_text(encoding="utf-8"))
    theirs, ours = hf_model(folder), loaded
    with torch.no_grad():
        window = torch.tensor([ids[:BLOCK]])
        assert (theirs(window).logits - ours(window).logits).abs().max().item() < 1e-4


# Qwen3-0.6B's config.json as the Hub ships it (Qwen/Qwen3-0.6B)
QWEN3_06B = {"architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
             "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
             "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
             "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
             "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
             "rope_scaling": None, "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True,
             "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True,
             "use_sliding_window": False, "vocab_size": 151936}


def test_the_released_qwen3_shape_imports_with_its_head_size(tmp_path):
    """Qwen3-0.6B (16 heads of 128 in a 1,024-wide model, 8 key/value heads) is read as
    model.head_dim = 128, and llmtui counts the parameters transformers builds from the same
    config.json (on the meta device: nothing allocated), 596,049,920."""
    from llmtui.engine.model.import_hf import read_model
    from llmtui.engine.planning.sizing import count_params, kv_cache_bytes

    folder = tmp_path / "Qwen3-0.6B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN3_06B))
    (folder / "model.safetensors").write_bytes(b"")        # read_model looks at config.json alone
    settings = read_model(folder).settings
    assert (settings["n_embd"], settings["n_head"], settings["n_kv_head"], settings["head_dim"]) == (1024, 16, 8, 128)
    from llmtui import load_config
    cfg = load_config(None, [f"model.{k}={json.dumps(v)}" for k, v in settings.items()])
    with torch.device("meta"):
        reference = transformers.AutoModelForCausalLM.from_config(transformers.Qwen3Config(**QWEN3_06B))
    assert count_params(cfg.model, settings["vocab_size"])[0] == reference.num_parameters() == 596_049_920
    # the KV cache holds 8 heads of 128 per layer and position, not 8 of 1,024 / 16 = 64
    assert kv_cache_bytes(cfg.model, 1, bytes_per_number=2) == 2 * 2 * 28 * 8 * 128


def test_an_hf_id_missing_offline_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True, raising=False)
    code, _, err = cli(capsys, "sample", "hf:openai-community/gpt2", "--tokens", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "openai-community/gpt2" in err and "download" in err


def test_a_missing_hf_extra_is_one_line(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)     # as if not installed
    code, _, err = cli(capsys, "eval", "hf:HuggingFaceTB/SmolLM2-135M", "--data", __file__)
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'llmtui[hf]' in err


# ---------------------------------------------------------------------------
# fine-tuning that works the first time

def test_a_from_scratch_learning_rate_on_a_pretrained_model_is_refused(folders, tmp_path, capsys):
    """A from-scratch recipe (the cpu preset's muon at 5e-3) on pretrained weights wrecks
    them in a few steps. Refused in one line naming the key and the limit, nothing
    written; --force trains anyway; a fine-tuning rate passes."""
    config = tmp_path / "scratch-rates.toml"
    config.write_text(f'[model]\ninit_from = "{folders["llama"]}"\nblock_size = 32\n'
                      '[optimizer]\nname = "muon"\nlearning_rate = 0.005\nembedding_learning_rate = 0.01\n'
                      f'[run]\nout_dir = "{tmp_path / "runs"}"\ndevice = "cpu"\n'
                      f'[data]\nprepared_dir = "{tmp_path / "prepared"}"\n'
                      '[training]\nmax_steps = 1\n[eval]\nsample_tokens = 0\n[checkpoint]\nevery_n_steps = 0\n')
    code, _, err = cli(capsys, "--run", config)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "optimizer.learning_rate = 0.005 (and optimizer.embedding_learning_rate)" in err, err
    assert "from-scratch rate" in err and "at most 0.001" in err and "--force" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "prepared").exists()
    code, _, err = cli(capsys, "--run", config, "-o", "optimizer.learning_rate=1e-4",
                       "-o", "optimizer.embedding_learning_rate=0")
    assert code == 0, err
    code, _, err = cli(capsys, "--run", config, "-o", 'run.name="forced"', "--force")
    assert code == 0, err


def test_finetuning_defaults_and_what_the_user_set(folders):
    from llmtui import load_config
    from llmtui.engine.training import init_from

    cfg, source = init_from.apply(load_config(None, [f'model.init_from="{folders["gpt2"]}"', "training.max_steps=400"]))
    assert source.kind == "hf"
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.model.mlp, cfg.model.bias) == (2, 32, "gelu_tanh", True)
    assert cfg.model.block_size == BLOCK          # the default 64 -> the source's context (at most 1024)
    assert cfg.optimizer.learning_rate == 1e-4 and cfg.scheduler.min_learning_rate == pytest.approx(1e-5)
    assert cfg.scheduler.warmup_steps == 20 and cfg.scheduler.kind == "cosine"
    mine, _ = init_from.apply(load_config(None, [f'model.init_from="{folders["gpt2"]}"',
                                                 "optimizer.learning_rate=3e-5", "scheduler.warmup_steps=7"]))
    assert mine.optimizer.learning_rate == 3e-5 and mine.scheduler.warmup_steps == 7
    again, _ = init_from.apply(cfg)              # applying twice changes nothing
    assert again == cfg


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "llama", "qwen3-head-dim"])
def test_the_memory_estimate_counts_the_imported_model(family, folders):
    from llmtui import load_config
    from llmtui.engine.planning.sizing import count_params
    from llmtui.engine.training import init_from

    cfg, source = init_from.apply(load_config(None, [f'model.init_from="{folders[family]}"',
                                                     f"model.block_size={BLOCK}"]))
    assert count_params(cfg.model, cfg.model.vocab_size)[0] == hf_model(folders[family]).num_parameters()


def test_an_imported_model_that_cannot_fit_is_refused_before_allocation(folders, tmp_path, monkeypatch):
    import psutil

    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    real = psutil.virtual_memory()

    class Tight:  # a machine with 256 KiB free
        total, available = real.total, 256 * 2**10
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tight)
    cfg = load_config(None, finetune_overrides(tmp_path, folders["qwen2"]))
    with pytest.raises(UserError, match="will not fit.*pass --force"):
        Trainer(cfg).run()
    assert not (tmp_path / "runs" / "ft" / "metrics.jsonl").exists()


@pytest.mark.parametrize("preset,repo", [("finetune-gpt2", "openai-community/gpt2"),
                                         ("finetune-cpu", "HuggingFaceTB/SmolLM2-135M")])
def test_finetune_presets_validate_and_say_how_to_download(preset, repo, monkeypatch, tmp_path):
    from llmtui import load_config
    from llmtui.engine.training.trainer import Trainer

    cfg = load_config(preset, [f'run.out_dir="{tmp_path / "runs"}"'])
    assert cfg.model.init_from == f"hf:{repo}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(UserError) as refused:
        Trainer(cfg).run()
    line = str(refused.value)
    assert "\n" not in line and repo in line and f"hf download {repo}" in line
    assert not (tmp_path / "runs").exists()


def test_the_finetune_cpu_presets_auto_precision_follows_the_pretrained_width(folders, tmp_path, monkeypatch):
    """finetune-cpu says training.precision = "auto": on a CPU with AMX a pretrained model
    as wide as SmolLM2 (576; here AMX_BF16_MIN_WIDTH) fine-tunes in bf16, where fp32 measured
    half the speed, and a narrow one stays fp32; the width is the source's, read at the start."""
    from conftest import read_jsonl
    from llmtui import load_config
    from llmtui.engine.planning import cpu
    from llmtui.engine.training.trainer import Trainer

    assert load_config("finetune-cpu").training.precision == "auto"
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
    wide = make_folder(tmp_path / "wide", "smollm2", hidden_size=cpu.AMX_BF16_MIN_WIDTH, intermediate_size=256,
                       num_hidden_layers=1)
    for name, source, expected in (("wide", wide, "bf16"), ("narrow", folders["smollm2"], "fp32")):
        cfg = load_config("finetune-cpu", finetune_overrides(tmp_path / name, source, "training.max_steps=2",
                                                             "training.grad_accum_steps=1", "training.batch_size=2"))
        result = Trainer(cfg).run()
        start = next(e for e in read_jsonl(result.metrics_path) if e["kind"] == "start")
        assert start["precision"] == expected, name
