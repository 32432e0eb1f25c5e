"""Fine-tuning in the app (issue 19): the hardware screen proposes it on a small machine,
and the wizard's "Start from" field (model.init_from) checks the source as it is typed.
Driven with Pilot and checked on what the terminal shows."""

from __future__ import annotations

import pytest
from pilot import make_app, quick_idle, run, screen_text, set_field, wait_for, wait_screen  # noqa: F401

from fakes import fake_hardware_cpu_only, fixed_recommendation, static_text

pytestmark = pytest.mark.tui


def test_a_small_machine_is_offered_fine_tuning(tmp_path):
    """The proposal (recommend() on the detected machine, here a CPU; test_hardware checks
    which machines are small) names the fine-tuning preset and why; the preset list holds
    it, so choosing it opens the wizard on it."""
    preset = "finetune-cpu"
    app = make_app(tmp_path, hardware=fake_hardware_cpu_only())

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await wait_for(pilot, lambda: app.recommendation is not None, what="the proposal")
            await pilot.pause()
            shown = " ".join(static_text(app.screen.query_one("#hw-recommendation")).split())
            assert f"Or fine-tune: {preset}" in shown
            assert "fine-tuned on your text beats anything trained from scratch" in shown
            assert "Or fine-tune:" in screen_text(app)
            app.screen.open_preset(preset)
            await wait_screen(pilot, "WizardScreen")
            assert app.screen.doc.get("model.init_from").startswith("hf:")

    run(drive())


def llama_folder(folder):
    """A Hugging Face Llama folder as transformers writes one (config.json and safetensors
    weights; the form reads only config.json, so the weights file holds no tensors)."""
    import json

    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 48,
        "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "vocab_size": 300, "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}))
    save_file({}, str(folder / "model.safetensors"))
    return folder


def add_tokenizer(folder):
    """A byte-level BPE tokenizer.json (the `tokenizers` library's format) of 300 tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["a few words of text"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(folder / "tokenizer.json"))


def test_the_start_from_field_checks_the_source_as_it_is_typed(tmp_path, monkeypatch):
    """model.init_from is the model form's first field, "Start from": what it names is
    checked on each change (a folder that is no run and no model folder is one line under
    the field, an hf: id is checked for its shape, nothing downloaded); once it names a
    source, the settings that come from it say so, show the source's values, and the
    preset's own architecture steps aside (back to scratch puts it back)."""
    from fakes import runs_dir_with_demo
    from llmtui.tui.widgets.config_field import ConfigField, field_id

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))     # empty: nothing cached
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = llama_folder(tmp_path / "tiny-llama")
    run_dir = runs_dir_with_demo(tmp_path) / "shakespeare-char"
    hardware = fake_hardware_cpu_only()
    app = make_app(tmp_path, hardware=hardware, recommendation=fixed_recommendation(hardware))

    async def drive():
        async with app.run_test(size=(120, 50)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            app.screen.open_preset("cpu")
            await wait_screen(pilot, "WizardScreen")
            wizard = app.screen
            await pilot.pause()

            def field(path: str) -> ConfigField:
                return wizard.query_one(f"#{field_id(path)}", ConfigField)

            def under(path: str) -> str:
                f = field(path)
                return " ".join(static_text(w) for w in f.query(".field-source, .field-info, .field-error")
                                if w.display and w.parent.display and str(static_text(w)).strip())

            async def start_from(text: str, says: str):
                field("model.init_from").control_widget.value = text      # as pasted
                await wait_for(pilot, lambda: says in under("model.init_from"), 10, f"{says!r} under the field")
                await pilot.pause()

            first = wizard.query_one("#form-model").query(ConfigField).first()
            assert first.spec.path == "model.init_from"
            assert "Start from" in screen_text(app) and "random weights" in under("model.init_from")
            preset_layers = wizard.doc.get("model.n_layer")
            preset_rate = wizard.doc.get("optimizer.learning_rate")
            assert preset_rate > 1e-3                                        # from scratch: muon at 5e-3

            await start_from(str(tmp_path / "nowhere"), "no such folder")
            assert field("model.init_from").has_class("-invalid") and wizard.query_one("#save").disabled
            await start_from(str(tmp_path), "neither an llmtui run or checkpoint")
            await start_from("hf:gpt2", 'not a Hugging Face model id; expected "hf:ORG/NAME"')

            await start_from(str(folder), "has no tokenizer.json")           # it cannot run without one
            add_tokenizer(folder)
            field("model.init_from").control_widget.value = ""
            await start_from(str(folder), "Hugging Face llama model: 3 layers x 48 wide, 4 heads, context 512")
            assert not field("model.init_from").has_class("-invalid")
            layers = field("model.n_layer")
            assert layers.has_class("-from-source") and "from the start model: 3" in under("model.n_layer")
            assert layers.control_widget.disabled and layers.control_widget.value == "3"   # the model's
            assert "model.n_layer" not in wizard.doc.dumps().split("[model]")[1].split("[")[0]
            assert "from the start model: 2" in under("model.n_kv_head")
            assert "at most 512" in under("model.block_size")
            assert not field("model.dropout").has_class("-from-source")      # the user's choice
            assert not wizard.query_one("#save").disabled
            # the preset's from-scratch rates would wreck the pretrained weights: out, so the
            # fine-tuning default applies (the engine refuses them: test_import_hf)
            written = wizard.doc.values().get("optimizer", {})
            assert not {"learning_rate", "embedding_learning_rate", "gain_learning_rate"} & set(written)
            from llmtui.engine.training.init_from import preview
            assert preview(wizard.doc.to_config(), wizard.source).optimizer.learning_rate == 1e-4
            wizard.show_section("tokenizer")
            await pilot.pause()
            assert "from the start model" in under("tokenizer.kind")
            wizard.show_section("model")
            await pilot.pause()

            await start_from("hf:HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M from the Hugging Face Hub")
            assert "its size is known once it" in screen_text(app)          # no figures of a model not built
            await start_from(str(run_dir), "llmtui run (its last checkpoint)")

            await start_from("scratch", "random weights")
            assert wizard.doc.get("model.n_layer") == preset_layers          # the preset's, put back
            assert wizard.doc.get("optimizer.learning_rate") == preset_rate
            assert not field("model.n_layer").has_class("-from-source")
            assert not field("model.n_layer").control_widget.disabled
            assert field("model.n_layer").control_widget.value == str(preset_layers)

    run(drive())
