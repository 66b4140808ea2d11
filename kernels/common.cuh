// Helpers shared by the kernels: grid-stride loops and block-wide sums.
// Every kernel here is float32, NCHW, contiguous; sizes fit in int (checked by the launchers).
#pragma once

// for (i = global thread index; i < n; i += total threads): any grid size covers any n.
#define GRID_STRIDE_LOOP(i, n) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum of v over the whole block, returned to every thread. blockDim.x must be a multiple of 32
// (at most 1024). `scratch` holds 32 floats of shared memory; the call ends with a barrier so that
// the scratch can be reused at once.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    v = warp_sum(v);  // every warp reduces the per-warp sums: all threads get the total
    __syncthreads();
    return v;
}
