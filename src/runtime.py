"""Device and execution-mode set-up shared by every entry point."""
from __future__ import annotations

import os

import mindspore as ms
import numpy as np

DEVICES = ("CPU", "GPU", "Ascend")

# With AVX-512 available, oneDNN (MindSpore's CPU kernels) runs convolutions on MindSpore's plain
# NCHW tensors with a reference, unvectorised kernel: measured 0.6 GFLOP/s, 100-170x slower than its
# AVX2 im2col + GEMM path, for models built in Python and loaded MindIR graphs alike.  The cap only
# works if set before the first oneDNN primitive is created, which importing this module precedes
# (src/models/jasper.py and every entry point import it).  Set ONEDNN_MAX_CPU_ISA to override.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


def configure_device(device_target: str = "CPU", device_id: int = 0, seed: int | None = None) -> None:
    """GRAPH_MODE on the chosen device; with ``seed``, the same seed for MindSpore and numpy (every
    data-parallel rank passes the same one, so initial weights are identical)."""
    if device_target not in DEVICES:
        raise ValueError(f"--device_target must be one of {DEVICES}, got {device_target!r}")
    ms.set_device(device_target, None if device_target == "CPU" else device_id)
    ms.set_context(mode=ms.GRAPH_MODE)
    if device_target == "CPU":
        # MindSpore's default is 25 kernel threads, far more than small machines have cores.
        try:
            ms.device_context.cpu.op_tuning.threads_num(int(os.environ.get("MS_CPU_THREADS", os.cpu_count() or 1)))
        except RuntimeError:  # set once per process; a second configure_device (tests, tools) keeps it
            pass
    if seed is not None:
        ms.set_seed(seed)
        np.random.seed(seed)
