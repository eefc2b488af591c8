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
Same as ``mmsearch precompute ...``; see mmsearch.orchestration.precompute.
"""
import sys

from mmsearch.orchestration.jobs.env import settle_ray_auth_mode

if __name__ == "__main__":
    settle_ray_auth_mode()  # before Ray is imported: Ray reads RAY_AUTH_MODE once, at import
    from mmsearch.cli import run_precompute_job  # parses the arguments before importing torch and Ray

    sys.exit(run_precompute_job())
