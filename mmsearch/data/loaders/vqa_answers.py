"""VQA answer strings: the official normalisation, soft scores from 10 human answers, vocabulary.

Normalisation follows the official VQA evaluation (``vqaEval.py``) in order: newlines/tabs to
spaces; punctuation removed (or turned into a space when it glues two words, e.g. "dog/cat"); a
period not followed by a digit removed ("yes." -> "yes", "2.5" stays); lower-case; number words
"none".."ten" to digits; the articles a/an/the dropped; apostrophe-less contractions restored
("dont" -> "don't"). Soft scores are MMnas's (and MCAN's): an answer given by k of the 10
annotators scores min(1, 0.3 k), i.e. 0.3 / 0.6 / 0.9 / 1.0 for k = 1 / 2 / 3 / >= 4.

Two ways to score an answer against the 10 human answers (``answer_processing``):

* ``"normalized"`` (the default; MMnas's training targets): the human answers are normalised
  exactly like the prediction, so "Yes." matches "yes" and "two" matches "2"
  (:func:`soft_scores`).
* ``"official"``: what the official VQA evaluation script (``vqaEval.py``) does, for numbers
  comparable with published VQA-v2 results (:func:`official_scores`): the prediction is
  normalised fully, the human answers only for punctuation, and only when they disagree (ten
  identical answers are compared as written), so "Yes." given by all ten never matches "yes".
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

from mmsearch.io import atomic_write_json

_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as in vqaEval.py: a '.' not followed by a digit
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset({"a", "an", "the"})
ANSWER_PROCESSING = ("normalized", "official")

# Contractions the official evaluation restores; each is matched with exactly one apostrophe
# missing ("dont" -> "don't", "couldnt've" and "couldn'tve" -> "couldn't've").
_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't
he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've
mustn't must've needn't not've o'clock oughtn't shan't she'd've should've shouldn't shouldn't've
somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's something'd
something'd've something'll that's there'd there'd've there're there's they'd they'd've they'll
they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd
where's where've who'd who'd've who'll who's who've why'll why're why's won't would've wouldn't
wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _contraction_map() -> dict[str, str]:
    mapping = {}
    for full in _CONTRACTIONS:
        cuts = [i for i, ch in enumerate(full) if ch == "'"]
        for cut in cuts:
            mapping[full[:cut] + full[cut + 1 :]] = full
    return mapping


_CONTRACTION_MAP = _contraction_map()


def process_punctuation(text: str) -> str:
    """The official evaluation's ``processPunctuation`` (the only processing of human answers there)."""
    return _strip_punctuation(text)


def _strip_punctuation(text: str) -> str:
    glued = _COMMA_IN_NUMBER.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if glued or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=32)  # vqaEval.py passes re.UNICODE (32) as sub's count


def normalize_answer(answer: str) -> str:
    """The official VQA normalisation of one answer string (see the module docstring)."""
    text = _strip_punctuation(answer.replace("\n", " ").replace("\t", " ").strip())
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [_CONTRACTION_MAP.get(word, word) for word in words if word not in _ARTICLES]
    return " ".join(words)


def score_for_count(count: int) -> float:
    """Soft score of an answer given by ``count`` of the 10 annotators (MMnas/MCAN)."""
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


def soft_scores(human_answers: Iterable[str]) -> dict[str, float]:
    """Normalised answer -> soft score, from the (usually 10) human answers to one question."""
    counts = Counter(normalize_answer(a) for a in human_answers)
    counts.pop("", None)
    return {answer: score_for_count(n) for answer, n in counts.items()}


def official_scores(human_answers: Iterable[str]) -> dict[str, float]:
    """Answer -> official VQA score, keyed as the official evaluation compares them: a prediction
    ``p`` scores ``official_scores(...).get(normalize_answer(p), 0)``, which is the official
    script's mean over the leave-one-annotator-out subsets of ``min(1, matches / 3)``."""
    from mmsearch.metrics.vqa import official_answer_score

    raw = list(human_answers)
    compared = [process_punctuation(a) for a in raw] if len(set(raw)) > 1 else raw
    counts = Counter(compared)
    counts.pop("", None)
    return {answer: official_answer_score(n, len(raw)) for answer, n in counts.items()}


def answer_scores(human_answers: Iterable[str], processing: str = "normalized") -> dict[str, float]:
    """:func:`soft_scores` (``"normalized"``) or :func:`official_scores` (``"official"``)."""
    if processing not in ANSWER_PROCESSING:
        raise ValueError(f"answer_processing must be one of {ANSWER_PROCESSING}, got {processing!r}")
    return soft_scores(human_answers) if processing == "normalized" else official_scores(human_answers)


def build_answer_vocab(
    answer_counts: Mapping[str, int] | Iterable[str], min_count: int = 1, max_size: int | None = None
) -> list[str]:
    """Answers seen at least ``min_count`` times, most frequent first (ties alphabetical).

    Pass the counts of normalised ``multiple_choice_answer`` strings (``load_vqa_v2`` can collect
    them while it streams the annotations) or an iterable of raw answers, normalised here.
    """
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if not isinstance(answer_counts, Mapping):
        answer_counts = Counter(normalize_answer(a) for a in answer_counts)
    kept = sorted(((n, a) for a, n in answer_counts.items() if n >= min_count and a), key=lambda x: (-x[0], x[1]))
    answers = [a for _, a in kept]
    return answers[:max_size] if max_size is not None else answers


def save_answer_vocab(path: str | Path, answers: list[str]) -> Path:
    """Write the answer list (index = class id) as JSON, atomically."""
    if len(set(answers)) != len(answers):
        raise ValueError("answer vocabulary has duplicates")
    return atomic_write_json(path, {"format": "mmsearch.answer_vocab", "version": 1, "answers": list(answers)}, indent=None)


def load_answer_vocab(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answer vocabulary file not found: {path}")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != "mmsearch.answer_vocab" or not isinstance(data.get("answers"), list):
        raise ValueError(f"{path} is not an mmsearch answer vocabulary")
    return [str(a) for a in data["answers"]]
