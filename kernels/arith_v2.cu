// arith v2: what changes from v1 (arith_v1.cu), and why: v1's reduce_sum runs one block per
// output element, with index divisions for every element it reads; the bias gradient of a
// transposed conv (dy summed over N, H, W per channel: 32 or 64 outputs, millions of values)
// then keeps 32-64 blocks busy. v2 sums a channel the way the norms do: each plane (an image's
// channel) in chunks, one block per (chunk, plane), and a second stage that adds a channel's
// partial sums in a fixed order (deterministic). Every other kernel of the family is v1's.
#include "common.cuh"

// grid (chunks, N*C), block 256: partial[plane * chunks + chunk] = sum of the chunk's values.
extern "C" __global__ void __launch_bounds__(256)
plane_sums_v2(const float* __restrict__ x, float* __restrict__ partial, int HW, int chunk_len) {
    __shared__ float scratch[32];
    const float* plane = x + blockIdx.y * HW;
    const int begin = blockIdx.x * chunk_len, end = min(HW, begin + chunk_len);
    float s = 0.0f;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) s += plane[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = s;
}

// out[c] = scale * sum over n, then chunks, of partial[(n * C + c) * chunks + k].
extern "C" __global__ void channel_totals_v2(const float* __restrict__ partial, float* __restrict__ out, int N, int C,
                                             int chunks, float scale) {
    GRID_STRIDE_LOOP(c, C) {
        float total = 0.0f;
        for (int n = 0; n < N; ++n)
            for (int k = 0; k < chunks; ++k) total += partial[(n * C + c) * chunks + k];
        out[c] = total * scale;
    }
}
