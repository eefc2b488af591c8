"""Many FuseMix adapter trainings on Ray Tune with ASHA; trials stream the shared latent store through Ray Data.

    python jobs/tune_fusemix.py                        # embedded scenes' latents (built on first use)
    python jobs/tune_fusemix.py --smoke-test           # the whole path in about a minute on 2 CPUs
    python jobs/tune_fusemix.py --config configs/fusemix/scenes.yaml --tune configs/tune/fusemix_scenes.yaml
    python jobs/tune_fusemix.py --data-root s3://bucket/scenes tune.num_samples=32
    ray job submit --working-dir . -- python jobs/tune_fusemix.py --storage s3://bucket/experiments

The recipe config (configs/fusemix/scenes.yaml) and the tune settings
(configs/tune/fusemix_scenes.yaml) are separate files; overrides start with recipe., tune. or
dataset.. Same as ``mmsearch tune-fusemix ...``; see mmsearch.orchestration.jobs.run.
"""
import sys

from mmsearch.orchestration.jobs.env import settle_ray_auth_mode

if __name__ == "__main__":
    settle_ray_auth_mode()  # before Ray is imported: Ray reads RAY_AUTH_MODE once, at import
    from mmsearch.cli import run_tune_job  # parses the arguments before importing torch and Ray

    sys.exit(run_tune_job("tune_fusemix"))
