"""Streaming one JSON array out of a big document, across buffer refills."""
from __future__ import annotations

import json
import logging

import pytest

import mmsearch.data.loaders.json_stream as json_stream
from mmsearch.data.loaders import JSONFormatError, iter_json_array


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Refill every 7 characters, so every element straddles buffer boundaries."""
    monkeypatch.setattr(json_stream, "CHUNK_CHARS", 7)


DOC = {
    "info": {"description": "a \"quoted\" ] string, with [brackets]", "year": 2017},
    "license": [1, 2, {"nested": [3]}],
    "questions": [
        {"question_id": 1234567, "image_id": 9, "question": "Is it ünïcödé?"},
        {"question_id": 2, "image_id": 10, "question": "How many?"},
        1234567890,
        -0.5e-3,
        "text",
        None,
    ],
    "tail": 123456789,
}


def test_elements_equal_json_load_across_refills(tmp_path, tiny_chunks):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(DOC, indent=1, ensure_ascii=False), encoding="utf-8")
    assert list(iter_json_array(path, "questions")) == DOC["questions"]
    assert list(iter_json_array(path, "license")) == DOC["license"]


def test_top_level_array_and_empty_arrays(tmp_path, tiny_chunks):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"a": 1}, [2, 3], 45678901]))
    assert list(iter_json_array(path)) == [{"a": 1}, [2, 3], 45678901]
    empty = tmp_path / "empty.json"
    empty.write_text('{"images": [ ]}')
    assert list(iter_json_array(empty, "images")) == []


def test_missing_key_wrong_type_and_broken_json(tmp_path):
    path = tmp_path / "doc.json"
    path.write_text(json.dumps({"info": {}, "annotations": {"not": "a list"}}))
    with pytest.raises(JSONFormatError, match="'questions' missing"):
        list(iter_json_array(path, "questions"))
    with pytest.raises(JSONFormatError, match="'annotations' must be a list"):
        list(iter_json_array(path, "annotations"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"questions": [{"question_id": 1}, {"question_id": ]}')
    with pytest.raises(JSONFormatError, match="broken.json: invalid JSON"):
        list(iter_json_array(broken, "questions"))
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"questions": [{"question_id": 1}, ')
    with pytest.raises(JSONFormatError, match="truncated.json"):
        list(iter_json_array(truncated, "questions"))
    with pytest.raises(FileNotFoundError, match="absent.json"):
        list(iter_json_array(tmp_path / "absent.json", "questions"))


def test_a_big_file_is_read_with_a_progress_line(tmp_path, caplog):
    path = tmp_path / "v2_questions.json"  # 1.4 MB: more than one read, like the real files (330 MB)
    path.write_text(json.dumps({"info": {}, "questions": [{"question_id": i, "question": "x" * 100} for i in range(10_000)]}))
    with caplog.at_level(logging.INFO, logger="mmsearch.data.loaders.json_stream"):
        assert sum(1 for _ in iter_json_array(path, "questions")) == 10_000
    lines = [r.getMessage() for r in caplog.records if r.name == "mmsearch.data.loaders.json_stream"]
    assert lines and lines[-1].startswith("reading v2_questions.json: 1.4/1.4 MB (100%), ") and " done in " in lines[-1]
