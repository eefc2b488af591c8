"""Many one-shot supernet searches for ITM on Ray Tune with ASHA; the best architecture and a report at the end.

    python jobs/search_itm.py                           # embedded data, this machine (data set built on first use)
    python jobs/search_itm.py --smoke-test              # the whole path in about a minute on 2 CPUs
    python jobs/search_itm.py recipe.search.epochs=12 tune.num_samples=2 --name my_search
    python jobs/search_itm.py --then-train              # then retrain the best architecture (Ray Train)
    python jobs/search_itm.py --cpu   # trials on the CPU even where a GPU is found (by default they share it)
    ray job submit --working-dir . -- python jobs/search_itm.py --storage s3://bucket/experiments

Config: configs/search/itm.yaml (recipe:, tune:, dataset: sections). Resubmitting with the same
experiment name resumes it. Same as ``mmsearch search --task itm ...``; see
mmsearch.orchestration.jobs.run for what the job does and its exit status.
"""
import sys

from mmsearch.orchestration.jobs.env import settle_ray_auth_mode

if __name__ == "__main__":
    settle_ray_auth_mode()  # before Ray is imported: Ray reads RAY_AUTH_MODE once, at import
    from mmsearch.cli import run_tune_job  # parses the arguments before importing torch and Ray

    sys.exit(run_tune_job("search_itm"))
