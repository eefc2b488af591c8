"""The tables of a precomputed split store: names, columns, and which records feed them.

Every split (``<root>/<split>/``, a latent store) holds some of these tables. Ids are strings
and join the tables (``image_id`` everywhere, ``caption_id`` between captions, negatives and
pairs). ``Dv`` is the region / image latent width (EfficientNet-Lite0: 1280; bottom-up
attention: 2048), ``Dt`` the MiniLM width (384); ``F`` is the latent dtype of the card
(float16 by default). ``T`` is a text's WordPiece count (at most ``text.max_tokens``), ``N``
an image's region count.

=============  ===========================================================================
table          columns
=============  ===========================================================================
``regions``    ``image_id`` str; ``image_h``, ``image_w`` int32 (pixels); ``features``
               sequence [N, Dv] F (region features: encoder over region crops, or copied
               from bottom-up-attention files); ``boxes`` sequence [N, 4] float32 (pixels
               x1 y1 x2 y2)
``images``     ``image_id`` str; ``image_h``, ``image_w`` int32; ``image`` vector [Dv] F
               (whole-image latent; for region files without pixels: the mean of the
               region features)
``vqa``        ``question_id``, ``image_id``, ``question`` str; ``token_ids`` list int32
               [T] (compact vocabulary, no PAD); [``states`` sequence [T, Dt] F]
               ``answer_ids`` list int32 and ``answer_scores`` list float32 (the question's
               answers that are in ``answers.json``, with soft scores in [0, 1]);
               ``answer_type`` str (yes/no, number, other); ``family`` str;
               ``referent_boxes`` sequence [K, 4] float32 (pixels x1 y1 x2 y2 of the objects
               the answer is read from; K = 0 where there are none or the source has none)
``captions``   ``caption_id``, ``image_id``, ``caption`` str; ``token_ids``; [``states``];
               ``sentence`` vector [Dt] F (MiniLM sentence latent, L2-normalised before the
               cast); ``num_negatives`` int32
``negatives``  ``caption_id`` str (the true caption), ``rank`` int32 (0..), ``text`` str
               (one attribute or relation swapped); ``token_ids``; [``states``]
``refs``       ``ref_id``, ``image_id``, ``expression`` str; ``token_ids``; [``states``];
               ``target_box`` vector [4] float32 (pixels x1 y1 x2 y2); ``family`` str
``pairs``      ``image_id``, ``caption_id`` str; ``image`` vector [Dv] F; ``text`` vector
               [Dt] F -- one row per caption, the denormalised FuseMix training table
=============  ===========================================================================

``states`` columns exist only when the card says ``encoders.text.states``.
"""
from __future__ import annotations

from mmsearch.data.records import DatasetSplit
from mmsearch.data.store import ColumnSpec, list_of, scalar, sequence, vector

TEXT_TABLES: tuple[str, ...] = ("vqa", "captions", "negatives", "refs")
TEXT_COLUMN = {"vqa": "question", "captions": "caption", "negatives": "text", "refs": "expression"}
ID_COLUMN = {"vqa": "question_id", "captions": "caption_id", "negatives": "caption_id", "refs": "ref_id"}
IMAGE_TABLES: tuple[str, ...] = ("regions", "images")


def table_columns(
    table: str, *, region_dim: int, text_dim: int, dtype: str, states: bool, image_encoder: str, text_encoder: str
) -> dict[str, ColumnSpec]:
    """Column specs of ``table`` (see the module docstring)."""
    text = {"token_ids": list_of("int32")}
    if states:
        text["states"] = sequence(text_dim, dtype, encoder=text_encoder)
    size = {"image_h": scalar("int32"), "image_w": scalar("int32")}
    string = scalar("string")
    if table == "regions":
        return {"image_id": string, **size, "features": sequence(region_dim, dtype, image_encoder), "boxes": sequence(4, "float32")}
    if table == "images":
        return {"image_id": string, **size, "image": vector(region_dim, dtype, image_encoder)}
    if table == "vqa":
        return {
            "question_id": string,
            "image_id": string,
            "question": string,
            **text,
            "answer_ids": list_of("int32"),
            "answer_scores": list_of("float32"),
            "answer_type": string,
            "family": string,
            "referent_boxes": sequence(4, "float32"),
        }
    if table == "captions":
        return {
            "caption_id": string,
            "image_id": string,
            "caption": string,
            **text,
            "sentence": vector(text_dim, dtype, text_encoder),
            "num_negatives": scalar("int32"),
        }
    if table == "negatives":
        return {"caption_id": string, "rank": scalar("int32"), "text": string, **text}
    if table == "refs":
        return {
            "ref_id": string,
            "image_id": string,
            "expression": string,
            **text,
            "target_box": vector(4, "float32"),
            "family": string,
        }
    if table == "pairs":
        return {
            "image_id": string,
            "caption_id": string,
            "image": vector(region_dim, dtype, image_encoder),
            "text": vector(text_dim, dtype, text_encoder),
        }
    raise KeyError(f"unknown table {table!r}")


def available_tables(split: DatasetSplit) -> tuple[str, ...]:
    """Tables the records of ``split`` can fill (images always; the rest when records exist)."""
    out = ["regions", "images"]
    if split.vqa:
        out.append("vqa")
    if split.captions:
        out += ["captions", "pairs"]
        if any(c.hard_negatives for c in split.captions):
            out.append("negatives")
    if split.refs:
        out.append("refs")
    return tuple(out)


__all__ = ["ID_COLUMN", "IMAGE_TABLES", "TEXT_COLUMN", "TEXT_TABLES", "available_tables", "table_columns"]
