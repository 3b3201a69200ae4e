"""Logging set-up shared by every entry point; rank-aware for distributed runs."""
from __future__ import annotations

import logging
import os
import sys

_FORMAT = "%(asctime)s %(levelname)s %(name)s%(rank)s: %(message)s"


def current_rank() -> int:
    """This process's rank in a distributed job (0 when standalone).

    msrun sets RANK_ID; HCCL rank-table launches set RANK_ID too; torchrun-style launchers set RANK.
    """
    for var in ("RANK_ID", "RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


class _RankFilter(logging.Filter):
    def __init__(self, rank: int, all_ranks: bool) -> None:
        super().__init__()
        self.rank, self.all_ranks = rank, all_ranks

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = f"[rank {self.rank}]" if self.all_ranks else ""
        # Other ranks report only warnings and errors unless asked for everything.
        return self.rank == 0 or self.all_ranks or record.levelno >= logging.WARNING


def setup_logging(level: int | str = logging.INFO, all_ranks: bool = False) -> None:
    """Configure the root logger once: one stderr handler, rank 0 at ``level``, other ranks quiet."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_RankFilter(current_rank(), all_ranks))
    root.addHandler(handler)
    root.setLevel(level)
