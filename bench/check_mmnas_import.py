"""Equivalence of ``mmsearch import-mmnas`` with MMnas's own network, against the reference code.

For each task (VQA, VG, ITM) and two small genotypes (one with every op of the search space, one
MCAN-like without relation self-attention), builds MMnas's ``Net_Full`` from the reference code at
its pinned commit (``--src``: an extracted copy of MILVLG/mmnas @ 552e29e; imported from there,
never copied; its spaCy import stubbed), randomises it (LayerNorm gains and biases too), saves it as
MMnas's train_*.py do (``{"state_dict": DDP state dict with "module.", "net_optim", "epoch"}``),
imports the file into our derived network and runs both in eval mode on the same random inputs:
padded token ids, region features with padded (all-zero) regions, pixel boxes (MMnas: their
pairwise geometry from its own ``relation_embedding``, zero-padded; ours: the boxes).

Records the max abs difference of the outputs MMnas returns (VQA logits, ITM sigmoid scores, VG
log-softmax scores and box deltas) in float32 and float64, and, to show what the LayerNorm option
is for, the float32 difference when our ops or only our head use ``nn.LayerNorm`` instead of
MMnas's. VG uses no padded regions (MMnas's VG head does not mask them; MMnas's VG features are a
fixed 100 boxes). Deterministic (seeded); timing nothing.

    python bench/check_mmnas_import.py --src /work/refcode/mmnas
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
MMNAS_COMMIT = "552e29e666625819799ca22de324df2be50626cc"
PINNED = {  # git blob ids of the reference files imported, at MMNAS_COMMIT
    "mmnas/model/full_vqa.py": "c96680c1727b666fd386b367fb92aa981f5ed16f",
    "mmnas/model/full_vgd.py": "578684a2bce639382d20a1cb3fd7ce4ca8c37542",
    "mmnas/model/full_itm.py": "a05215984436d32e702c7eafc72685d87a5a00b9",
    "mmnas/model/modules.py": "b64575fca72e73a8279539e35eef54c3c89a3e7f",
    "mmnas/utils/ops_adapter.py": "66d2677a7560c4b4593eb92c85e7450ae99a4c38",
    "mmnas/loader/load_data_vqa.py": "a95458e2351d4bfec9ae6d0e73cb131afbdafd55",
}
GENOTYPES = {
    "all_ops": {"enc": [["self_att_64"], ["feed_forward"], ["self_att_64"]],
                "dec": [["guided_att_64"], ["rel_self_att_64"], ["self_att_64"], ["feed_forward"], ["rel_self_att_64"], ["guided_att_64"]]},
    "mcan_like": {"enc": [["self_att_64"], ["feed_forward"]] * 2,
                  "dec": [["self_att_64"], ["guided_att_64"], ["feed_forward"]] * 2},
}
REF_MODULE = {"vqa": "full_vqa", "vg": "full_vgd", "itm": "full_itm"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, required=True, help="MILVLG/mmnas extracted at commit 552e29e")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "mmnas_import.json")
    p.add_argument("--hidden", type=int, default=128, help="H (2 heads of 64)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=10)
    p.add_argument("--regions", type=int, default=12)
    p.add_argument("--feat", type=int, default=48)
    p.add_argument("--vocab", type=int, default=60)
    p.add_argument("--answers", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def verify_pinned(src: Path) -> None:
    for rel, blob in PINNED.items():
        path = src / rel
        found = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True).stdout.strip() if path.is_file() else "absent"
        if found != blob:
            print(f"error: {path} is not the file of the pinned commit {MMNAS_COMMIT[:7]} (blob {found or '?'}, expected {blob})", file=sys.stderr)
            raise SystemExit(2)


def reference(src: Path) -> dict[str, Any]:
    sys.path.insert(0, str(src))
    sys.modules.setdefault("en_vectors_web_lg", types.ModuleType("en_vectors_web_lg"))  # spaCy's GloVe, imported by the loader
    from mmnas.loader.load_data_vqa import relation_embedding

    nets = {task: __import__(f"mmnas.model.{name}", fromlist=["Net_Full"]).Net_Full for task, name in REF_MODULE.items()}
    return {"nets": nets, "relation_embedding": relation_embedding}


def reference_config(args: argparse.Namespace, genotype: dict[str, Any]) -> Any:
    c = types.SimpleNamespace()  # the attributes MMnas's Net_Full reads (train_*.py's Cfg)
    c.HSIZE, c.DROPOUT_R, c.OPS_RESIDUAL, c.OPS_NORM, c.LAYERS = args.hidden, 0.1, True, True, 1
    c.ATTFLAT_GLIMPSES, c.ATTFLAT_OUT_SIZE, c.ATTFLAT_MLP_SIZE = 1, 2 * args.hidden, 64
    c.BBOX_FEATURE, c.FRCNFEAT_SIZE, c.BBOXFEAT_EMB_SIZE = False, args.feat, 2048
    c.WORD_EMBED_SIZE, c.REL_SIZE, c.SCORES_LOSS, c.GENOTYPE = 300, 64, "kld", genotype
    return c


@torch.no_grad()
def randomise(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Default init plus non-trivial LayerNorm gains / biases and AttFlat logit biases."""
    for name, p in net.named_parameters():
        if name.endswith("a_2"):
            p.copy_(0.5 + torch.rand(p.shape, generator=gen))
        elif name.endswith("b_2") or name.endswith("mlp.linear.bias"):
            p.copy_(0.4 * torch.rand(p.shape, generator=gen) - 0.2)


