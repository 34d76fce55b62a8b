"""``python -m benchmarks.deterministic MODULE [ARGS...]``: run ``python -m MODULE ARGS...``
with every CUDA source of run-to-run difference switched off, for a bit-for-bit comparison.

cuDNN picks deterministic algorithms and does not autotune (``wrn.step.TrainStep`` leaves
``cudnn.benchmark`` off in this mode), cuBLAS gets a fixed workspace
(``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS starts, so set before any CUDA work), and
``torch.use_deterministic_algorithms`` picks deterministic kernels, inductor's included. Ops
with no deterministic kernel warn instead of failing (``warn_only``): they run as they always
do, and a comparison that then differs says so. The kill-and-resume measurement runs its
workers through this on CUDA (``benchmarks.kill_resume``).
"""

from __future__ import annotations

import os
import runpy
import sys

CUBLAS_WORKSPACE = ":4096:8"  # PyTorch's reproducibility notes: deterministic cuBLAS


def enable() -> None:
    """Switch this process to deterministic CUDA kernels (before any CUDA work)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    import torch

    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m benchmarks.deterministic MODULE [ARGS...]", file=sys.stderr)
        return 2
    enable()
    sys.argv = [args[0], *args[1:]]
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
