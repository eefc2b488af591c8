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

import sys

from mmsearch.orchestration.jobs_env import settle_ray_auth_mode

settle_ray_auth_mode()  # before anything imports Ray (Ray reads RAY_AUTH_MODE once, at import)

from mmsearch.cli_parsers import precompute_parser as build_parser  # noqa: E402  (standard library only)


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)  # -h and usage errors answered before torch and Ray are imported
    from mmsearch.orchestration.precompute import main as run

    return run(argv)


__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