def inputs(args: argparse.Namespace, rel_fn: Any, gen: torch.Generator, pad_regions: bool) -> dict[str, torch.Tensor]:
    b, t, n = args.batch, args.tokens, args.regions
    ids = torch.randint(1, args.vocab, (b, t), generator=gen)
    lengths = [t, t - 3, 2, t - 1][:b] + [t] * max(0, b - 4)
    valid = [n, n - 4, n - 1, 3][:b] + [n] * max(0, b - 4) if pad_regions else [n] * b
    feats = torch.rand(b, n, args.feat, generator=gen)
    boxes = torch.zeros(b, n, 4)
    for i in range(b):
        ids[i, lengths[i]:] = 0
        feats[i, valid[i]:] = 0.0
        xy = torch.rand(valid[i], 2, generator=gen) * 400
        boxes[i, :valid[i]] = torch.cat([xy, xy + torch.rand(valid[i], 2, generator=gen) * 200 + 5], 1)
    x = {"ids": ids, "feats": feats, "boxes": boxes, "region_mask": feats.abs().sum(-1) == 0}
    return {**x, "rel": geometry(x, rel_fn)}


def geometry(x: dict[str, torch.Tensor], rel_fn: Any) -> torch.Tensor:
    """MMnas's pairwise box geometry (its loader's relation_embedding per image, zero-padded), in the boxes' dtype."""
    boxes, valid = x["boxes"], (~x["region_mask"]).sum(1).tolist()
    rel = torch.zeros(*boxes.shape[:2], boxes.shape[1], 4, dtype=boxes.dtype)
    for i, v in enumerate(valid):
        rel[i, :v, :v] = rel_fn(boxes[i, :v])
    return rel


