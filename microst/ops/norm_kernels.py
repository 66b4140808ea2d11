"""norm's kernel versions: the Python half of each, what it launches.

    v1  kernels/norm_v1.cu  one block per statistics group, two passes over the group
    v2  kernels/norm_v2.cu  several blocks per group (partial moments, merged in order by each
                            block of the pass that follows), float4 loads, the fused ReLU in the
                            same passes

forward(...) -> (y, mean, rstd); backward(...) -> (dx, dweight, dbias) (None where not asked).
"""
from . import activation, versions
from .base import blocks, device_array, empty, f32, i32, launch


def _filled(device, c, value):
    a = empty(device, (c,))
    a.fill(value)
    return a


def _params(device, x, weight, bias):
    c = x.shape[1]
    return (_filled(device, c, 1.0) if weight is None else weight), (_filled(device, c, 0.0) if bias is None else bias)


class NormV1:
    """One block per group (instance: an image's channel; batch: a channel), mean then variance."""

    def forward(self, device, version, x, weight, bias, per_image, eps, mean, rstd, relu):
        n, c = x.shape[:2]
        weight, bias = _params(device, x, weight, bias)
        groups = n * c if per_image else c
        batch_stats = mean is None
        if batch_stats:
            mean, rstd = empty(device, (groups,)), empty(device, (groups,))
        else:  # given statistics are only read, but the kernel's parameters are its outputs in training
            mean, rstd = device_array(device, mean), device_array(device, rstd)
        y = empty(device, x.shape)
        launch(device, version.kernel("norm_forward"), groups,
               (x, weight, bias, y, mean, rstd, i32(n), i32(c), i32(x.shape[2] * x.shape[3]),
                i32(per_image), i32(batch_stats), f32(eps)))
        return (activation.relu_forward(device, y) if relu else y), mean, rstd

    def backward(self, device, version, dy, x, y, weight, mean, rstd, per_image, batch_stats, needs, relu):
        need_x, need_w, need_b = needs
        if relu:
            dy = activation.relu_backward(device, y, dy)
        n, c, h, w = dy.shape
        weight = _params(device, x, weight, None)[0]
        groups = n * c if per_image else c
        dx = empty(device, dy.shape)
        sum_dy, sum_dy_xhat = empty(device, (groups,)), empty(device, (groups,))
        launch(device, version.kernel("norm_backward"), groups,
               (x, dy, weight, mean, rstd, dx, sum_dy, sum_dy_xhat,
                i32(n), i32(c), i32(h * w), i32(per_image), i32(batch_stats)))
        images = n if per_image else 1

        def over_images(s):
            out = empty(device, (c,))
            launch(device, version.kernel("sum_over_images"), 1, (s, out, i32(images), i32(c)))
            return out

        return (dx if need_x else None), (over_images(sum_dy_xhat) if need_w else None), \
            (over_images(sum_dy) if need_b else None)


class NormV2:
    """Each plane (one image's channel) in chunks, one block per (chunk, plane); partial moments or
    sums merged per group in a fixed order; the normalize and the ReLU in one float4 pass."""
    CHUNK_VALUES = 4096   # values per block at least ...
    GRID_BLOCKS = 2048    # ... and about this many blocks in all
    APPLY_CAP = 64        # blocks per plane of the elementwise passes (grid-stride beyond)

    def chunking(self, planes, hw):
        """(chunks per plane, values per chunk, a multiple of 4 for the float4 loads)."""
        chunks = max(1, min(-(-hw // self.CHUNK_VALUES), self.GRID_BLOCKS // planes))
        length = -(-(-(-hw // chunks)) // 4) * 4
        return -(-hw // length), length

    def _planes(self, x):
        n, c, h, w = x.shape
        if n * c > 65535:  # gridDim.y
            raise ValueError(f"norm v2: {n * c} planes (batch x channels) is more than a grid's 65535 rows")
        return n, c, h * w

    def _apply_grid(self, hw, n, c):
        return max(1, min(self.APPLY_CAP, -(-hw // (4 * 256)))), n * c

    def forward(self, device, version, x, weight, bias, per_image, eps, mean, rstd, relu):
        n, c, hw = self._planes(x)
        weight, bias = _params(device, x, weight, bias)
        compute_stats = mean is None
        chunks, length = self.chunking(n * c, hw)
        if compute_stats:
            groups = n * c if per_image else c
            partial = empty(device, (n * c, chunks, 3))
            launch(device, version.kernel("norm_stats"), (chunks, n * c), (x, partial, i32(hw), i32(length)))
            mean, rstd = empty(device, (groups,)), empty(device, (groups,))
        else:  # given (eval): read only; the kernel's parameters are its outputs with batch statistics
            mean, rstd = device_array(device, mean), device_array(device, rstd)
            partial = mean
        y = empty(device, x.shape)
        launch(device, version.kernel("norm_apply"), self._apply_grid(hw, n, c),
               (x, weight, bias, partial, mean, rstd, y, i32(n), i32(c), i32(hw), i32(chunks), i32(per_image),
                i32(compute_stats), f32(eps), i32(relu)))
        return y, mean, rstd

    def backward(self, device, version, dy, x, y, weight, mean, rstd, per_image, batch_stats, needs, relu):
        n, c, hw = self._planes(dy)
        weight = _params(device, x, weight, None)[0]
        chunks, length = self.chunking(n * c, hw)
        y = dy if y is None else y  # read only when relu
        partial = empty(device, (n * c, chunks, 2))
        launch(device, version.kernel("norm_backward_sums"), (chunks, n * c),
               (x, dy, y, mean, rstd, partial, i32(c), i32(hw), i32(length), i32(per_image), i32(relu)))
        dw, db = empty(device, (c,)), empty(device, (c,))
        need_x, need_w, need_b = needs
        dx = None
        if need_x:  # dweight and dbias come with dx
            dx = empty(device, dy.shape)
            launch(device, version.kernel("norm_backward_apply"), self._apply_grid(hw, n, c),
                   (x, dy, y, weight, mean, rstd, partial, dx, dw, db, i32(n), i32(c), i32(hw), i32(chunks),
                    i32(per_image), i32(batch_stats), i32(relu)))
        elif need_w or need_b:
            launch(device, version.kernel("norm_backward_finalize"), blocks(c),
                   (partial, dw, db, i32(n), i32(c), i32(chunks), i32(per_image)))
        return dx, (dw if need_w else None), (db if need_b else None)


VERSIONS = versions.declare(
    versions.Version("norm", "v1", "one block per statistics group, two-pass mean and variance",
                     versions.kernels_of("norm_v1.cu", ("norm_forward", "norm_backward", "sum_over_images"), "v1"),
                     NormV1()),
    versions.Version("norm", "v2", "several blocks per group, deterministic second stage, float4 loads, fused ReLU",
                     versions.kernels_of("norm_v2.cu", ("norm_stats", "norm_apply", "norm_backward_sums",
                                                        "norm_backward_finalize", "norm_backward_apply"), "v2"),
                     NormV2()))
