"""Fusion specs: which stream(s) every block runs on, and which op. The same JSON family as
:mod:`mmsearch.nas.arch_spec` (MMnas's ``enc``/``dec`` genotypes still load unchanged there).

A fusion spec lists blocks in order::

    {"pattern": "co_attention_to_concat",
     "blocks": [{"stream": "both", "op": "co_att"},
                {"stream": "text", "op": "feed_forward"}, {"stream": "image", "op": "feed_forward"},
                {"op": "concat"}, {"stream": "joint", "op": "self_att"}, {"stream": "joint", "op": "feed_forward"}]}

Streams and the ops they allow (see :func:`allowed_ops`):

* ``text``: the text stream alone (``self_att``, ``feed_forward``) or reading the regions
  (``t2r_att``); ``image``: the regions (``self_att``, ``rel_self_att``, ``feed_forward``) or
  reading the text (``guided_att``); ``both``: a two-stream op updating text and regions together
  (``co_att``, ``early_sum``); ``joint``: the concatenation ``[text ; regions]`` (``self_att``,
  ``feed_forward``, ``joint_rel_self_att``).
* Bookkeeping blocks have no stream: ``concat`` (separate -> joint), ``split`` (joint ->
  separate), ``pool`` (separate streams -> one masked-mean vector each; after it only per-stream
  ``feed_forward`` blocks may follow; for VQA / ITM heads, not VG, which scores every region).
  A spec that ends joint is split before the head.

Loading checks that the blocks fit together and fails naming the block and what is allowed
there (a joint block before any ``concat``, a ``split`` without a ``concat``, anything but a
per-stream FFN after ``pool``, unknown stream or op names). Specs written by the fusion search
also carry ``stages`` (the chosen candidate per block of each search stage, names
``stream:op``), ``op_pools`` and ``probs``, as the MMnas search's specs do.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmsearch.io import atomic_write_json
from mmsearch.nas.arch_spec import SPECS_DIR, ArchSpec, block_entropy, load_arch_spec, named_spec, named_specs
from mmsearch.ops import OPS, PAIR_OPS

STREAMS = ("text", "image", "both", "joint")
BOOKKEEPING = ("concat", "split", "pool")
STAGES = ("enc", "dec")  # the fusion search's two stages (named like MMnas's chains)
PATTERNS = (
    "early_summation",
    "early_concat",
    "multi_to_one",
    "one_to_multi",
    "co_attention",
    "co_attention_to_concat",
)
#: The fusion search's candidates per block (``stream:op``): per-stream ops, cross-attention both
#: ways (``text:t2r_att``, ``image:guided_att``, ``both:co_att``), early summation, joint attention.
DEFAULT_FUSION_POOL = (
    "text:self_att",
    "text:feed_forward",
    "text:t2r_att",
    "image:rel_self_att",
    "image:guided_att",
    "image:feed_forward",
    "both:co_att",
    "both:early_sum",
    "joint:joint_rel_self_att",
    "joint:feed_forward",
)
_KEYS = {"blocks", "pattern", "description", "stages", "probs", "entropy", "op_pools", "seed", "config", "epoch", "task", "source"}


def allowed_ops(stream: str) -> tuple[str, ...]:
    """Canonical op names a block on ``stream`` may run."""
    if stream == "both":
        return tuple(PAIR_OPS.names())
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; allowed streams: {', '.join(STREAMS)}")
    out = []
    for name in OPS.names():
        op = OPS.get(name)
        memory, relation = getattr(op, "uses_memory", False), getattr(op, "uses_relation", False)
        joint_only, query = getattr(op, "joint_only", False), getattr(op, "query_stream", "image")
        if stream == "joint":
            ok = not memory and (joint_only or not relation)
        elif stream == "text":
            ok = not relation and not joint_only and (not memory or query == "text")
        else:
            ok = not joint_only and (not memory or query == "image")
        if ok:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True)
class Block:
    """One block: ``op`` on ``stream`` (``None`` for the bookkeeping ops concat / split / pool)."""

    stream: str | None
    op: str

    @property
    def label(self) -> str:
        return self.op if self.stream is None else f"{self.stream}:{self.op}"

    def to_dict(self) -> dict[str, str]:
        return {"op": self.op} if self.stream is None else {"stream": self.stream, "op": self.op}


def parse_block(index: int, raw: Any) -> Block:
    """A block dict (or a ``"stream:op"`` / bookkeeping string) -> a canonical :class:`Block`."""
    if isinstance(raw, str):
        raw = {"op": raw} if raw in BOOKKEEPING else dict(zip(("stream", "op"), raw.split(":", 1)))
    if not isinstance(raw, Mapping) or not isinstance(raw.get("op"), str) or set(raw) - {"stream", "op"}:
        raise ValueError(f"block {index} must be {{'stream': ..., 'op': ...}} or {{'op': concat|split|pool}}, got {raw!r}")
    stream, op = raw.get("stream"), raw["op"]
    if stream is None:
        if op not in BOOKKEEPING:
            raise ValueError(f"block {index} ({op}) names no stream; allowed streams: {', '.join(STREAMS)} "
                             f"(only the bookkeeping ops {', '.join(BOOKKEEPING)} have none)")
        return Block(None, op)
    if stream not in STREAMS:
        raise ValueError(f"block {index} ({op}): unknown stream {stream!r}; allowed streams: {', '.join(STREAMS)}")
    registry = PAIR_OPS if stream == "both" else OPS
    name = registry.canonical(op) if op in registry else op
    allowed = allowed_ops(stream)
    if name not in allowed:
        raise ValueError(f"block {index} ({stream}): op {op!r} cannot run on the {stream} stream; allowed: {', '.join(allowed)}")
    return Block(stream, name)


def check_blocks(blocks: Sequence[Block]) -> str:
    """Walk the stream states (separate -> joint -> separate ..., pooled at the end); returns the
    final state; fails on the first block that does not fit, naming it and what is allowed."""
    state, pooled_at = "separate", None
    for i, block in enumerate(blocks):
        where = f"block {i} ({block.label})"
        if state == "pooled":
            if block.stream in ("text", "image") and block.op == "feed_forward":
                continue
            raise ValueError(f"{where} comes after the streams were pooled at block {pooled_at}; "
                             "allowed after pooling: text:feed_forward, image:feed_forward")
        if block.op == "concat":
            if state == "joint":
                raise ValueError(f"{where}: the streams are already concatenated; allowed here: joint blocks, split")
            state = "joint"
        elif block.op == "split":
            if state != "joint":
                raise ValueError(f"{where}: split needs a preceding concat; allowed here: text, image, both blocks, concat, pool")
            state = "separate"
        elif block.op == "pool":
            if state == "joint":
                raise ValueError(f"{where}: pool needs separate streams; allowed here: joint blocks, split")
            state, pooled_at = "pooled", i
        elif block.stream == "joint" and state != "joint":
            raise ValueError(f"{where}: a joint block needs a preceding concat; allowed here: text, image, both blocks, concat, pool")
        elif block.stream != "joint" and state == "joint":
            raise ValueError(f"{where}: the streams are concatenated here; allowed: joint blocks ({', '.join(allowed_ops('joint'))}), split")
    if not any(b.op not in BOOKKEEPING for b in blocks):
        raise ValueError("a fusion spec needs at least one block that runs an op")
    return state


def compile_candidates(candidates: Sequence[str]) -> tuple[Block, ...]:
    """Searched candidates (``stream:op``, every one of them on separate streams in and out) -> blocks,
    with ``concat`` / ``split`` inserted around every run of joint candidates (the search's joint
    candidates concatenate and split inside, which is the same computation)."""
    blocks: list[Block] = []
    joint = False
    for i, label in enumerate(candidates):
        block = parse_block(i, label)
        if block.stream is None:
            raise ValueError(f"search candidate {label!r} is bookkeeping, not an op")
        if (block.stream == "joint") != joint:
            blocks.append(Block(None, "split" if joint else "concat"))
            joint = not joint
        blocks.append(block)
    return tuple(blocks)


def fusion_pool(candidates: Sequence[str]) -> tuple[str, ...]:
    """Canonical, duplicate-free fusion-search candidates (``stream:op``; no bookkeeping); validated."""
    names = []
    for i, label in enumerate(candidates):
        if not isinstance(label, str) or ":" not in label:
            raise ValueError(f"fusion_pool entry {i} must be 'stream:op' (e.g. 'joint:self_att'), got {label!r}")
        names.append(parse_block(i, label).label)
    if not names:
        raise ValueError("the fusion pool is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"the fusion pool lists a candidate twice: {names}")
    return tuple(names)


@dataclass(frozen=True)
class FusionSpec:
    blocks: tuple[Block, ...]
    pattern: str | None = None
    description: str | None = None
    stages: Mapping[str, tuple[str, ...]] | None = None
    probs: Mapping[str, tuple[tuple[float, ...], ...]] | None = None
    op_pools: Mapping[str, tuple[str, ...]] | None = None
    seed: int | None = None
    config: Mapping[str, Any] | None = None
    epoch: int | None = None
    task: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        blocks = tuple(b if isinstance(b, Block) else parse_block(i, b) for i, b in enumerate(self.blocks))
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "final_state", check_blocks(blocks))
        if self.stages is not None:
            stages = {s: tuple(parse_block(i, c).label for i, c in enumerate(self.stages[s])) for s in STAGES}
            if compile_candidates(stages["enc"] + stages["dec"]) != blocks:
                raise ValueError("the spec's blocks are not what its search stages compile to")
            object.__setattr__(self, "stages", stages)
        if self.op_pools is not None:
            object.__setattr__(self, "op_pools", {s: tuple(self.op_pools[s]) for s in STAGES})
        if self.probs is not None:
            object.__setattr__(self, "probs", {s: tuple(tuple(float(p) for p in row) for row in self.probs[s]) for s in STAGES})

    # The search recipe reads a searched spec's per-stage choices like MMnas's chains.
    @property
    def enc(self) -> tuple[str, ...]:
        return () if self.stages is None else self.stages["enc"]

    @property
    def dec(self) -> tuple[str, ...]:
        return () if self.stages is None else self.stages["dec"]

    @property
    def op_blocks(self) -> tuple[Block, ...]:
        """The blocks that run an op (bookkeeping left out)."""
        return tuple(b for b in self.blocks if b.op not in BOOKKEEPING)

    def same_architecture(self, other: "FusionSpec") -> bool:
        return self.blocks == other.blocks

    def replace(self, **changes: Any) -> "FusionSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"blocks": [b.to_dict() for b in self.blocks]}
        for key in ("pattern", "description", "stages", "op_pools", "probs", "seed", "config", "epoch", "task", "source"):
            value = getattr(self, key)
            if value is None:
                continue
            if key in ("stages", "op_pools"):
                value = {s: list(value[s]) for s in STAGES}
            elif key == "probs":
                value = {s: [list(r) for r in value[s]] for s in STAGES}
            out[key] = dict(value) if key == "config" else value
            if key == "probs":
                out["entropy"] = block_entropy(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **defaults: Any) -> "FusionSpec":
        if not isinstance(data, Mapping) or not isinstance(data.get("blocks"), list):
            raise ValueError("a fusion spec needs a 'blocks' list")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(f"unknown fusion-spec keys {unknown}; known keys: {sorted(_KEYS)}")
        kwargs = {**defaults, **{k: v for k, v in data.items() if k not in ("blocks", "entropy")}}  # entropy: derived from probs
        return cls(blocks=tuple(parse_block(i, b) for i, b in enumerate(data["blocks"])), **kwargs)

    @classmethod
    def from_arch_spec(cls, spec: ArchSpec) -> "FusionSpec":
        """MMnas's encoder-decoder as streams: encoder blocks on the text, then decoder blocks on the regions."""
        blocks = [Block("text", n) for n in spec.enc] + [Block("image", n) for n in spec.dec]
        return cls(blocks=tuple(blocks), pattern="encoder_decoder", task=spec.task, source=spec.source)


