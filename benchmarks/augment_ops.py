"""Count the ops one augmented batch costs on the batched (GPU) augmentation path.

Eager: each aten op is at least one kernel launch on CUDA, so the count is what launch
overhead scales with. Counted on CPU tensors with a ``TorchDispatchMode`` (no GPU needed), for
one batch of ``--batch`` uint8 images: parameter sampling plus application, as
:func:`augment_batch` does inside :class:`wrn.gpu_data.GpuBatches`. ``total`` counts every
dispatched op, ``compute`` leaves out pure view/metadata ops (which launch nothing).

``--inductor``: the kernels the batch costs once :func:`wrn.gpu_data.compiled` has compiled
it with CPU inductor (the generated code's calls, fused kernels and library calls alike),
plus the one or two random draws made outside the graph (``draws``). On CUDA inductor fuses
the same graph into Triton kernels; the CPU count is the stand-in a machine without a GPU has.

    python -m benchmarks.augment_ops                                   # this checkout
    python -m benchmarks.augment_ops --inductor                        # compiled (minutes)
    git show HEAD:wrn/gpu_data.py > /tmp/old_gpu_data.py
    python -m benchmarks.augment_ops --module /tmp/old_gpu_data.py     # another version

Prints one JSON line: {augmentation: {"total": n, "compute": n}}, or with ``--inductor``
{augmentation: {"kernels": n, "draws": n, "per_batch": n}}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections import Counter
from types import ModuleType

import torch
from torch.utils._python_dispatch import TorchDispatchMode

AUGMENTATIONS = ("basic", "albumentations", "randaugment")


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket.__name__)] += 1
        schema = func._schema
        # a view or metadata-only op: aliased output, nothing written
        aliased = bool(schema.returns) and schema.returns[0].alias_info is not None
        if (func.is_view or aliased) and not schema.is_mutable:
            self.views += 1
        return func(*args, **(kwargs or {}))


def load_module(path: str | None) -> ModuleType:
    """``wrn.gpu_data`` of this checkout, or the module in file ``path`` (e.g. an old version)."""
    if path is None:
        import wrn.gpu_data

        return wrn.gpu_data
    spec = importlib.util.spec_from_file_location("old_gpu_data", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_ops(module: ModuleType, batch: int = 512, seed: int = 0) -> dict[str, dict[str, int]]:
    """{augmentation: {"total", "compute"}} aten ops for one batch of ``batch`` images."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, 32, 32), generator=gen, dtype=torch.uint8)
    counts = {}
    for name in AUGMENTATIONS:
        module.augment_batch(images, name, gen)  # warm caches (pixel grids, kernels)
        with OpCounter() as counter:
            module.augment_batch(images, name, gen)
        total = sum(counter.ops.values())
        counts[name] = {"total": total, "compute": total - counter.views}
    return counts


# a kernel or library call in inductor's generated ``call()``: a fused C++ or Triton kernel,
# an extern kernel (conv, grid_sample, sort...) or an aten fallback; allocations and views
# (empty_strided, reinterpret_tensor) launch nothing
_CALL = re.compile(
    r"^\s*(?:\w+ = )?(?:cpp_fused_\w+|triton_\w+\.run|extern_kernels\.\w+"
    r"|(?:torch\.ops\.)?aten\.\w+(?:\.\w+)?)\(",
    re.M,
)


def kernels_in(code: str) -> int:
    """Kernel and library calls in the ``call()`` of one inductor-generated module."""
    body = code[code.index("def call(") :]
    end = body.find("\nrunner = ")  # module-level code after call() (newer wrappers)
    return len(_CALL.findall(body if end < 0 else body[:end]))


def count_kernels(batch: int = 512, seed: int = 0) -> dict[str, dict[str, int]]:
    """{augmentation: {"kernels", "draws", "per_batch"}} for one compiled batch on CPU."""
    import torch._dynamo
    from torch._inductor.utils import run_and_get_code

    from wrn import gpu_augment, gpu_data

    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, 32, 32), generator=gen, dtype=torch.uint8)
    k = gpu_augment.constants(images.device)
    counts = {}
    for name in AUGMENTATIONS:
        torch._dynamo.reset()
        u, noise = gpu_data.draw(name, batch, gen)
        compiled = gpu_data.compiled("inductor")
        _, codes = run_and_get_code(compiled, images, u, noise, k, name, "zero", True)
        kernels = sum(kernels_in(code) for code in codes)
        draws = 1 + (noise is not None)
        counts[name] = {"kernels": kernels, "draws": draws, "per_batch": kernels + draws}
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", help="a gpu_data.py file to count instead of wrn.gpu_data")
    parser.add_argument("--batch", type=int, default=512, help="images per batch (512)")
    parser.add_argument(
        "--inductor", action="store_true", help="kernels after torch.compile (CPU inductor)"
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be >= 1")
    if args.inductor and args.module is not None:
        parser.error("--inductor counts this checkout's compiled graphs; no --module")
    if args.inductor:
        print(json.dumps(count_kernels(args.batch)))
        return 0
    try:
        module = load_module(args.module)
    except (OSError, ValueError, SyntaxError, ImportError) as exc:
        print(f"augment_ops: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    print(json.dumps(count_ops(module, args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
