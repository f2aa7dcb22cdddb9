from __future__ import annotations

from collections import Counter

import pytest

from medcolor.data.samplers import ChunkSampler, ShardSampler
from medcolor.errors import ConfigError


def _chunk(s: ChunkSampler, epoch: int) -> list[tuple[int, int]]:
    s.set_epoch(epoch)
    return list(s)


def test_chunks_walk_through_seeded_permutations():
    s = ChunkSampler(num_samples=10, batch_size=2, iterations=3, seed=5)
    stream = [i for e in range(5) for i, _ in _chunk(s, e)]  # 30 samples = 3 full passes
    for k in range(3):
        assert sorted(stream[10 * k : 10 * (k + 1)]) == list(range(10))
    assert stream[:10] != stream[10:20]  # each pass is a new permutation


def test_same_chunk_same_samples_and_seeds():
    a = ChunkSampler(50, 4, 5, seed=1)
    b = ChunkSampler(50, 4, 5, seed=1)
    assert _chunk(a, 3) == _chunk(b, 3)
    assert _chunk(a, 3) != _chunk(a, 4)
    c = ChunkSampler(50, 4, 5, seed=2)
    assert _chunk(a, 0) != _chunk(c, 0)
    assert len(a) == 20


def test_ranks_split_a_chunk_without_overlap():
    full = [p for p in ChunkSampler(30, 3, 4, seed=0, world_size=1).positions()]
    r0 = ChunkSampler(30, 3, 2, seed=0, rank=0, world_size=2)
    r1 = ChunkSampler(30, 3, 2, seed=0, rank=1, world_size=2)
    assert sorted([*r0.positions(), *r1.positions()]) == full
    assert not set(r0.positions()) & set(r1.positions())


def test_shard_sampler_covers_each_index_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert Counter(i for s in shards for i in s) == Counter(range(11))
    assert [len(ShardSampler(11, r, 3)) for r in range(3)] == [4, 4, 3]


def test_bad_sizes():
    with pytest.raises(ConfigError, match="empty"):
        ChunkSampler(0, 2, 2)
    with pytest.raises(ConfigError, match="batch_size and iterations"):
        ChunkSampler(5, 0, 2)
