"""Shared fixtures: tiny configs that really train in a second or two."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TIKTOKEN_CACHE = SHARED / "tiktoken_cache"
SHAKESPEARE = SHARED / "data" / "tinyshakespeare.txt"

# tests must never reach for the network: tiktoken reads its cache from here
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
# nor write into the user's home: llmtui's settings and caches go to a folder of the session
_HOME = tempfile.mkdtemp(prefix="llmtui-tests-home-")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")

TINY = [
    "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=16",
    "training.batch_size=4", "training.max_steps=30", "scheduler.warmup_steps=5",
    "eval.every_n_steps=10", "eval.max_batches=2", "logging.every_n_steps=5",
    "checkpoint.every_n_steps=0", "optimizer.learning_rate=3e-3",
    "scheduler.min_learning_rate=3e-4",
    # a sample at each evaluation, short: the preset's 150 tokens, one at a time on two
    # busy cores, cost tiny runs more than their training
    "eval.sample_tokens=16",
    # one thread: a 16k-parameter model's ops are too small to split, and the second core
    # is left to the app's UI thread and pytest (two threads made the tiny runs of
    # test_training and test_tui_first_use 1.5x slower on the busy 2-core machine)
    "run.threads=1",
]
# nanoGPT's model and optimizer, which the tests' figures assume; the cpu preset trains a
# modern recipe (tests/test_recipe_options.py sets those options where it tests them)
NANOGPT_MODEL = [
    'model.pos_encoding="learned"', 'model.norm="layernorm"', 'model.mlp="gelu"', "model.qk_norm=false",
    "model.tie_embeddings=true", 'optimizer.name="adamw"', "optimizer.embedding_learning_rate=0",
    "optimizer.head_learning_rate=0", "optimizer.gain_learning_rate=0", 'scheduler.kind="cosine"',
]
TINY = TINY + NANOGPT_MODEL


TIERS = {"unit", "train", "subprocess", "tui", "export"}


def pytest_collection_modifyitems(config, items):
    """Every test names its tiers (pyproject.toml lists them), and `unit` only alone: then
    `-m unit` is exactly the fast tier, and a new test cannot slip out of every tier."""
    bad = []
    for item in items:
        tiers = {m.name for m in item.iter_markers()} & TIERS
        if not tiers or ("unit" in tiers and len(tiers) > 1):
            bad.append(f"{item.nodeid}: {sorted(tiers) or 'no tier'}")
    if bad:
        raise pytest.UsageError("tests need one tier marker (unit alone, or any of train, subprocess, "
                                "tui, export):\n  " + "\n  ".join(bad))


@pytest.fixture(autouse=True)
def own_settings_folder(tmp_path_factory, monkeypatch):
    """Each test gets its own settings folder: a test that switches the theme
    (the app remembers it) must not restyle the snapshots of the tests after it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    """One prepared-data folder for the whole session: the builtin corpus is
    tokenized once and reused by every test that trains on it."""
    return tmp_path_factory.mktemp("prepared")


@pytest.fixture
def tiny(tmp_path, shared_data_dir):
    """Overrides for a tiny run whose files all land in tmp_path."""
    return TINY + [f'run.out_dir="{tmp_path / "runs"}"', f'data.prepared_dir="{shared_data_dir}"',
                   'run.name="tiny"', 'run.device="cpu"']


def shared_file(path: Path) -> Path:
    """A file or folder of ../shared (beside the repository) that a test needs. When it is
    missing the test fails and says so: a skip would let a run without the data look green."""
    if not path.exists():
        pytest.fail(f"{path} is missing: this test needs the shared folder {SHARED} beside the "
                    "repository (data/tinyshakespeare.txt, tiktoken_cache/)", pytrace=False)
    return path


def shakespeare_text() -> str:
    """tinyshakespeare's text, read when a test first needs it (never at import, so the
    suite collects without ../shared)."""
    return _read_text(shared_file(SHAKESPEARE))


@functools.cache
def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture
def gpt2_cache(monkeypatch):
    """tiktoken's gpt2 files from ../shared (tiktoken reads TIKTOKEN_CACHE_DIR at each load)."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(shared_file(TIKTOKEN_CACHE)))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
