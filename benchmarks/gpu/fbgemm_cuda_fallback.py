"""CUDA kernels for fbgemm operators where only the CPU build of fbgemm-gpu is installed.

torchrec needs fbgemm-gpu. Its CUDA build is a 465 MB wheel; on a GPU machine that cannot
install it (no package index, a size cap on what can be brought), ``fbgemm-gpu-cpu`` of the
release that matches the machine's torch loads fine next to a CUDA torch, but its operators
have CPU kernels only, and torchrec's jagged-tensor bookkeeping (offsets, lengths) calls them
with CUDA tensors. ``install()`` registers, for every fbgemm operator without a CUDA kernel,
a CUDA kernel that copies the tensor arguments to the CPU, runs the CPU kernel and copies the
results back. The embedding lookups and all model arithmetic still run on the GPU; throughput
measured this way is a lower bound (each such call synchronises the device).
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_flatten, tree_map

_LIBRARIES: list[torch.library.Library] = []


def _move(device: torch.device | str):
    return lambda x: x.to(device) if isinstance(x, torch.Tensor) else x


def _overload(qualified: str) -> torch._ops.OpOverload:
    name = qualified.split("::", 1)[1]
    base, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.fbgemm, base), overload or "default")


def _cpu_round_trip(op: torch._ops.OpOverload):
    def kernel(*args, **kwargs):
        leaves, _ = tree_flatten((args, kwargs))
        device = next(x.device for x in leaves if isinstance(x, torch.Tensor) and x.is_cuda)
        out = op(*tree_map(_move("cpu"), args), **tree_map(_move("cpu"), kwargs))
        return tree_map(_move(device), out)

    return kernel


def install() -> tuple[int, int]:
    """Register the fallbacks: (operators given a CUDA kernel, operators that refused one)."""
    import fbgemm_gpu  # noqa: F401  (registers the fbgemm operators)

    has = torch._C._dispatch_has_kernel_for_dispatch_key
    lib = torch.library.Library("fbgemm", "IMPL")
    _LIBRARIES.append(lib)
    added = refused = 0
    for qualified in sorted(torch._C._dispatch_get_all_op_names()):
        if not qualified.startswith("fbgemm::") or has(qualified, "CUDA"):
            continue
        if not has(qualified, "CPU"):
            continue
        try:
            lib.impl(qualified.split("::", 1)[1], _cpu_round_trip(_overload(qualified)), "CUDA")
            added += 1
        except (RuntimeError, AttributeError):
            refused += 1
    return added, refused
