"""The Grain input pipeline: shuffled, repeated, shape-bucketed batches of pre-encoded clips.

Clips come in several shapes (49-121 frames, several resolutions), and one batch must share one
shape, on every process. So the pipeline is index-based: each epoch draws a *batch plan* from
`(seed, epoch)` alone (records grouped by latent shape `(T', H', 2W')`, shuffled inside each group,
cut into global batches, the batches shuffled), and batch `i` of the infinite stream is a pure
function of `i`. Process `p` of `P` loads slice `p` of every global batch. Grain's iterator state is
then just the next batch index, which the checkpoint stores, so a resumed run sees exactly the
batches an uninterrupted run would.
"""

from __future__ import annotations

import collections
import functools
import sys
from typing import Iterable, Sequence

import grain
import numpy as np

from dreamactor_jax.data.shards import ShardSource, batch_keys, list_shards


def epoch_plan(shapes: Sequence[tuple], global_batch: int, seed: int, epoch: int,
               shuffle: bool = True) -> list[np.ndarray]:
    """Global batches (arrays of record indices) of one epoch; each batch holds one shape.

    Records of a shape group that do not fill a whole batch are left out of that epoch (a
    different subset each epoch when shuffling).
    """
    groups: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(shapes):
        groups[tuple(s)].append(i)
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for key in sorted(groups):
        idx = np.asarray(groups[key], dtype=np.int64)
        if shuffle:
            idx = rng.permutation(idx)
        batches += [idx[k * global_batch:(k + 1) * global_batch]
                    for k in range(len(idx) // global_batch)]
    order = rng.permutation(len(batches)) if shuffle else np.arange(len(batches))
    return [batches[o] for o in order]


class BatchPlan(grain.MapDataset):
    """Map dataset whose element `i` is the record indices of global batch `i` (all epochs in a row)."""

    def __init__(self, shapes: Sequence[tuple], global_batch: int, seed: int,
                 shuffle: bool = True, num_epochs: int | None = None):
        super().__init__([])
        self._shapes = [tuple(s) for s in shapes]
        self._gb, self._seed, self._shuffle = global_batch, seed, shuffle
        self.batches_per_epoch = len(epoch_plan(self._shapes, global_batch, seed, 0, shuffle))
        if self.batches_per_epoch == 0:
            counts = collections.Counter(self._shapes)
            raise ValueError(f"global batch size {global_batch}: no latent shape has that many records "
                             f"(records per shape: {dict(counts)}); lower --config.data.global_batch or add clips")
        self._epochs = num_epochs
        self._plan = functools.lru_cache(maxsize=2)(self._epoch)

    def _epoch(self, epoch: int) -> list[np.ndarray]:
        return epoch_plan(self._shapes, self._gb, self._seed, epoch, self._shuffle)

    def __len__(self) -> int:
        if self._epochs is None:
            return sys.maxsize
        return self.batches_per_epoch * self._epochs

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, j = divmod(int(index), self.batches_per_epoch)
        return self._plan(epoch)[j]


class LoadLocalBatch(grain.transforms.Map):
    """Loads this process's slice of a global batch and stacks it into arrays."""

    def __init__(self, source: ShardSource, process_index: int, process_count: int):
        self.source, self.p, self.n = source, process_index, process_count

    def map(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        local = len(indices) // self.n
        mine = indices[self.p * local:(self.p + 1) * local]
        examples = [self.source[int(i)][0] for i in mine]
        keys = batch_keys(examples, f"batch of records {mine.tolist()}")  # + optional ones all carry
        batch = {k: np.stack([e[k] for e in examples]) for k in keys}
        batch["index"] = np.asarray(mine, dtype=np.int32)
        return batch


def make_dataset(shards: str | Iterable, *, global_batch: int, seed: int, shuffle: bool = True,
                 num_epochs: int | None = None, process_index: int = 0, process_count: int = 1,
                 num_threads: int = 2, prefetch: int = 4, worker_count: int = 0) -> grain.IterDataset:
    """The training input: an `IterDataset` of per-process batches (dicts of numpy arrays).

    `shards`: a folder of shards or a list of shard paths. `global_batch` must divide by
    `process_count`. Iterate with `iter(ds)`; the iterator's `get_state()`/`set_state()` (or
    `grain.checkpoint.CheckpointSave/Restore`) save and restore the exact position.
    """
    if global_batch < 1 or global_batch % process_count:
        raise ValueError(f"global batch size {global_batch}: must be a positive multiple of the "
                         f"process count {process_count}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process index {process_index}: must be in [0, {process_count})")
    paths = list_shards(shards) if isinstance(shards, (str, bytes)) or hasattr(shards, "is_dir") else list(shards)
    source = ShardSource(paths)
    shapes = [source.shape(i) for i in range(len(source))]
    plan = BatchPlan(shapes, global_batch, seed, shuffle, num_epochs)
    ds = plan.map(LoadLocalBatch(source, process_index, process_count))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    if worker_count > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return it
