"""row_batches: how the in-memory TaskData implementations order and cut a part's rows."""
from __future__ import annotations

import numpy as np
import pytest

from mmsearch.data.task_data import row_batches, shuffled_order


def test_rows_in_order_cut_with_or_without_the_short_tail():
    rows = np.arange(10, 20)
    assert [b.tolist() for b in row_batches(rows, 4, None, False)] == [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    assert [b.tolist() for b in row_batches(rows, 4, None, True)] == [[10, 11, 12, 13], [14, 15, 16, 17]]
    assert list(row_batches(rows[:3], 4, None, True)) == []


def test_a_seed_permutes_all_rows_reproducibly():
    rows = np.arange(50)
    first = np.concatenate(list(row_batches(rows, 7, [3, 1, 0], False)))
    assert sorted(first.tolist()) == rows.tolist() and first.tolist() != rows.tolist()
    assert np.array_equal(first, rows[np.random.default_rng([3, 1, 0]).permutation(50)])
    assert np.array_equal(first, np.concatenate(list(row_batches(rows, 3, [3, 1, 0], False))))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        next(row_batches(rows, 0, None, False))


@pytest.mark.parametrize("count, block", [(50, 4), (48, 16), (7, 16), (33, 1)])
def test_a_shuffle_block_keeps_runs_of_consecutive_positions_whole(count, block):
    order = shuffled_order(count, [3, 1], block)
    assert sorted(order.tolist()) == list(range(count))  # a permutation
    inside = order % block != 0  # not the first position of its block ...
    assert order[0] % block == 0 and np.array_equal(order[1:][inside[1:]], order[:-1][inside[1:]] + 1)  # ... follows its predecessor
    assert np.array_equal(order, shuffled_order(count, [3, 1], block))  # reproducible
    if count // block > 4:  # (few blocks may come out in order by chance)
        assert not np.array_equal(order, shuffled_order(count, [3, 2], block)) and not np.array_equal(order, np.arange(count))
    rows = np.arange(100, 100 + count)
    assert np.array_equal(np.concatenate(list(row_batches(rows, 5, [3, 1], False, block))), rows[order])


def test_a_shuffle_block_of_one_is_the_plain_permutation():
    assert np.array_equal(shuffled_order(40, [9, 0], 1), np.random.default_rng([9, 0]).permutation(40))


def test_synthetic_data_shuffles_in_the_configs_blocks_too():
    from mmsearch.data.synthetic import SyntheticTaskData
    from mmsearch.data.task_data import TaskDataConfig

    def sample_ids(block):
        data = SyntheticTaskData.from_config(TaskDataConfig(root="synthetic", task="vqa", shuffle_block=block),
                                             train_images=40, val_images=2, test_images=2)
        rows = data._part("weights")[1]
        ids = [i for b in data.batches("weights", batch_size=6, seed=1, epoch=2) for i in b.meta["sample_id"]]
        return ids, rows

    plain, rows = sample_ids(1)
    blocked, _ = sample_ids(4)
    assert sorted(plain) == sorted(blocked) and plain != blocked
    expected = [int(rows[i]) for i in shuffled_order(len(rows), [1, 2, 0], 4)]  # (seed, epoch, part "weights")
    assert [int(i.rsplit("/", 1)[1]) for i in blocked] == expected


def test_a_train_workers_shard_of_synthetic_data_keeps_its_blocks():
    """Ray Train's strided shards order synthetic data (no ``epoch_order``) in its shuffle blocks too."""
    from mmsearch.data.store import epoch_seed
    from mmsearch.data.synthetic import SyntheticTaskData
    from mmsearch.data.task_data import TaskDataConfig
    from mmsearch.recipes.train_derived.data import StridedShard

    data = SyntheticTaskData.from_config(TaskDataConfig(root="synthetic", task="vqa", shuffle_block=4),
                                         train_images=40, val_images=2, test_images=2)
    count = data.num_samples("train")
    shard = StridedShard(data, rank=0, world_size=1, batch_size=6, seed=1, drop_last=False)
    assert np.array_equal(shard.positions(2), shuffled_order(count, epoch_seed(1, 2), 4))
    halves = [StridedShard(data, rank=r, world_size=2, batch_size=6, seed=1, drop_last=False).positions(2) for r in (0, 1)]
    assert np.array_equal(halves[0], shuffled_order(count, epoch_seed(1, 2), 4)[: count // 2 * 2][0::2])
    assert not set(halves[0]) & set(halves[1])
