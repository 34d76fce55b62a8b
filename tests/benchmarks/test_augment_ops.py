"""benchmarks.augment_ops: what one augmented batch costs, eager and compiled."""

import pytest

from benchmarks.augment_ops import count_kernels, kernels_in

GENERATED = '''
def call(self, args):
        arg0_1, = args
        # Topologically Sorted Source Nodes: [argsort], Original ATen: [aten.sort]
        buf0 = torch.ops.aten.sort.stable(reinterpret_tensor(arg1_1, (64, 3), (36, 1), 10))
        buf1 = buf0[0]
        assert_tensor_metadata(buf1, (64, 3), (3, 1), torch.int64, 'torch.ops.aten.sort.default')
        buf3 = empty_strided_cpu((64, 3), (3, 1), torch.float32)
        cpp_fused_add_0(arg0_1, buf3)
        buf20 = extern_kernels.convolution(buf3, arg7_1, stride=(1, 1))
        aten.scatter_reduce_.two(buf26, 1, buf27, buf28, reduce='sum', include_self=True)
        buf30 = torch.ops.aten.cumsum.default(buf26, dim=1, dtype=torch.int64)
        triton_poi_fused_add_1.run(buf1, buf2, 1024, stream=stream0)
        del buf1
        return (buf0, )

runner = Runner(partitions=[])
call = runner.call
'''


def test_kernels_are_the_generated_calls_not_allocations_views_or_checks() -> None:
    # sort, the fused C++ kernel, convolution, scatter_reduce, cumsum, the Triton kernel
    assert kernels_in(GENERATED) == 6


@pytest.mark.slow  # CPU inductor compiles each recipe (minutes on two cores)
def test_compiled_batches_cost_a_few_kernels() -> None:
    counts = count_kernels(batch=64)
    eager = {"basic": 17, "albumentations": 136, "randaugment": 330}  # compute ops, eager
    for name, count in counts.items():
        assert 1 <= count["kernels"] <= eager[name] // 10, (name, count)
        assert count["per_batch"] == count["kernels"] + count["draws"]
    assert counts["albumentations"]["draws"] == 2  # the uniform draw and GaussNoise's
