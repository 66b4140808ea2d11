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

// Adam (Kingma & Ba; torch.optim.Adam's update, bias-corrected) on every parameter in one launch.
// tensors: 4 pointers per tensor (param, grad, exp_avg, exp_avg_sq); block b updates elements
// [start[b], start[b] + chunk) of tensor owner[b]. The operations are NumPy's order in
// microst/optim.py, one float32 rounding each (on emu the result is bit-identical to the cpu's).
// skip: a device-side flag (microst.ops.adam.nonfinite_flag); when it is set, nothing is updated,
// so that the weights stay those of the last good step.
extern "C" __global__ void __launch_bounds__(256)
adam_step_v2(const unsigned long long* __restrict__ tensors, const int* __restrict__ sizes,
             const int* __restrict__ owner, const int* __restrict__ start, const int* __restrict__ skip, int chunk,
             float beta1, float one_minus_beta1, float beta2, float one_minus_beta2, float step_size,
             float bias_correction2, float eps, float weight_decay) {
    if (skip[0]) return;
    const int t = owner[blockIdx.x];
    float* p = reinterpret_cast<float*>(tensors[4 * t]);
    const float* g = reinterpret_cast<const float*>(tensors[4 * t + 1]);
    float* m = reinterpret_cast<float*>(tensors[4 * t + 2]);
    float* v = reinterpret_cast<float*>(tensors[4 * t + 3]);
    const int end = min(sizes[t], start[blockIdx.x] + chunk);
    for (int i = start[blockIdx.x] + threadIdx.x; i < end; i += blockDim.x) {
        const float gi = weight_decay != 0.0f ? g[i] + weight_decay * p[i] : g[i];
        const float mi = m[i] * beta1 + one_minus_beta1 * gi;
        const float vi = v[i] * beta2 + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] - step_size * mi / (sqrtf(vi / bias_correction2) + eps);
    }
}

// flag[0] = 1 when value[0] is not finite (and stays 1): the loss of a step, checked on the device
// so that training reads it every N steps instead of waiting for the GPU after each one.
extern "C" __global__ void nonfinite_flag_v2(const float* __restrict__ value, int* __restrict__ flag) {
    if (threadIdx.x == 0 && blockIdx.x == 0 && !isfinite(value[0])) flag[0] = 1;
}
