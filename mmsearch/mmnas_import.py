"""``mmsearch import-mmnas``: a checkpoint of MMnas's own VQA / VG / ITM network as our derived network.

MMnas's ``train_{vqa,vgd,itm}.py`` save ``{"state_dict": net.state_dict(), "net_optim": ..., "epoch": N}``
from a DDP-wrapped ``Net_Full`` (keys prefixed ``module.``). :func:`import_mmnas` maps its weights
(:mod:`mmsearch.nas.mmnas_keys`) onto a :class:`~mmsearch.recipes.train_derived.engine.DerivedModel`
built for the same genotype, with the settings MMnas's network has (:func:`mmnas_configs`: widths
read off the weights, 64-wide heads, post-LN, MMnas's LayerNorm in the ops and the head, no
attention bias, dropout 0.1, the ITM head without the bilinear term). For the same inputs the two
compute the same outputs (``bench/check_mmnas_import.py`` measures it against the reference code):
VQA logits; ITM ``logits`` whose sigmoid is MMnas's score; VG ``scores`` whose log-softmax is
MMnas's (with every region real) and the same normalised box deltas.

The command writes a derived-training checkpoint directory (``model.pt``, ``arch.json``,
``config.yaml``, ``train_state.pt`` at epoch 0) that ``evaluate_checkpoint`` loads, plus
``mmnas_import.json`` (source, ignored parameters). The training config supplies the data and
training sections (default ``configs/train/<task>.yaml``); the model and head sections come from the
checkpoint. Its token ids must be MMnas's vocabulary (its GloVe token table): the data's
``vocab_size`` must agree, which evaluation checks.
"""
from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from mmsearch.cli_parsers import import_mmnas_parser
from mmsearch.nas.arch_spec import ArchSpec
from mmsearch.nas.mmnas_keys import MMnasKeyError, mmnas_to_ours, plain_state_dict, unsupported, uses_relation
from mmsearch.nas.net_config import NetConfig

MMNAS_HEAD_DIM = 64  # MMnas's "_64" ops: 64-wide heads at any width
MMNAS_DROPOUT = 0.1
TASK_NAMES = {"vqa": "vqa", "vg": "vg", "vgd": "vg", "itm": "itm"}  # MMnas calls grounding "vgd"


@dataclass
class ImportResult:
    model: Any  # DerivedModel with the imported weights, in eval mode
    net: NetConfig
    head: Any  # the head config
    ignored: list[str]  # MMnas parameters without a counterpart, and why they change no output