def load_spec(path: str | Path, epoch: int | None = None) -> ArchSpec | FusionSpec:
    """Any architecture file: a fusion spec (``blocks``), or what :func:`load_arch_spec` reads."""
    path = Path(path)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"architecture file {path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and "blocks" in data:
            try:
                return FusionSpec.from_dict(data, source=str(path))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"invalid fusion spec {path}: {exc}") from exc
    return load_arch_spec(path, epoch)


def save_spec(spec: ArchSpec | FusionSpec, path: str | Path) -> Path:
    return atomic_write_json(path, spec.to_dict())


def pattern_spec(name: str) -> FusionSpec:
    """A shipped fusion pattern (``mmsearch/nas/specs/fusion_<name>.json``); names in :data:`PATTERNS`."""
    if name not in PATTERNS:
        raise KeyError(f"unknown fusion pattern {name!r}; known: {', '.join(PATTERNS)}")
    spec = load_spec(SPECS_DIR / f"fusion_{name}.json")
    assert isinstance(spec, FusionSpec)
    return spec.replace(source=f"mmsearch/nas/specs/fusion_{name}.json")


def spec_from_dict(data: Mapping[str, Any], **defaults: Any) -> ArchSpec | FusionSpec:
    """A parsed spec of either kind: fusion specs have ``blocks``, MMnas genotypes ``enc``/``dec``."""
    if isinstance(data, Mapping) and "blocks" in data:
        return FusionSpec.from_dict(data, **defaults)
    return ArchSpec.from_dict(data, **defaults)


def shipped_spec_names() -> list[str]:
    """Every shipped spec name: MMnas's and MCAN (:func:`named_spec`) and ``fusion_<pattern>``."""
    return named_specs() + [f"fusion_{p}" for p in PATTERNS]


def shipped_spec(name: str) -> ArchSpec | FusionSpec:
    if name.startswith("fusion_") and name.removeprefix("fusion_") in PATTERNS:
        return pattern_spec(name.removeprefix("fusion_"))
    if name in named_specs():
        return named_spec(name)
    raise KeyError(f"unknown named architecture {name!r}; known: {', '.join(shipped_spec_names())}")
