// loss v1, the first version of this family.
// The reductions of the perceptual losses (see ops/loss.py): gram (an implicit GEMM), and the
// partial sums of mse_loss and tv_loss. A loss is summed in two deterministic passes: many blocks
// write one partial sum each, then sum_partials_v1 adds them in one block.
#include "common.cuh"
#include "gemm.cuh"

// G[n] = scale * F[n] F[n]^T, F[n] = (C, P). grid (ceil(C/64), ceil(C/64), N), block 256.
extern "C" __global__ void __launch_bounds__(256)
gram_forward_v1(const float* __restrict__ f, float* __restrict__ g, int C, int P, float scale) {
    __shared__ gemm::Tiles tiles;
    const float* fn = f + blockIdx.z * C * P;
    const int n0 = blockIdx.x * gemm::BN, m0 = blockIdx.y * gemm::BM;
    float acc[gemm::TM][gemm::TN] = {};
    gemm::accumulate(tiles, acc, C, C, 0, P, m0, n0,
        [&](int c, int p) { return fn[c * P + p]; },
        [&](int p, int c) { return fn[c * P + p]; });
    float* gn = g + blockIdx.z * C * C;
    gemm::store(acc, C, C, m0, n0, [&](int a, int b, float v) { gn[a * C + b] = v * scale; });
}

// dF[n] = scale * (dG[n] + dG[n]^T) F[n]. grid (ceil(P/64), ceil(C/64), N), block 256.
extern "C" __global__ void __launch_bounds__(256)
gram_backward_v1(const float* __restrict__ dg, const float* __restrict__ f, float* __restrict__ df,
              int C, int P, float scale) {
    __shared__ gemm::Tiles tiles;
    const float* fn = f + blockIdx.z * C * P;
    const float* dgn = dg + blockIdx.z * C * C;
    const int n0 = blockIdx.x * gemm::BN, m0 = blockIdx.y * gemm::BM;
    float acc[gemm::TM][gemm::TN] = {};
    gemm::accumulate(tiles, acc, C, P, 0, C, m0, n0,
        [&](int a, int b) { return dgn[a * C + b] + dgn[b * C + a]; },
        [&](int b, int p) { return fn[b * P + p]; });
    float* dfn = df + blockIdx.z * C * P;
    gemm::store(acc, C, P, m0, n0, [&](int c, int p, float v) { dfn[c * P + p] = v * scale; });
}

// partial[block] = sum over its grid-stride share of (a - b)^2. block 256.
extern "C" __global__ void __launch_bounds__(256)
mse_partial_v1(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ partial, int n) {
    __shared__ float scratch[32];
    float s = 0.0f;
    GRID_STRIDE_LOOP(i, n) {
        const float d = a[i] - b[i];
        s += d * d;
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// da = (a - b) * scale * dy[0], db = -da (each only if asked); scale = 2 / n. dy stays on the device.
extern "C" __global__ void mse_backward_v1(const float* __restrict__ a, const float* __restrict__ b,
                                        const float* __restrict__ dy, float* __restrict__ da, float* __restrict__ db,
                                        int n, float scale, int want_da, int want_db) {
    const float k = scale * dy[0];
    GRID_STRIDE_LOOP(i, n) {
        const float g = (a[i] - b[i]) * k;
        if (want_da) da[i] = g;
        if (want_db) db[i] = -g;
    }
}

// partial[block] = its share of  wh * sum (x[i+1,j] - x[i,j])^2 + ww * sum (x[i,j+1] - x[i,j])^2
// over the NC planes of H x W; wh, ww = 1 / (number of vertical, horizontal differences).
extern "C" __global__ void __launch_bounds__(256)
tv_partial_v1(const float* __restrict__ x, float* __restrict__ partial, int NC, int H, int W, float wh, float ww) {
    __shared__ float scratch[32];
    float s = 0.0f;
    GRID_STRIDE_LOOP(i, NC * H * W) {
        const int w = i % W, h = (i / W) % H;
        if (h + 1 < H) { const float d = x[i + W] - x[i]; s += wh * d * d; }
        if (w + 1 < W) { const float d = x[i + 1] - x[i]; s += ww * d * d; }
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// dx = 2 dy[0] (wh (d_up - d_down) + ww (d_left - d_right)), d_* the differences touching the pixel.
extern "C" __global__ void tv_backward_v1(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ dx,
                                       int NC, int H, int W, float wh, float ww) {
    const float k = 2.0f * dy[0];
    GRID_STRIDE_LOOP(i, NC * H * W) {
        const int w = i % W, h = (i / W) % H;
        float g = 0.0f;
        if (h > 0) g += wh * (x[i] - x[i - W]);
        if (h + 1 < H) g -= wh * (x[i + W] - x[i]);
        if (w > 0) g += ww * (x[i] - x[i - 1]);
        if (w + 1 < W) g -= ww * (x[i + 1] - x[i]);
        dx[i] = k * g;
    }
}

// out[0] = scale * sum of partial[0..n): the second pass. grid 1, block 256.
extern "C" __global__ void __launch_bounds__(256)
sum_partials_v1(const float* __restrict__ partial, float* __restrict__ out, int n, float scale) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] = s * scale;
}