def _shape(state: Mapping[str, Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise MMnasKeyError(f"missing in the checkpoint: {key} (needed to read the network's sizes)")
    return tuple(state[key].shape)


def mmnas_configs(checkpoint: Mapping[str, Any], spec: ArchSpec, task: str) -> tuple[NetConfig, Any]:
    """The ``NetConfig`` and head config of MMnas's network: sizes from the weights, the rest as MMnas."""
    from mmsearch.tasks import head_config

    state = plain_state_dict(checkpoint)
    hidden, region_dim = _shape(state, "imgfeat_linear.weight")
    vocab_size, word_dim = _shape(state, "embedding.weight")
    relation_dim = _shape(state, "linear_y_rel.weight")[0] if "linear_y_rel.weight" in state else 64
    ffn_mult = 4
    if "feed_forward" in spec.enc + spec.dec:
        chain, i = ("enc", spec.enc.index("feed_forward")) if "feed_forward" in spec.enc else ("dec", spec.dec.index("feed_forward"))
        ffn_mult = _shape(state, f"backnone.cells_{chain}.0.dag.{i}.0.mlp.fc.linear.weight")[0] // hidden
    if hidden % MMNAS_HEAD_DIM:
        raise MMnasKeyError(f"imgfeat_linear.weight gives H={hidden}, not a multiple of MMnas's head width {MMNAS_HEAD_DIM}")
    net = NetConfig(hidden=hidden, head_dim=MMNAS_HEAD_DIM, dropout=MMNAS_DROPOUT, norm="post", layer_norm="mmnas",
                    attn_bias=False, ffn_mult=ffn_mult, relation_dim=relation_dim, text_input="tokens",
                    vocab_size=vocab_size, word_dim=word_dim, region_dim=region_dim, box_feature=False)
    mlp_size = _shape(state, "attflat_x.mlp.fc.linear.weight")[0]
    glimpses = _shape(state, "attflat_x.mlp.linear.weight")[0]
    out_size = _shape(state, "attflat_x.linear_merge.weight")[0]
    fields: dict[str, Any] = {"flat_mlp_size": mlp_size, "flat_glimpses": glimpses, "flat_out_size": out_size,
                              "dropout": MMNAS_DROPOUT}
    if task == "vqa":
        fields["num_answers"] = _shape(state, "proj.weight")[0]
    elif task == "itm":
        fields["fusion"] = "sum"
    return net, head_config(task, **fields)


def check_task(checkpoint: Mapping[str, Any], task: str) -> None:
    """Fail clearly when the checkpoint is another task's network (its output layer says which)."""
    state = plain_state_dict(checkpoint)
    found = "vg" if "proj_scores.weight" in state else ("itm" if tuple(state.get("proj.weight", torch.empty(0, 0)).shape[:1]) == (1,) else "vqa")
    if found != task:
        raise MMnasKeyError(f"--task {task}, but the checkpoint's output layer is a {found} network's")


def import_mmnas(checkpoint: Mapping[str, Any], spec: ArchSpec, task: str) -> ImportResult:
    """Our derived network + head holding the weights of MMnas's network (``checkpoint``) for ``spec``."""
    from mmsearch.recipes.train_derived.engine import DerivedModel

    task = TASK_NAMES.get(task, task)
    if task not in ("vqa", "itm", "vg"):
        raise MMnasKeyError(f"task must be vqa, vg (MMnas: vgd) or itm, got {task!r}")
    notes = unsupported(plain_state_dict(checkpoint))
    if notes:
        raise MMnasKeyError("the MMnas checkpoint does not map onto the derived network: " + " | ".join(notes))
    check_task(checkpoint, task)
    net, head = mmnas_configs(checkpoint, spec, task)
    model = DerivedModel(spec, net, head)
    state, ignored = mmnas_to_ours(checkpoint, spec, task, model.state_dict())
    model.load_state_dict(state, strict=True)
    return ImportResult(model.eval(), net, head, ignored)


def _model_section(net: NetConfig) -> dict[str, Any]:
    keys = ("hidden", "head_dim", "dropout", "norm", "layer_norm", "attn_bias", "ffn_mult", "relation_dim", "box_feature",
            "text_input", "vocab_size", "word_dim", "region_dim")
    return {k: getattr(net, k) for k in keys}


def write_checkpoint_dir(result: ImportResult, spec: ArchSpec, config_path: str, out: Path, source: str) -> None:
    """A derived-training checkpoint directory (epoch 0) holding the imported weights."""
    from mmsearch.config import config_to_dict, dump_config, load_config
    from mmsearch.io import atomic_torch_save, atomic_write_json
    from mmsearch.nas import save_arch_spec
    from mmsearch.recipes.train_derived.config import TrainDerivedConfig
    from mmsearch.recipes.train_derived.engine import MODEL_NAME
    from mmsearch.recipes.train_derived.state import ARCH_NAME, CONFIG_NAME, STATE_FORMAT, STATE_NAME, TrainProgress

    base = config_to_dict(load_config(TrainDerivedConfig, config_path))
    if base["data"]["task"] != result.head.task:
        raise ValueError(f"{config_path} trains data.task={base['data']['task']!r}, the checkpoint is a {result.head.task} network")
    base["data"]["text_input"] = "tokens"
    base.update(arch=spec.to_dict(), model=_model_section(result.net), head=config_to_dict(result.head))
    cfg = load_config(TrainDerivedConfig, base)
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(result.model.state_dict(), out / MODEL_NAME)
    save_arch_spec(spec, out / ARCH_NAME)
    dump_config(cfg, out / CONFIG_NAME)
    atomic_write_json(out / "mmnas_import.json", {"source": source, "task": result.head.task, "ignored": result.ignored})
    state = {"format": STATE_FORMAT, "config": config_to_dict(cfg), "spec": spec.to_dict(), "progress": TrainProgress().to_dict()}
    atomic_torch_save(state, out / STATE_NAME)  # last: its presence marks a complete checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    args = import_mmnas_parser().parse_args(argv)
    from mmsearch.config import config_path
    from mmsearch.recipes.train_derived.arch import resolve_arch

    task = TASK_NAMES.get(args.task, args.task)
    config = str(config_path(args.config or f"configs/train/{task}.yaml"))  # configs/...: the shipped one if not here
    try:
        if not Path(config).is_file():
            raise FileNotFoundError(f"training config {config} not found (give --config)")
        spec = resolve_arch(args.arch)
        if not isinstance(spec, ArchSpec):
            raise ValueError(f"{args.arch} is a fusion spec; MMnas's networks are encoder-decoder genotypes")
        try:
            checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            raise ValueError(f"{args.checkpoint} is not a torch checkpoint of tensors ({type(exc).__name__}: "
                             f"{str(exc).split('.')[0]})") from None
        if not isinstance(checkpoint, Mapping):
            raise MMnasKeyError(f"{args.checkpoint} holds a {type(checkpoint).__name__}, not a state dict")
        result = import_mmnas(checkpoint, spec, task)
        write_checkpoint_dir(result, spec, config, Path(args.out), str(args.checkpoint))
    except (ValueError, FileNotFoundError, KeyError, OSError, RuntimeError) as exc:  # MMnasKeyError is a ValueError
        print(f"mmsearch import-mmnas: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    note = f"; ignored (no effect on outputs): {len(result.ignored)} parameters" if result.ignored else ""
    relation = ", relation embedding" if uses_relation(spec) else ""
    print(f"wrote {args.out} (H={result.net.hidden}{relation}{note}); evaluate it with evaluate_checkpoint", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
