"""A corpus that changes while it is being prepared is never kept as its prepared tokens.

The corpus is hashed first and tokenized after; a file truncated or replaced in
between was stored under the full file's hash, and a later run on the full file
reused those tokens (a run trained on about half of its data, without a word)."""

from __future__ import annotations

import os

import pytest

from conftest import shakespeare_text
from llmtui import load_config
from llmtui.engine.data import prepare
from llmtui.engine.errors import DataError

pytestmark = pytest.mark.unit



def corpus_text() -> str:
    return shakespeare_text()[:200_000]


def config(corpus, prepared, kind="char"):
    return load_config("cpu", [f'data.source="{corpus}"', f'data.prepared_dir="{prepared}"',
                               f'tokenizer.kind="{kind}"', "tokenizer.vocab_size=300"])


def cut_in_half(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def replace_same_size(path):
    new = path.with_name("new.txt")
    new.write_bytes(path.read_bytes().swapcase())   # as an editor saves: a new file renamed over it
    os.replace(new, path)


@pytest.mark.parametrize("change", [cut_in_half, replace_same_size])
@pytest.mark.parametrize("kind", ["char", "trained"])
def test_a_corpus_changed_while_tokenized_is_not_kept(tmp_path, monkeypatch, change, kind):
    monkeypatch.setattr(prepare, "PROGRESS_INTERVAL", 0)      # every read reports
    monkeypatch.setattr(prepare, "CHUNK_BYTES", 16 << 10)     # many reads
    corpus, prepared = tmp_path / "corpus.txt", tmp_path / "prepared"
    corpus.write_text(corpus_text(), encoding="utf-8")
    full = prepare.prepare_data(config(corpus, tmp_path / "clean", kind))

    changed = []

    def progress(stage, done, total):
        if stage == "tokenize" and not changed and 0 < done < total:
            change(corpus)                    # the user rewrites the corpus meanwhile
            changed.append(stage)

    with pytest.raises(DataError, match="changed while it was being prepared") as info:
        prepare.prepare_data(config(corpus, prepared, kind), progress=progress)
    assert changed and str(corpus) in str(info.value) and "\n" not in str(info.value)
    assert not prepared.exists() or list(prepared.iterdir()) == []   # nothing kept, no temporary folder

    corpus.write_text(corpus_text(), encoding="utf-8")                  # the complete corpus again
    again = prepare.prepare_data(config(corpus, prepared, kind))
    assert not again.reused and len(again.train) == len(full.train) and len(again.val) == len(full.val)


def test_a_corpus_left_alone_is_still_reused(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus_text()[:20_000], encoding="utf-8")
    cfg = config(corpus, tmp_path / "prepared")
    assert not prepare.prepare_data(cfg).reused
    assert prepare.prepare_data(cfg).reused
