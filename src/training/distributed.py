"""Data-parallel set-up: msrun (CPU, GPU) or an HCCL rank table (Ascend)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import mindspore as ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True under msrun (MS_WORKER_NUM) or an Ascend rank-table launch (RANK_TABLE_FILE + RANK_SIZE > 1)."""
    if int(os.environ.get("MS_WORKER_NUM", "1")) > 1:
        return True
    return bool(os.environ.get("RANK_TABLE_FILE")) and int(os.environ.get("RANK_SIZE", "1")) > 1


def init_cluster(distributed: bool) -> Cluster:
    """Join the collective group and switch on data-parallel gradient averaging (when ``distributed``)."""
    if not distributed:
        return Cluster()
    from mindspore.communication import get_group_size, get_rank, init

    init()
    rank, world = get_rank(), get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=world)
    log.info("data parallel: rank %d of %d", rank, world)
    return Cluster(rank, world)
