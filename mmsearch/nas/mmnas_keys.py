"""Parameter names of MMnas's own fixed networks (``Net_Full`` of its ``train_{vqa,vgd,itm}.py``) and ours.

A derived network with its head (``DerivedModel``: ``net.*`` and ``head.*``) holds the same weights as
MMnas's network for the same genotype, under other names, and in two places stacked:

* our self-attention projects q, k, v with one ``Linear(H, 3H)`` (MMnas: ``linear_q``, ``linear_k``,
  ``linear_v`` stacked row-wise, in that order); guided attention keeps ``q`` and one ``kv`` (``linear_k``
  over ``linear_v``);
* MMnas's LayerNorm parameters ``a_2`` / ``b_2`` are our ``weight`` / ``bias`` (either LayerNorm kind).

Two MMnas parameters have no counterpart, because they cannot change any output; they are
reported as ignored on import and written as zeros on export (:data:`IGNORED`):

* ``attflat_{x,y}.mlp.linear.bias``: a constant added to every position's attention logit before the
  softmax over positions;
* ``linear_y_rel.*`` when the genotype has no ``rel_self_att``: MMnas computes the relation embedding
  but no op reads it (our network then has no relation embedding).

What does not map, and fails with the reason (:class:`MMnasKeyError`): box features
(``BBOX_FEATURE=True``: MMnas concatenates ``Linear(5 -> 2048)`` of the box to the region feature, we add
``Linear(5 -> H)``), ``LAYERS > 1`` (repeated cells), blocks holding several summed ops, supernet
(search) checkpoints, and on our side pre-LN networks (final norms), attention biases (MMnas has
none) and the ITM head's bilinear term (``fusion: sum`` is MMnas's head). SA and GA blocks have
the same parameter names and shapes: the genotype given must be the one the checkpoint was trained with.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from mmsearch.nas.arch_spec import ArchSpec

TASKS = ("vqa", "itm", "vg")
#: MMnas parameter (pattern) -> why it has no counterpart here (it changes no output).
IGNORED = {
    r"attflat_[xy]\.mlp\.linear\.bias": "a constant added to every position's attention logit before the softmax "
                                        "over positions: changes no output (our AttFlat has no such bias)",
    r"linear_y_rel\.(weight|bias)": "the relation embedding, which no op of this genotype reads (it has no rel_self_att)",
}
_UNSUPPORTED = (
    (re.compile(r"^bboxfeat_linear\."), "box features (MMnas BBOX_FEATURE=True: Linear(5 -> 2048) of the box concatenated "
                                        "to the region feature) have no counterpart: our box_feature adds Linear(5 -> H)"),
    (re.compile(r"^backnone\.cells_(enc|dec)\.[1-9]"), "repeated cells (MMnas LAYERS > 1) are not supported: one cell per chain"),
    (re.compile(r"^backnone\.cells_(enc|dec)\.0\.dag\.\d+\.[1-9]"), "blocks with several summed ops are not supported: one op per block"),
    (re.compile(r"alpha_(prob|gate)|_ops\."), "this is a supernet (search) checkpoint: import the fixed network trained by "
                                              "MMnas's train_*.py on the derived genotype"),
)
_CHAIN = {"enc": "cells_enc", "dec": "cells_dec"}


class MMnasKeyError(ValueError):
    """A state dict that does not map; the message names every key concerned and why."""


@dataclass(frozen=True)
class KeyMap:
    ours: str  # our parameter name (DerivedModel: net.* / head.*)
    theirs: tuple[str, ...]  # MMnas's parameter names, stacked along dim 0 in this order


def _linear(ours: str, theirs: str, bias: bool = True) -> list[KeyMap]:
    return [KeyMap(f"{ours}.weight", (f"{theirs}.weight",))] + ([KeyMap(f"{ours}.bias", (f"{theirs}.bias",))] if bias else [])


def _norm(ours: str, theirs: str) -> list[KeyMap]:
    return [KeyMap(f"{ours}.weight", (f"{theirs}.a_2",)), KeyMap(f"{ours}.bias", (f"{theirs}.b_2",))]


def _op(name: str, ours: str, theirs: str) -> list[KeyMap]:
    att = f"{theirs}.mhatt"
    maps = _norm(f"{ours}.norm", f"{theirs}.ln")
    if name == "feed_forward":
        return _linear(f"{ours}.inner", f"{theirs}.mlp.fc.linear") + _linear(f"{ours}.outer", f"{theirs}.mlp.linear") + maps
    if name == "guided_att":
        maps += [KeyMap(f"{ours}.attn.q.weight", (f"{att}.linear_q.weight",)),
                 KeyMap(f"{ours}.attn.kv.weight", (f"{att}.linear_k.weight", f"{att}.linear_v.weight"))]
    else:  # self_att, rel_self_att
        maps.append(KeyMap(f"{ours}.attn.qkv.weight", tuple(f"{att}.linear_{p}.weight" for p in "qkv")))
    if name == "rel_self_att":
        maps += _linear(f"{ours}.relation_proj", f"{att}.linear_r")
    return maps + [KeyMap(f"{ours}.attn.merge.weight", (f"{att}.linear_merge.weight",))]


def _attflat(ours: str, theirs: str) -> list[KeyMap]:
    return (_linear(f"{ours}.attention.0", f"{theirs}.mlp.fc.linear") + _linear(f"{ours}.attention.3", f"{theirs}.mlp.linear", bias=False)
            + _linear(f"{ours}.merge", f"{theirs}.linear_merge"))


def uses_relation(spec: ArchSpec) -> bool:
    return "rel_self_att" in spec.dec


def key_maps(spec: ArchSpec, task: str) -> list[KeyMap]:
    """Every parameter of our ``DerivedModel`` for ``spec`` and ``task``'s head, and its MMnas source."""
    if task not in TASKS:
        raise MMnasKeyError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    maps = [KeyMap("net.front.text_embed.embedding.weight", ("embedding.weight",))]
    maps += [KeyMap(f"net.front.text_embed.lstm.{p}_l0", (f"lstm.{p}_l0",)) for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    maps += _linear("net.front.region_embed.proj", "imgfeat_linear")
    if uses_relation(spec):
        maps += _linear("net.front.relation_embed.proj", "linear_y_rel")
    for chain, names in (("enc", spec.enc), ("dec", spec.dec)):
        for i, name in enumerate(names):
            maps += _op(name, f"net.{'encoder' if chain == 'enc' else 'decoder'}.{i}", f"backnone.{_CHAIN[chain]}.0.dag.{i}.0")
    if task == "vg":
        maps += _attflat("head.text_flat", "attflat_x") + _linear("head.region_proj", "attfc_y") + _norm("head.norm", "proj_norm")
        return maps + _linear("head.score", "proj_scores") + _linear("head.box", "proj_reg")
    maps += _attflat("head.fusion.text_flat", "attflat_x") + _attflat("head.fusion.region_flat", "attflat_y")
    return maps + _norm("head.fusion.norm", "proj_norm") + _linear("head.classifier", "proj")


def plain_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """MMnas's checkpoint (``{"state_dict": ..., "net_optim": ..., "epoch": ...}`` as its train_*.py save
    it) or a bare state dict -> the network's state dict without DDP's ``module.`` prefix."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise MMnasKeyError("not an MMnas checkpoint: expected a state dict of tensors or a dict with 'state_dict'")
    if all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _ignored(key: str, spec: ArchSpec) -> str | None:
    for pattern, why in IGNORED.items():
        if re.fullmatch(pattern, key) and not (key.startswith("linear_y_rel") and uses_relation(spec)):
            return why
    return None


def _block_kind(keys: Sequence[str]) -> str:
    if any(".mhatt.linear_r." in k for k in keys):
        return "rel_self_att"
    return "self_att or guided_att" if any(".mhatt." in k for k in keys) else "feed_forward"


def unsupported(theirs: Mapping[str, Tensor]) -> list[str]:
    """``"key: why"`` for every MMnas parameter of a structure this network does not have."""
    return [f"{key}: {why}" for key in theirs for pattern, why in _UNSUPPORTED if pattern.search(key)]


def _structure_notes(spec: ArchSpec, theirs: Mapping[str, Tensor], missing: Sequence[str]) -> list[str]:
    notes = unsupported(theirs)
    for chain, names in (("enc", spec.enc), ("dec", spec.dec)):
        blocks: dict[int, list[str]] = {}
        for key in theirs:
            m = re.match(rf"backnone\.{_CHAIN[chain]}\.0\.dag\.(\d+)\.0\.", key)
            if m:
                blocks.setdefault(int(m.group(1)), []).append(key)
        if blocks and max(blocks) + 1 != len(names):
            notes.append(f"the checkpoint has {max(blocks) + 1} {chain} blocks, the genotype {len(names)}")
        for i, name in enumerate(names):
            prefix = f"backnone.{_CHAIN[chain]}.0.dag.{i}.0."
            if i in blocks and any(k.startswith(prefix) for k in missing):
                notes.append(f"{chain} block {i}: the genotype has {name}, the checkpoint's parameters are a {_block_kind(blocks[i])}'s")
    return notes


def mmnas_to_ours(checkpoint: Mapping[str, Any], spec: ArchSpec, task: str, target: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """MMnas's state dict -> ours (``target``: our model's state dict, for the names and shapes).

    Returns ``(state dict, ignored)``, ``ignored`` naming each MMnas parameter without a counterpart
    and why it changes no output. Raises :class:`MMnasKeyError` naming every missing, unexpected or
    mis-shaped key (and what is structurally different) unless everything maps.
    """
    theirs = plain_state_dict(checkpoint)
    maps = key_maps(spec, task)
    wanted = {k for m in maps for k in m.theirs}
    missing = sorted(wanted - set(theirs))
    ignored = {k: _ignored(k, spec) for k in theirs if k not in wanted}
    unexpected = sorted(k for k, why in ignored.items() if why is None)
    problems = []
    if missing:
        problems.append(f"missing in the checkpoint: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected in the checkpoint: {', '.join(unexpected)}")
    without = sorted(set(target) - {m.ours for m in maps})
    if without:
        problems.append(f"our model has parameters with no MMnas counterpart (attn_bias, norm=pre, box_feature "
                        f"and the ITM head's fusion=sum_bilinear have none): {', '.join(without)}")
    out: dict[str, Tensor] = {}
    for m in maps:
        if m.ours not in target or any(k not in theirs for k in m.theirs):
            continue
        shape = tuple(target[m.ours].shape)
        part = (shape[0] // len(m.theirs),) + shape[1:] if shape else shape
        bad = [f"{k} {tuple(theirs[k].shape)} (expected {part} for our {m.ours})" for k in m.theirs if tuple(theirs[k].shape) != part]
        if bad:
            problems.append("mis-shaped: " + "; ".join(bad))
            continue
        out[m.ours] = torch.cat([theirs[k] for k in m.theirs], 0) if len(m.theirs) > 1 else theirs[m.theirs[0]]
    if problems:
        notes = _structure_notes(spec, theirs, missing)
        raise MMnasKeyError("the MMnas checkpoint does not map onto this genotype / config: " + " | ".join(problems + notes))
    return out, [f"{k}: {why}" for k, why in sorted(ignored.items()) if why is not None]


def ours_to_mmnas(ours: Mapping[str, Tensor], spec: ArchSpec, task: str, relation_dim: int = 64) -> dict[str, Tensor]:
    """Our ``DerivedModel`` state dict -> MMnas's ``Net_Full`` state dict (parameters only, no ``module.``
    prefix); MMnas's parameters that change no output (:data:`IGNORED`) are written as zeros."""
    out: dict[str, Tensor] = {}
    for m in key_maps(spec, task):
        if m.ours not in ours:
            raise MMnasKeyError(f"our state dict has no {m.ours}")
        for key, part in zip(m.theirs, ours[m.ours].chunk(len(m.theirs), 0)):
            out[key] = part.clone()
    for flat in ("attflat_x", "attflat_y") if task != "vg" else ("attflat_x",):
        out[f"{flat}.mlp.linear.bias"] = torch.zeros(out[f"{flat}.mlp.linear.weight"].shape[0])
    if not uses_relation(spec):
        out["linear_y_rel.weight"] = torch.zeros(relation_dim, 4)
        out["linear_y_rel.bias"] = torch.zeros(relation_dim)
    return out


__all__ = ["IGNORED", "TASKS", "KeyMap", "MMnasKeyError", "key_maps", "mmnas_to_ours", "ours_to_mmnas", "plain_state_dict", "unsupported"]
