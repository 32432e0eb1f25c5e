"""LLMBuilder's Python API (source document 003), over llmtui's engine."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import llmtui
from conftest import TINY, read_jsonl
from llmtui.engine.errors import UserError

pytestmark = pytest.mark.train


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "training_data.txt"
    path.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(200)))
    return path


def tiny_config(tmp_path, shared_data_dir):
    return llmtui.load_config(preset="cpu", overrides=TINY + [
        f'run.out_dir="{tmp_path / "runs"}"', f'data.prepared_dir="{shared_data_dir}"', 'run.device="cpu"',
        "training.max_steps=20"])


def test_load_config_takes_preset_as_llmbuilder_spells_it():
    assert llmtui.load_config(preset="cpu") == llmtui.load_config("cpu")


def test_build_model_then_train_model_as_003_shows(corpus, tmp_path, shared_data_dir):
    from llmtui.data import TextDataset

    config = tiny_config(tmp_path, shared_data_dir)
    model = llmtui.build_model(config.model)
    assert isinstance(model, torch.nn.Module)
    dataset = TextDataset(corpus, block_size=config.model.block_size)
    results = llmtui.train_model(model, dataset, config.training)
    for name in ("final_train_loss", "final_val_loss", "best_val_loss", "training_time"):
        assert isinstance(getattr(results, name), float)
    assert results.steps == 20 and (results.run_dir / "last").is_dir()
    # the preset's other sections came with config.training (its optimizer, its run name)
    assert results.run_dir.name == config.run.name
    # trained in place: the caller's module holds the trained weights, with the corpus's vocabulary
    start = next(r for r in read_jsonl(results.metrics_path) if r["kind"] == "start")
    assert model.config.vocab_size == start["vocab_size"]
    saved = load_file(str(results.run_dir / "last" / "model.safetensors"))
    mine = {k: v for k, v in model.state_dict().items() if k in saved}
    assert mine and all(torch.equal(v, saved[k]) for k, v in mine.items())


def test_trainer_with_model_datasets_and_config(corpus, tmp_path, shared_data_dir):
    from llmtui.data import TextDataset

    config = tiny_config(tmp_path, shared_data_dir)
    val = tmp_path / "val.txt"
    val.write_text("the lazy dog sleeps while the quick brown fox jumps\n" * 40)
    trainer = llmtui.Trainer(model=llmtui.build_model(config.model), train_dataset=TextDataset(corpus),
                             val_dataset=TextDataset(val), config=config.training)
    results = trainer.train()
    assert results.final_val_loss is not None and results.best_val_loss <= results.final_val_loss
    # the existing forms still work
    assert llmtui.Trainer(tiny_config(tmp_path / "b", shared_data_dir)).run().steps == 20


def test_a_model_of_ones_own_is_refused_in_one_line(corpus):
    from llmtui.data import TextDataset

    with pytest.raises(UserError, match="out of scope") as caught:
        llmtui.train_model(torch.nn.Linear(3, 3), TextDataset(corpus), llmtui.load_config("cpu").training)
    assert "\n" not in str(caught.value)


def test_a_dataset_that_does_not_exist_is_one_line(tmp_path):
    from llmtui.data import TextDataset

    with pytest.raises(UserError, match="no such file"):
        TextDataset(tmp_path / "missing.txt", block_size=64)