def run_reference(net: torch.nn.Module, x: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    b, t = x["ids"].shape
    out = net((x["feats"], torch.zeros(*x["feats"].shape[:2], 5, dtype=x["feats"].dtype), x["rel"], x["ids"],
               torch.zeros(b, t, t, 3, dtype=x["feats"].dtype)))
    if task == "vg":
        return {"log_softmax_scores": out[0], "box_deltas": out[1]}
    return {"logits": out} if task == "vqa" else {"score": out}


def run_ours(model: torch.nn.Module, x: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    from mmsearch.batch import MultimodalBatch

    batch = MultimodalBatch(text_mask=x["ids"] == 0, text_ids=x["ids"], region_feats=x["feats"], region_boxes=x["boxes"],
                            region_mask=x["region_mask"])
    out = model(batch)
    if task == "vg":
        return {"log_softmax_scores": torch.log_softmax(out["scores"], -1), "box_deltas": out["box_deltas"]}
    return {"logits": out["logits"]} if task == "vqa" else {"score": torch.sigmoid(out["logits"])}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float((a[k].double() - b[k].double()).abs().max()) for k in a}


def variant(result: Any, spec: Any, ops: str, head: str) -> torch.nn.Module:
    """The imported weights in a model whose ops / head use the given LayerNorm kinds."""
    from dataclasses import replace

    from mmsearch.recipes.train_derived.engine import DerivedModel
    from mmsearch.tasks import build_head

    model = DerivedModel(spec, replace(result.net, layer_norm=ops), result.head)
    model.head = build_head(result.head, result.net.hidden, layer_norm=head)
    model.load_state_dict(result.model.state_dict())
    return model.eval()


def check(args: argparse.Namespace, ref: dict[str, Any], task: str, name: str, scratch: Path) -> dict[str, Any]:
    from mmsearch.mmnas_import import import_mmnas
    from mmsearch.nas import ArchSpec

    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    genotype = GENOTYPES[name]
    init = {"token_size": args.vocab, "pretrained_emb": torch.randn(args.vocab, 300, generator=gen).numpy(), "ans_size": args.answers}
    net = ref["nets"][task](reference_config(args, genotype), init)
    randomise(net, gen)
    net.eval()
    path = scratch / f"{task}_{name}_epoch1.pkl"
    state = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},  # DDP-wrapped, as MMnas saves
             "net_optim": torch.optim.Adam(net.parameters()).state_dict(), "epoch": 1}
    torch.save(state, path)
    spec = ArchSpec.from_dict(genotype)
    result = import_mmnas(torch.load(path, map_location="cpu", weights_only=True), spec, task)
    x = inputs(args, ref["relation_embedding"], gen, pad_regions=task != "vg")
    with torch.no_grad():
        theirs, ours = run_reference(net, x, task), run_ours(result.model, x, task)
        row = {"max_abs_diff_fp32": max_diff(theirs, ours),
               "output_max_abs": {k: float(v.abs().max()) for k, v in theirs.items()},
               "ignored_parameters": [line.split(":")[0] for line in result.ignored]}
        x64 = {k: v.double() if v.is_floating_point() else v for k, v in x.items()}
        x64["rel"] = geometry(x64, ref["relation_embedding"])  # in float64 too, as ours computes it from the boxes
        row["max_abs_diff_fp64"] = max_diff(run_reference(net.double(), x64, task), run_ours(result.model.double(), x64, task))
        row["max_abs_diff_fp32_torch_layer_norm"] = max_diff(theirs, run_ours(variant(result, spec, "torch", "torch"), x, task))
        row["max_abs_diff_fp32_torch_layer_norm_in_head_only"] = max_diff(theirs, run_ours(variant(result, spec, "mmnas", "torch"), x, task))
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not (args.src / "mmnas" / "model").is_dir():
        print(f"error: --src {args.src} is not an extracted MILVLG/mmnas (no mmnas/model)", file=sys.stderr)
        return 2
    verify_pinned(args.src)
    sys.path.insert(0, str(REPO))
    from mmsearch.io import atomic_write_json
    from mmsearch.machine import Provenance

    provenance = Provenance(__file__, argv)
    torch.set_num_threads(1)
    ref = reference(args.src)
    report: dict[str, Any] = {"benchmark": "mmnas_import", "command": provenance.command,
                              "reference": {"repo": "MILVLG/mmnas", "commit": MMNAS_COMMIT, "files_verified": len(PINNED)},
                              "settings": {k: v for k, v in vars(args).items() if k not in ("src", "out")},
                              "genotypes": GENOTYPES, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="mmnas_import_") as scratch:
        for task in ("vqa", "vg", "itm"):
            for name in GENOTYPES:
                row = check(args, ref, task, name, Path(scratch))
                report["cases"][f"{task}/{name}"] = row
                print(f"{task:3s} {name:9s} fp32 {row['max_abs_diff_fp32']}  fp64 {row['max_abs_diff_fp64']}  "
                      f"nn.LayerNorm: {row['max_abs_diff_fp32_torch_layer_norm']}", flush=True)
    report["provenance"] = provenance.block()
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
