// Helpers for the test kernels, in the style of the real kernels' common.cuh.
#pragma once

constexpr int WARP = 32;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = WARP / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum over a block whose blockDim.x is a multiple of 32; every thread gets the total.
// Its __shared__ arrays live in an inline function: one copy, shared by the block's threads.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float partial[WARP];
    __shared__ float total;
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < (int)(blockDim.x / WARP) ? partial[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    const float result = total;
    __syncthreads();  // the next call may overwrite partial and total
    return result;
}

template <int N>
__device__ __forceinline__ float horner(const float (&c)[N], float x) {
    float r = 0.0f;
#pragma unroll
    for (int i = N - 1; i >= 0; --i) r = r * x + c[i];
    return r;
}
