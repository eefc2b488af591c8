"""Compact WordPiece vocabulary, id encoding, pretrained embedding rows, MMnas word tokenizer."""
from __future__ import annotations

import json

import pytest
import torch

from mmsearch.data.text import (
    PAD_ID,
    UNK_ID,
    Vocabulary,
    encode_ids,
    minilm_embedding_rows,
    simple_tokenize,
)
from mmsearch.encoders import WordPieceTokenizer, minilm_input_embeddings

TRAIN = [
    "A red cube is left of the blue sphere.",
    "The blue sphere is small.",
    "Is there a red cube?",
]


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer()


@pytest.fixture(scope="module")
def vocab(tokenizer) -> Vocabulary:
    return Vocabulary.build(TRAIN, tokenizer=tokenizer)


def test_vocabulary_orders_pieces_by_frequency(vocab):
    assert vocab.tokens[:2] == ("[PAD]", "[UNK]")
    # "is" 3 times; ".", "a", "blue", "cube", "red", "sphere", "the" twice (ties alphabetical); then once.
    assert vocab.tokens[2] == "is"
    twos = [".", "a", "blue", "cube", "red", "sphere", "the"]
    assert list(vocab.tokens[3:10]) == twos
    assert vocab.counts[2] == 3 and all(c == 2 for c in vocab.counts[3:10])
    assert set(vocab.tokens[10:]) == {"?", "left", "of", "small", "there"} and all(c == 1 for c in vocab.counts[10:])
    assert len(vocab) == len(set(vocab.tokens))


def test_min_count_and_max_size(tokenizer):
    frequent = Vocabulary.build(TRAIN, min_count=2, tokenizer=tokenizer)
    assert frequent.tokens == ("[PAD]", "[UNK]", "is", ".", "a", "blue", "cube", "red", "sphere", "the")
    assert frequent.counts[1] == 5  # the five pieces seen once are counted as UNK
    capped = Vocabulary.build(TRAIN, max_size=4, tokenizer=tokenizer)
    assert capped.tokens == ("[PAD]", "[UNK]", "is", ".")
    with pytest.raises(ValueError, match="min_count"):
        Vocabulary.build(TRAIN, min_count=0, tokenizer=tokenizer)


def test_encode_ids_pads_cuts_and_maps_unknowns(vocab):
    ids, mask = encode_ids(["Is the cube RED?", "A green pyramid", ""], vocab, max_tokens=4)
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool and ids.shape == (3, 4)
    assert ids[0].tolist() == [vocab.index("is"), vocab.index("the"), vocab.index("cube"), vocab.index("red")]
    assert ids[1, 0] == vocab.index("a") and ids[1, 1] == UNK_ID  # "green" was never seen
    assert mask[2].all() and (ids[2] == PAD_ID).all()
    assert torch.equal(mask, ids == PAD_ID)
    longest, _ = encode_ids(["Is the cube RED?", "A"], vocab)
    assert longest.shape == (2, 5)  # "is the cube red ?" = 5 pieces


def test_save_load_roundtrip_is_atomic_json(vocab, tmp_path, tokenizer):
    path = vocab.save(tmp_path / "sub" / "vocab.json")
    data = json.loads(path.read_text())
    assert data["tokens"] == list(vocab.tokens) and data["format"] == "mmsearch.vocabulary"
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temp file left behind
    loaded = Vocabulary.load(path, tokenizer=tokenizer)
    assert loaded == vocab and loaded.counts == vocab.counts
    assert torch.equal(encode_ids(TRAIN, loaded, 8)[0], encode_ids(TRAIN, vocab, 8)[0])


def test_load_rejects_bad_files(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Vocabulary.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an mmsearch vocabulary"):
        Vocabulary.load(bad, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["cube", "[PAD]"], tokenizer=tokenizer)
    with pytest.raises(ValueError, match="not a MiniLM WordPiece token"):
        Vocabulary(["[PAD]", "[UNK]", "notapiece!!"], tokenizer=tokenizer)


def test_embedding_rows_are_minilm_input_embeddings(vocab, tokenizer):
    table = minilm_input_embeddings()
    assert table.shape == (tokenizer.vocab_size, 384)
    rows = minilm_embedding_rows(vocab, table)
    assert rows.shape == (len(vocab), 384) and rows.dtype == torch.float32
    assert (rows[PAD_ID] == 0).all()
    torch.testing.assert_close(rows[UNK_ID], table[tokenizer.unk_id])
    torch.testing.assert_close(rows[vocab.index("sphere")], table[tokenizer.token_to_id("sphere")])


def test_simple_tokenize_is_mmnas_style():
    assert simple_tokenize("What's the man's T-shirt colour? (red/blue)") == [
        "whats", "the", "mans", "t", "shirt", "colour", "red", "blue",
    ]
