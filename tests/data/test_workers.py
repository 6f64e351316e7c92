"""Under DDP, loader workers start from a fork server: whatever the training process's other threads hold at that
moment (gloo's, the progress bar's), a worker does not inherit it."""

from __future__ import annotations

import os
import threading

import pytest
import torch
from torch.utils.data import Dataset, SequentialSampler

from lightning_resnet.data.loaders import LoaderSettings

HELD_BY_ANOTHER_THREAD = threading.Lock()
"""A lock a thread of the training process holds while the workers start, as gloo's threads hold theirs."""


class NeedsTheLock(Dataset):
    """Four blank images, each read under :data:`HELD_BY_ANOTHER_THREAD`, each with the process that read it and
    that process's parent."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        with HELD_BY_ANOTHER_THREAD:
            return torch.zeros(3, 8, 8, dtype=torch.uint8), torch.tensor([os.getpid(), os.getppid()])


@pytest.mark.slow
def test_under_ddp_a_worker_starts_and_reads_while_another_thread_holds_a_lock():
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with HELD_BY_ANOTHER_THREAD:
            taken.set()
            release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    taken.wait()
    try:
        # a worker forked from this process now would find the lock taken, by a thread it does not have, for ever
        loader = LoaderSettings(batch_size=2, num_workers=2, seed=0).loader(NeedsTheLock(), SequentialSampler(
            range(4)), timeout=60)
        readers = {tuple(reader.tolist()) for _, batch in loader for reader in batch}
    finally:
        release.set()
        holder.join()
        torch.distributed.destroy_process_group()
    assert len(readers) == 2  # both workers read, neither waited
    assert all(parent != os.getpid() for _, parent in readers)  # started by the fork server, not forked from here
