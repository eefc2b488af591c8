"""Train a derived architecture with Ray Train (DDP, or DeepSpeed on request), from scratch.

    python jobs/train_derived.py --arch mmnas_vg                   # config from the task: configs/train/vg.yaml
    python jobs/train_derived.py --config configs/train/vqa.yaml --arch runs/search_vqa
    python jobs/train_derived.py --config configs/train/vqa.yaml --arch mmnas_vqa --workers 2
    python jobs/train_derived.py --config configs/train/vqa.yaml --gpu               # one local GPU, bf16 autocast
    python jobs/train_derived.py --config configs/train/vqa.yaml --deepspeed configs/deepspeed/zero2_fp32.json
    python jobs/train_derived.py --config configs/train/vqa.yaml --smoke-test        # 1-minute check, toy data
    ray job submit --working-dir . -- python jobs/train_derived.py --config configs/train/vqa.yaml \\
        --arch s3://bucket/results/search_vqa --workers 8 --gpu --storage s3://bucket/results

``--arch`` takes a named spec (mcan, mmnas_vqa, mmnas_vg, mmnas_itm), a spec JSON file, or a
finished search: its output directory or its Tune experiment directory (the best architecture
is taken). Without ``--config`` the config is ``configs/train/<task>.yaml`` for the task the
architecture was searched for (VQA for ``mcan`` or a spec without a task), and a search's
architecture trains on the data set that search read. ``--check`` validates and runs nothing.
The job joins the cluster in ``RAY_ADDRESS`` (or the one it was submitted to), else starts Ray
on this machine; there, resources are detected: with a GPU and no ``--cpu`` it trains
one worker per GPU (bf16 autocast where the GPU supports it), on CPUs the workers share the
cores. Checkpoints and outputs go to ``<storage>/<name>/``; submitting the same name and
storage again resumes from the latest checkpoint (more epochs: ``train.epochs=N``).
``key=value`` arguments override the config (e.g. ``train.epochs=4 optim.lr=5e-4``).

Before Ray starts, the job checks the config, the architecture, the data and its sizes, the
DeepSpeed config, the storage and, when the run exists, that its newest intact checkpoint was
written with the same config (a change names every key that changed; a damaged newest checkpoint
is skipped, with a warning, for the one before it). Bad input exits with status 2 and one message.
``--config`` is read as given, else relative to the source checkout (as the search jobs do).
Same as ``mmsearch train ...``; see mmsearch.orchestration.train_job.
"""
import sys

from mmsearch.orchestration.jobs.env import settle_ray_auth_mode

if __name__ == "__main__":
    settle_ray_auth_mode()  # before Ray is imported: Ray reads RAY_AUTH_MODE once, at import
    from mmsearch.cli import run_train_job  # parses the arguments before importing torch and Ray

    sys.exit(run_train_job())
