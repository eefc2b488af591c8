"""Precompute a data set: frozen encoders over the embedded scenes or a real data set -> latent stores.

    python jobs/precompute_latents.py                                   # default embedded scenes
    python jobs/precompute_latents.py --config configs/data/scenes_small.yaml --output stores/small
    python jobs/precompute_latents.py --config configs/data/vqa_v2.yaml --output s3://bucket/vqa_v2
    python jobs/precompute_latents.py --backend local source.scenes.num_scenes=500 text.states=true
    ray job submit --working-dir . -- python jobs/precompute_latents.py --output s3://bucket/scenes

With ``--backend ray`` (the default) the encoders run as Ray Data batch inference: the job joins
the cluster in ``RAY_ADDRESS`` (or the one it was submitted to), else starts Ray on this
machine. Without ``--output`` the data set goes to the cache root
(``$MMSEARCH_CACHE`` or ``~/.cache/mmsearch``). Re-running on a complete root does nothing.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from mmsearch.config import load_config
from mmsearch.data.precompute_config import PrecomputeConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Precompute frozen-encoder latents into latent stores.")
    parser.add_argument("--config", default=None, help="YAML config (default: the built-in embedded scenes, configs/data/scenes.yaml)")
    parser.add_argument("--output", default=None, help="data set root: local path or s3://bucket/prefix")
    parser.add_argument("--backend", choices=("ray", "local"), default=None, help="Ray Data actor pools or this process")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if the root holds a data set")
    parser.add_argument("overrides", nargs="*", help="config overrides key.path=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    overrides = list(args.overrides)
    if args.output is not None:
        overrides.append(f"output={args.output}")
    if args.backend is not None:
        overrides.append(f"backend={args.backend}")
    cfg = load_config(PrecomputeConfig, args.config, overrides)

    from mmsearch.orchestration.precompute import run_precompute

    result = run_precompute(cfg, overwrite=args.overwrite)
    card = result.card
    rates = card.throughput
    if result.built:
        print(f"data set {card.name!r} written to {result.root}")
    else:
        print(f"data set {card.name!r} already complete at {result.root} (fingerprint {card.fingerprint}); nothing to do")
    print(
        f"  {rates.get('images', 0)} images, {rates.get('regions', 0)} regions ({rates.get('regions_per_s', 0):.0f} regions/s), "
        f"{rates.get('texts', 0)} texts ({rates.get('texts_per_s', 0):.0f} texts/s; "
        f"{rates.get('encoded_texts', 0)} through the text encoder), "
        f"{rates.get('seconds', {}).get('total', 0):.1f} s in all on the {rates.get('backend')} backend"
    )
    print("  rows per split: " + json.dumps(card.splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
