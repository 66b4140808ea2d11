// Block reductions, warp functions and dynamic shared memory.
#include "common.cuh"

// Per row: mean and 1/sqrt(var + eps). One block per row; blockDim.x a multiple of 32.
extern "C" __global__ void row_stats(const float* __restrict__ x, float* __restrict__ mean, float* __restrict__ rstd,
                                     int cols, float eps) {
    const float* row = x + (size_t)blockIdx.x * cols;
    float s = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += row[c];
    const float m = block_sum(s) / cols;
    float q = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = row[c] - m;
        q += d * d;
    }
    const float var = block_sum(q) / cols;
    if (threadIdx.x == 0) {
        mean[blockIdx.x] = m;
        rstd[blockIdx.x] = rsqrtf(var + eps);
    }
}

// Every warp function, 12 results per thread. Blocks of whole warps.
extern "C" __global__ void warp_ops(const int* __restrict__ x, int* __restrict__ out) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % 32;
    const int v = x[t];
    int* o = out + 12 * t;
    o[0] = __shfl_sync(0xffffffffu, v, 3);
    o[1] = __shfl_sync(0xffffffffu, v, lane + 1, 8);
    o[2] = __shfl_up_sync(0xffffffffu, v, 2);
    o[3] = __shfl_down_sync(0xffffffffu, v, 5, 16);
    o[4] = __shfl_xor_sync(0xffffffffu, v, 1);
    o[5] = (int)__ballot_sync(0xffffffffu, v & 1);
    o[6] = __any_sync(0xffffffffu, v > 90);
    o[7] = __all_sync(0xffffffffu, v >= 0);
    const float f = __shfl_xor_sync(0xffffffffu, (float)v * 0.5f, 16);
    o[8] = (int)(f * 2.0f);
    const unsigned int half = lane < 16 ? 0x0000ffffu : 0xffff0000u;  // two separate exchanges
    o[9] = __shfl_xor_sync(half, v, 4);
    __syncwarp();
    o[10] = __reduce_add_sync(0xffffffffu, v);
    o[11] = __syncthreads_count(v & 1);
}

// A block of 48 threads: its second warp has 16 lanes, and a full mask means those.
extern "C" __global__ void partial_warp_ballot(const int* __restrict__ x, unsigned int* __restrict__ out) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    out[t] = __ballot_sync(0xffffffffu, x[t] & 1);
}

// Each block reverses its chunk through dynamic shared memory (blockDim.x floats).
extern "C" __global__ void reverse_chunks(const float* __restrict__ x, float* __restrict__ y, int n) {
    extern __shared__ float buf[];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    buf[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    const int j = blockIdx.x * blockDim.x + (blockDim.x - 1 - threadIdx.x);
    if (j < n) y[j] = buf[threadIdx.x];
}

// Dynamic shared memory declared as aligned bytes and used as float4 (blockDim.x float4s).
extern "C" __global__ void rotate_float4(const float4* __restrict__ x, float4* __restrict__ y) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float4* s = reinterpret_cast<float4*>(smem_raw);
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = x[i];
    __syncthreads();
    const float4 v = s[(threadIdx.x + 1) % blockDim.x];
    y[i] = make_float4(v.w, v.x, v.y, v.z);
}

// Barriers and nothing else: bench/bench_emu.py times the scheduler with it.
extern "C" __global__ void barrier_loop(int* out, int n) {
    int k = 0;
    for (int i = 0; i < n; ++i) {
        k += i & 1;
        __syncthreads();
    }
    out[threadIdx.x] = k;
}
