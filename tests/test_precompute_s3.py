"""A data set precomputed straight to S3 (loopback moto server) and opened from there."""
from __future__ import annotations

import uuid

import pytest
import torch

from mmsearch.data.dataset_root import DatasetRoot
from mmsearch.data.precompute import precompute
from mmsearch.data.tasks import open_task_data
from mmsearch.data.task_data import TaskDataConfig
from test_precompute_common import scenes_config

pytestmark = pytest.mark.s3


def test_precompute_to_s3_and_open_from_there(s3_server, monkeypatch):
    import boto3

    from mmsearch.recipes.fusemix.config import FuseMixDataConfig
    from mmsearch.recipes.fusemix.data import default_stream_factory, load_eval_set

    bucket = f"mms-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])  # how a cluster job would find the endpoint
    uri = f"s3://{bucket}/datasets/scenes"
    cfg = scenes_config(uri, num_scenes=10, text={"states": False}, tables=["regions", "images", "captions", "negatives", "pairs"])
    result = precompute(cfg)
    assert result.built and result.root == uri
    keys = sorted(o["Key"] for o in boto3.client("s3", endpoint_url=s3_server["endpoint"], region_name="us-east-1")
                  .list_objects_v2(Bucket=bucket)["Contents"])
    assert {"datasets/scenes/dataset.json", "datasets/scenes/vocab.json", "datasets/scenes/answers.json",
            "datasets/scenes/train/_mmsearch_store.json"} <= set(keys)

    root = DatasetRoot(uri)
    assert root.read_card() == result.card and len(root.read_vocab()) == result.card.vocab_size
    assert not precompute(cfg).built  # idempotent on S3 too

    data = open_task_data(TaskDataConfig(root=uri, task="itm"))
    batch = next(data.batches("train", batch_size=8))
    assert batch.region_feats.shape[0] == 8 and batch.targets["neg_text_mask"].dtype == torch.bool
    fusemix = FuseMixDataConfig(store=root.split_uri("train"), val_store=root.split_uri("val"))
    pairs = next(iter(default_stream_factory(fusemix, "train", 0, 1).epoch(0, 4, 0)))
    assert pairs["image"].shape == (4, 1280) and pairs["text"].shape == (4, 384)
    assert load_eval_set(default_stream_factory(fusemix, "val", 0, 1), fusemix).x.shape[0] == result.card.splits["val"]["images"]
