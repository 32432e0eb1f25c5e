import json
import sys

import pytest

from llmtui.engine.data import corpus
from llmtui.engine.data.tokenizers import (
    BpeTokenizer,
    CharTokenizer,
    tokenizer_from_json,
)
from llmtui.engine.errors import DataError

pytestmark = pytest.mark.unit



# --- builtin corpus -------------------------------------------------------

def test_builtin_corpus_is_offline_text():
    text = corpus.builtin_text()
    assert len(text) > 100_000
    assert corpus.builtin_text() is text  # cached


def test_builtin_corpus_falls_back_to_docstrings(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydoc_data.topics", None)  # import now fails
    text = corpus.builtin_text.__wrapped__()
    assert len(text) > 10_000
    assert "json" in text


# --- char -----------------------------------------------------------------

def test_char_round_trip():
    text = "Hello, wörld! ✓\n"
    tok = CharTokenizer(text)
    assert tok.chars == sorted(set(text))
    assert tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode_array(text).tolist() == ids
    assert tok.kind == "char" and tok.eot_token is None


def test_char_unknown_characters():
    tok = CharTokenizer("abc")
    with pytest.raises(DataError, match="'z'"):
        tok.encode("abz")
    with pytest.raises(DataError, match="'z'"):
        tok.encode_array("abz")
    assert tok.encode("azb", strict=False) == [0, 1]
    assert tok.encode_array("a\U0001F600b", strict=False).tolist() == [0, 1]
    assert tok.decode([0, 99, 2]) == "a\ufffdc"


def test_char_vocab_json_round_trip_and_fingerprint():
    tok = CharTokenizer("hello world")
    d = json.loads(json.dumps(tok.to_json()))
    back = tokenizer_from_json(d)
    assert isinstance(back, CharTokenizer)
    assert back.chars == tok.chars
    assert back.encode("hello") == tok.encode("hello")
    assert back.fingerprint() == tok.fingerprint() == CharTokenizer(list("dlrow olleh")).fingerprint()
    assert tok.fingerprint() != CharTokenizer("hello worlds").fingerprint()


def test_char_fingerprint_known_value():
    # The canonical form is a contract: prepared datasets and checkpoints store
    # fingerprints, so it must not drift between versions.
    import hashlib
    expected = hashlib.sha256(b'{"chars":["a","b","c"],"kind":"char"}').hexdigest()
    assert CharTokenizer("cab").fingerprint() == expected


def test_char_from_json_keeps_order_and_validates():
    tok = CharTokenizer.from_json({"kind": "char", "chars": ["b", "a"]})
    assert tok.encode("ab") == [1, 0]
    with pytest.raises(DataError):
        CharTokenizer.from_json({"kind": "char", "chars": ["a", "a"]})
    with pytest.raises(DataError):
        CharTokenizer.from_json({"kind": "char", "chars": ["ab"]})
    with pytest.raises(DataError, match="kind"):
        tokenizer_from_json({"kind": "wordpiece"})


# --- bpe ------------------------------------------------------------------

def test_bpe_gpt2_offline(gpt2_cache):
    tok = BpeTokenizer("gpt2")
    assert tok.vocab_size == 50257
    assert tok.eot_token == 50256
    assert tok.kind == "bpe"
    assert tok.encode("Hello world") == [15496, 995]
    # encode_ordinary: special-token text in a corpus is just text
    assert tok.encode("<|endoftext|>") != [50256]
    assert tok.encode_batch(["Hello world", "a b"], num_threads=2) == [[15496, 995], tok.encode("a b")]
    assert tok.decode(tok.encode("Hello world")) == "Hello world"
    assert tok.decode([15496, 60000, 995]) == "Hello\ufffd world"


def test_bpe_json_round_trip_and_fingerprint(gpt2_cache):
    tok = BpeTokenizer("gpt2")
    back = tokenizer_from_json(json.loads(json.dumps(tok.to_json())))
    assert isinstance(back, BpeTokenizer) and back.encoding == "gpt2"
    assert back.fingerprint() == tok.fingerprint()
    assert len(tok.fingerprint()) == 64
    assert BpeTokenizer("r50k_base").fingerprint() != tok.fingerprint()
    with pytest.raises(DataError, match="50304"):
        tokenizer_from_json({"kind": "bpe", "encoding": "gpt2", "n_vocab": 50304})


def test_bpe_unknown_encoding_lists_names():
    with pytest.raises(DataError) as err:
        BpeTokenizer("no_such_encoding")
    msg = str(err.value)
    assert 'tokenizer.encoding = "no_such_encoding"' in msg
    assert "gpt2" in msg and "cl100k_base" in msg
    assert "\n" not in msg


def test_bpe_missing_files_says_how_to_provide_them(monkeypatch, tmp_path):
    import requests
    import tiktoken.load
    import tiktoken.registry

    # An empty cache and no network; the download is faked to fail at once so
    # the test never waits on a real connection.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})

    def offline(url):
        raise requests.ConnectionError(f"Failed to resolve host for {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    with pytest.raises(DataError) as err:
        BpeTokenizer("cl100k_base")
    msg = str(err.value)
    assert 'tokenizer.encoding = "cl100k_base"' in msg
    assert str(tmp_path) in msg
    assert "TIKTOKEN_CACHE_DIR" in msg and "network" in msg
    assert "\n" not in msg
