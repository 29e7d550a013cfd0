"""``pretrain.data``: per-rank sampling that covers each epoch once and resumes at a saved position."""

from __future__ import annotations

import itertools
import os
import signal

import pytest

from data_prep.errors import UserError


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def keys(batches):
    return [k for batch in batches for k in batch]


def test_ranks_see_disjoint_examples_and_together_cover_the_epoch():
    from pretrain.data import EpochBatchSampler

    n, b = 103, 4  # 103 // 8 = 12 global batches per epoch, 7 rows dropped
    r0 = keys(take(EpochBatchSampler(n, b, 0, 2, seed=1), 12))
    r1 = keys(take(EpochBatchSampler(n, b, 1, 2, seed=1), 12))
    assert not set(r0) & set(r1)
    assert len(set(r0) | set(r1)) == 96 and {e for e, _ in r0 + r1} == {0}
    nxt = take(EpochBatchSampler(n, b, 0, 2, seed=1), 13)[-1]
    assert {e for e, _ in nxt} == {1}  # the next epoch, with a new order
    assert take(EpochBatchSampler(n, b, 0, 2, seed=1), 13) == take(EpochBatchSampler(n, b, 0, 2, seed=1), 13)
    assert take(EpochBatchSampler(n, b, 0, 2, seed=2), 1) != take(EpochBatchSampler(n, b, 0, 2, seed=1), 1)


def test_one_rank_with_grad_accum_sees_what_two_ranks_see_per_step():
    from pretrain.data import EpochBatchSampler

    one = take(EpochBatchSampler(50, 3, 0, 1, seed=5), 10)
    two = [take(EpochBatchSampler(50, 3, r, 2, seed=5), 5) for r in (0, 1)]
    for step in range(5):  # micro-batches 2*step and 2*step+1 of 1 rank == step of ranks 0 and 1
        assert one[2 * step] == two[0][step] and one[2 * step + 1] == two[1][step]


def test_a_sampler_started_at_a_saved_position_continues_exactly():
    from pretrain.data import EpochBatchSampler

    whole = EpochBatchSampler(30, 4, 1, 2, seed=3)
    expected = take(whole, 9)
    pos = (0, 0)
    for _ in range(5):
        pos = whole.advance(*pos)
    assert pos == (1, 16)  # 30 // 8 = 3 batches per epoch: epoch 1 after 2 batches of it
    assert take(EpochBatchSampler(30, 4, 1, 2, seed=3, epoch=pos[0], offset=pos[1]), 4) == expected[5:]


def test_too_few_examples_for_one_global_batch():
    from pretrain.data import EpochBatchSampler

    with pytest.raises(UserError, match="fewer than one batch"):
        EpochBatchSampler(7, 4, 0, 2, seed=0)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_loader_workers_ignore_sigusr1_but_stop_on_sigterm():
    """SIGUSR1 is the trainer's (a checkpoint, then exit); SIGTERM is how a DataLoader stops its workers,
    and a worker deaf to it deadlocks the process's exit."""
    import torch

    from pretrain.data import EpochBatchSampler, make_loader

    class Rows(torch.utils.data.Dataset):
        def __getitem__(self, key):
            return torch.tensor(key[1])

        def __len__(self):
            return 64

    loader = make_loader(Rows(), EpochBatchSampler(64, 4, 0, 1, seed=1), torch.stack, 1, pin_memory=False)
    batches = iter(loader)
    next(batches)
    [worker] = batches._workers
    os.kill(worker.pid, signal.SIGUSR1)
    next(batches)  # still serving
    assert worker.is_alive()
    os.kill(worker.pid, signal.SIGTERM)
    worker.join(timeout=10)
    assert not worker.is_alive()
