"""VQA-v2 in its released format, with bottom-up-attention region files or raw COCO images.

Files under ``root``:
  * ``v2_OpenEnded_mscoco_<subset>_questions.json``: ``{"questions": [{question_id, image_id, question}]}``
  * ``v2_mscoco_<subset>_annotations.json``: ``{"annotations": [{question_id, image_id,
    multiple_choice_answer, answers: [{answer, answer_confidence, answer_id}] x 10, answer_type,
    question_type}]}`` -- absent for the test subsets (questions only, no answers).

``subset`` is the file split (``train2014``, ``val2014``, ``test2015``, ``test-dev2015``); images
of ``test-dev2015`` live in ``test2015``. Region files default to MMnas's layout
``<feature_root>/<image_dir>/COCO_<image_dir>_<12-digit image id>.jpg.npz``.

Both files are streamed once (:mod:`.json_stream`). Each :class:`VQARecord` keeps every human
answer that was given, normalised, with its soft score; the head's answer vocabulary
(:func:`~.vqa_answers.build_answer_vocab`) decides which of them become targets.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from mmsearch.data.loaders.fields import RecordError, field, format_path, image_record
from mmsearch.data.loaders.json_stream import iter_json_array
from mmsearch.data.loaders.vqa_answers import answer_scores, normalize_answer
from mmsearch.data.records import DatasetSplit, ImageRecord, Split, VQARecord

DEFAULT_SUBSETS: dict[str, str] = {"train": "train2014", "val": "val2014", "test": "test2015"}
REGION_PATTERN = "{image_dir}/COCO_{image_dir}_{image_id:012d}.jpg.npz"
IMAGE_PATTERN = "{image_dir}/COCO_{image_dir}_{image_id:012d}.jpg"
ANSWER_TYPES = ("yes/no", "number", "other")
UNANSWERED_TYPE = "other"  # test subsets carry no answer type; records get this placeholder


def questions_path(root: str | Path, subset: str) -> Path:
    return Path(root) / f"v2_OpenEnded_mscoco_{subset}_questions.json"


def annotations_path(root: str | Path, subset: str) -> Path:
    return Path(root) / f"v2_mscoco_{subset}_annotations.json"


def image_dir_of(subset: str) -> str:
    """COCO image folder of a question subset (test-dev questions use test2015 images)."""
    return "test2015" if subset.startswith("test") else subset


def _read_questions(path: Path) -> dict[int, tuple[int, str]]:
    questions: dict[int, tuple[int, str]] = {}
    for i, entry in enumerate(iter_json_array(path, "questions")):
        where = f"{path} questions[{i}]"
        qid = field(entry, "question_id", int, where)
        if qid in questions:
            raise RecordError(f"{where}: duplicate question_id {qid}")
        questions[qid] = (field(entry, "image_id", int, where), field(entry, "question", str, where))
    if not questions:
        raise RecordError(f"{path}: no questions")
    return questions


def _read_annotations(path: Path, answer_counts: Counter | None,
                      answer_processing: str = "normalized") -> dict[int, tuple[dict[str, float], str, str, int]]:
    annotations = {}
    for i, entry in enumerate(iter_json_array(path, "annotations")):
        where = f"{path} annotations[{i}]"
        qid = field(entry, "question_id", int, where)
        humans = field(entry, "answers", list, where)
        if not humans:
            raise RecordError(f"{where}: field 'answers' is empty")
        answers = [field(h, "answer", str, f"{where}.answers[{j}]") for j, h in enumerate(humans)]
        answer_type = field(entry, "answer_type", str, where)
        if answer_type not in ANSWER_TYPES:
            raise RecordError(f"{where}: field 'answer_type' must be one of {ANSWER_TYPES}, got {answer_type!r}")
        multiple_choice = field(entry, "multiple_choice_answer", str, where)
        if answer_counts is not None:
            answer_counts[normalize_answer(multiple_choice)] += 1
        annotations[qid] = (
            answer_scores(answers, answer_processing),
            answer_type,
            field(entry, "question_type", str, where),
            field(entry, "image_id", int, where),
        )
    return annotations


def load_vqa_v2(
    root: str | Path,
    split: Split,
    *,
    subset: str | None = None,
    feature_root: str | Path | None = None,
    image_root: str | Path | None = None,
    region_pattern: str = REGION_PATTERN,
    image_pattern: str = IMAGE_PATTERN,
    resolve_sizes: bool = True,
    answer_counts: Counter | None = None,
    answer_processing: str = "normalized",
) -> DatasetSplit:
    """One VQA-v2 subset as a ``DatasetSplit`` named ``vqa_v2``.

    ``subset`` defaults to train2014 / val2014 / test2015 for ``split``. Give ``feature_root``
    (region ``.npz`` files) and/or ``image_root`` (raw images). With ``resolve_sizes`` the image
    height/width are read from each region file (or image header), which also proves the files
    exist; otherwise sizes are 0 (read them with the features). If ``answer_counts`` is given,
    the normalised ``multiple_choice_answer`` of every annotation is counted into it (for
    :func:`build_answer_vocab`) during the same pass. ``answer_processing`` is how the records'
    answer scores compare answers with the human ones: ``"normalized"`` (both sides normalised) or
    ``"official"`` (as the official VQA evaluation script; see :mod:`.vqa_answers`).
    """
    if split not in DEFAULT_SUBSETS:
        raise ValueError(f"split must be one of {sorted(DEFAULT_SUBSETS)}, got {split!r}")
    subset = subset or DEFAULT_SUBSETS[split]
    if feature_root is None and image_root is None:
        raise ValueError("load_vqa_v2 needs feature_root (region .npz files) or image_root (raw images)")
    questions = _read_questions(questions_path(root, subset))
    ann_path = annotations_path(root, subset)
    has_answers = ann_path.is_file()
    if not has_answers and not subset.startswith("test"):
        raise FileNotFoundError(f"annotation file not found: {ann_path} (only test subsets come without answers)")
    annotations = _read_annotations(ann_path, answer_counts, answer_processing) if has_answers else {}
    if has_answers:
        unknown = annotations.keys() - questions.keys()
        unanswered = questions.keys() - annotations.keys()
        if unknown or unanswered:
            raise RecordError(
                f"{ann_path}: {len(unknown)} annotations have no question and {len(unanswered)} questions "
                f"have no annotation (e.g. question_id {next(iter(unknown or unanswered))})"
            )

    image_dir = image_dir_of(subset)
    images: dict[str, ImageRecord] = {}
    records: list[VQARecord] = []
    for qid, (image_id, question) in questions.items():
        key = str(image_id)
        if key not in images:
            names = {"image_dir": image_dir, "image_id": image_id, "subset": subset}
            images[key] = image_record(
                key,
                region_file=format_path(feature_root, region_pattern, **names) if feature_root is not None else None,
                path=format_path(image_root, image_pattern, **names) if image_root is not None else None,
                resolve_sizes=resolve_sizes,
            )
        if has_answers:
            scores, answer_type, question_type, ann_image = annotations[qid]
            if ann_image != image_id:
                raise RecordError(f"{ann_path}: question {qid} has image_id {ann_image}, its question says {image_id}")
        else:
            scores, answer_type, question_type = {}, UNANSWERED_TYPE, ""
        records.append(VQARecord(str(qid), key, question, scores, answer_type, question_type))
    return DatasetSplit(name="vqa_v2", split=split, images=images, vqa=records)
