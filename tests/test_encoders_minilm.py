"""MiniLM: real sentence similarity, per-token states aligned with the compact token ids."""
from __future__ import annotations

import pytest
import torch

from mmsearch.data.text import Vocabulary, encode_ids
from mmsearch.encoders import MiniLMEncoder, build_encoder

FOOD = "A man is eating food."
BREAD = "A man is eating a piece of bread."
STOCKS = "The stock market crashed today."


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP threads spinning on each other cost 3-5x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def encoder() -> MiniLMEncoder:
    return build_encoder("minilm", batch_size=2)


def test_sentence_similarity_is_real(encoder):
    z = encoder.embed([FOOD, BREAD, STOCKS])
    assert z.shape == (3, 384) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(3))
    related, unrelated = float(z[0] @ z[1]), float(z[0] @ z[2])
    assert related > 0.7 and abs(unrelated) < 0.1, (related, unrelated)


def test_pooled_latent_matches_standard_huggingface_pipeline(encoder):
    """Our own [CLS]/[SEP] assembly and length-sorted chunks give what the HF tokenizer + mean pooling give."""
    from transformers import AutoTokenizer

    from mmsearch.encoders import minilm_model_dir

    texts = [FOOD, "", STOCKS, "Two dogs, one frisbee -- and a very long, winding afternoon in the park!"]
    tok = AutoTokenizer.from_pretrained(str(minilm_model_dir()), local_files_only=True)
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.bert(**batch).last_hidden_state
    weights = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    torch.testing.assert_close(encoder.embed(texts), reference, rtol=1e-4, atol=1e-5)


def test_states_masks_and_alignment_with_compact_ids(encoder):
    texts = [BREAD, "Yes", "An unbelievably xylophonic quokka"]
    out = encoder.encode(texts, max_tokens=6)
    assert out.states.shape == (3, 6, 384) and out.states.dtype == torch.float32
    assert out.mask.dtype == torch.bool and out.token_ids.dtype == torch.int64
    assert out.mask.tolist()[1] == [False] + [True] * 5  # "yes" is one piece
    assert not out.mask[0].any() and not out.mask[2].any()  # cut to 6 pieces
    assert (out.states[out.mask] == 0).all() and (out.states[~out.mask].abs().sum(-1) > 0).all()
    assert (out.token_ids[out.mask] == 0).all()
    # Position t of the states is position t of the learned-embedding ids: same pieces.
    vocab = Vocabulary.build(texts, tokenizer=encoder.tokenizer)
    ids, mask = encode_ids(texts, vocab, max_tokens=6)
    assert torch.equal(mask, out.mask)
    assert torch.equal(torch.from_numpy(vocab.minilm_ids)[ids], out.token_ids)
    pieces = [encoder.tokenizer.id_to_token(int(i)) for i in out.token_ids[2]]
    assert pieces[0] == "an" and any(p.startswith("##") for p in pieces)


def test_states_do_not_depend_on_batch_composition(encoder):
    alone = encoder.encode([STOCKS], max_tokens=10)
    mixed = encoder.encode([BREAD, STOCKS, "hi"], max_tokens=10)
    torch.testing.assert_close(mixed.states[1], alone.states[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed.pooled[1], alone.pooled[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(mixed.mask[1], alone.mask[0])


def test_default_width_is_longest_text_and_empty_text_is_all_padding(encoder):
    out = encoder.encode(["", FOOD])
    assert out.states.shape == (2, 6, 384)  # "a man is eating food ." = 6 pieces
    assert out.mask[0].all() and not out.mask[1].any()
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(2))


def test_bad_inputs_fail_clearly(encoder):
    with pytest.raises(TypeError, match="list of texts"):
        encoder.encode("a single string")
    with pytest.raises(TypeError, match="not a str"):
        encoder.encode(["ok", 3])
    with pytest.raises(ValueError, match="max_tokens"):
        encoder.encode(["ok"], max_tokens=0)
    with pytest.raises(ValueError, match="max_tokens"):
        encoder.encode(["ok"], max_tokens=600)
