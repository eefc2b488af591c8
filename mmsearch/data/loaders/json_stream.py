"""Read the elements of one big JSON array without loading the whole document.

The real annotation files are large (VQA-v2 train annotations ~330 MB, Karpathy COCO ~140 MB);
``json.load`` would hold the full text plus every Python object at once. :func:`iter_json_array`
reads the file in chunks and decodes one array element at a time with the C decoder
(``JSONDecoder.raw_decode``), so memory stays at one chunk plus one element, and the file is
read exactly once. A progress line (MB read, rate, ETA) every few seconds: the big files take
tens of seconds.

The array is either the whole document (``key=None``, e.g. RefCOCO's converted files) or the
value of a top-level key (``"questions"``, ``"annotations"``, ``"images"``). Other top-level
values are skipped (they are small in these formats).
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator

from mmsearch.progress import Progress

log = logging.getLogger(__name__)

CHUNK_CHARS = 1 << 20  # characters read per refill
_WS = " \t\n\r"
_DELIMITERS = re.compile(r"[\s,:\]}]")


class JSONFormatError(ValueError):
    """A data file is not in the expected JSON layout; the message names the file and the problem."""


class _Reader:
    """A growing text buffer over a file with just enough parsing primitives for the scan."""

    def __init__(self, path: Path, progress: Progress | None = None) -> None:
        self.path, self.progress = path, progress
        self.fh = path.open("r", encoding="utf-8")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.decoder = json.JSONDecoder()

    def close(self) -> None:
        self.fh.close()

    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.fh.read(CHUNK_CHARS)
        if not data:
            self.eof = True
            return False
        if self.progress is not None:  # characters, about bytes: the total is the file's size
            self.progress.advance(min(len(data) / 1e6, self.progress.total - self.progress.done))
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        """Next non-whitespace character ("" at end of file), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        char = self.peek()
        if char == "" or char not in chars:
            found = "end of file" if char == "" else repr(char)
            raise JSONFormatError(f"{self.path}: expected one of {chars!r}, found {found}")
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decode the next complete JSON value, reading more text until it is complete."""
        if self.peek() not in '{["':
            # A number or literal has no closing bracket: it is complete only once a delimiter
            # follows it ("-0." at the end of a buffer would otherwise decode as -0).
            while _DELIMITERS.search(self.buf, self.pos) is None and self._fill():
                pass
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self._fill():  # an object, array or string cut by the buffer end
                    continue
                raise JSONFormatError(f"{self.path}: invalid JSON ({exc.msg}) near character {exc.pos}") from None
            self.pos = end
            return obj


def _iter_array(reader: _Reader) -> Iterator[Any]:
    reader.expect("[")
    if reader.peek() == "]":
        reader.pos += 1
        return
    while True:
        yield reader.value()
        if reader.expect(",]") == "]":
            return


def iter_json_array(path: str | Path, key: str | None = None) -> Iterator[Any]:
    """Yield the elements of the array at the top level (``key=None``) or under top-level ``key``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    size = path.stat().st_size
    progress = Progress(f"reading {path.name}", size / 1e6, "MB", log=log) if size > CHUNK_CHARS else None  # one read: no line
    reader = _Reader(path, progress)
    try:
        yield from _elements(reader, key)
        if progress is not None and progress.done < progress.total:  # the array ended before the file, or non-ASCII text
            progress.advance(progress.total - progress.done)
    finally:
        reader.close()


def _elements(reader: _Reader, key: str | None) -> Iterator[Any]:
    path = reader.path
    if key is None:
        yield from _iter_array(reader)
        return
    reader.expect("{")
    if reader.peek() == "}":
        raise JSONFormatError(f"{path}: top-level key {key!r} missing (empty object)")
    while True:
        name = reader.value()
        if not isinstance(name, str):
            raise JSONFormatError(f"{path}: object keys must be strings")
        reader.expect(":")
        if name == key:
            if reader.peek() != "[":
                raise JSONFormatError(f"{path}: top-level {key!r} must be a list")
            yield from _iter_array(reader)
            return
        reader.value()  # skip another top-level entry
        if reader.expect(",}") == "}":
            raise JSONFormatError(f"{path}: top-level key {key!r} missing")
