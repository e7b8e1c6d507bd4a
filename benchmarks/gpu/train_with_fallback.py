"""``recsys-train`` on a CUDA machine that has only the CPU build of fbgemm-gpu.

    torchrun --nproc_per_node=1 benchmarks/gpu/train_with_fallback.py trainer=distributed \
        trainer.distributed.backend=nccl trainer.device=cuda model=sasrec data=tiny

Registers ``fbgemm_cuda_fallback`` (CPU round trips for fbgemm operators without a CUDA kernel)
and then runs the CLI unchanged, so the sharded (NCCL) path can be tried where the 465 MB CUDA
build of FBGEMM cannot be installed. Throughput measured this way is a lower bound.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fbgemm_cuda_fallback import install  # noqa: E402

from recsys.cli.train import main  # noqa: E402

if __name__ == "__main__":
    print("fbgemm CUDA fallbacks (added, refused):", install(), flush=True)
    main()
