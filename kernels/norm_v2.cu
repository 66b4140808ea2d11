// norm v2: what changes from v1 (norm_v1.cu), and why. v1 runs one block per statistics group
// with one load in flight per thread: at 512x512 the first layer's 32 groups of 350,000 values
// keep 32 of the GPU's 132 multiprocessors busy, each waiting on memory (est. 3-6 ms against a
// 0.2 ms floor).
//
// 1. Statistics over several blocks per group: a plane (one image's channel, H*W values) is cut
//    into chunks, one block per (chunk, plane); each writes its partial moments (count, mean, M2:
//    Welford, merged with Chan's formula) or its partial sums; a second stage merges them per
//    group in a fixed order (deterministic), for instance norm (group = plane) and batch norm
//    (group = channel: the planes of every image) alike. The second stage is folded into the
//    elementwise pass that follows (every block merges its group's partials itself): two launches
//    forward (statistics, normalize) and two backward (sums, dx), as v1's one each plus one.
// 2. Vectorized loads: float4 when H*W is a multiple of 4; a block walks one plane, so the
//    channel of every value is known without a division.
// 3. Fused ReLU (instance_norm_relu, batch_norm_relu): the forward writes relu(y); the backward
//    masks dy by y > 0 as it reads it. The generators' norm + ReLU pairs take one pass, not two.
#include "common.cuh"

struct Moments {
    float n, mean, m2;  // count, mean, sum of squared deviations

    __device__ __forceinline__ void add(float x) {
        n += 1.0f;
        const float d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
    }
    static __device__ __forceinline__ Moments of4(const float4& v) {  // one division per 4 values
        const float mu = 0.25f * (v.x + v.y + v.z + v.w);
        const float a = v.x - mu, b = v.y - mu, c = v.z - mu, d = v.w - mu;
        return Moments{4.0f, mu, a * a + b * b + c * c + d * d};
    }
    __device__ __forceinline__ void merge(const Moments& o) {  // Chan et al.
        const float total = n + o.n;
        if (o.n == 0.0f) return;
        const float d = o.mean - mean, w = o.n / total;
        mean += d * w;
        m2 += o.m2 + d * d * n * w;
        n = total;
    }
};

__device__ __forceinline__ Moments shuffle_moments(const Moments& m, int offset) {
    return Moments{__shfl_xor_sync(0xffffffffu, m.n, offset), __shfl_xor_sync(0xffffffffu, m.mean, offset),
                   __shfl_xor_sync(0xffffffffu, m.m2, offset)};
}

// The block's moments, merged in a fixed tree (warps, then the warps' results), to thread 0.
__device__ Moments block_moments(Moments m) {
    __shared__ Moments warp_result[32];
    for (int offset = 16; offset > 0; offset >>= 1) m.merge(shuffle_moments(m, offset));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_result[warp] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) m.merge(warp_result[w]);
    }
    return m;
}

// The [begin, end) share of a plane that block (chunk) owns; chunk lengths are multiples of 4.
__device__ __forceinline__ void chunk_range(int HW, int chunk_len, int& begin, int& end) {
    begin = blockIdx.x * chunk_len;
    end = min(HW, begin + chunk_len);
}

// grid (chunks, N*C), block 256: partial[(plane * chunks + chunk) * 3 + {0,1,2}] = count, mean, M2.
extern "C" __global__ void __launch_bounds__(256)
norm_stats_v2(const float* __restrict__ x, float* __restrict__ partial, int HW, int chunk_len) {
    const float* plane = x + blockIdx.y * HW;
    int begin, end;
    chunk_range(HW, chunk_len, begin, end);
    Moments m{0.0f, 0.0f, 0.0f};
    if (HW % 4 == 0) {
        for (int i = begin + 4 * threadIdx.x; i < end; i += 4 * blockDim.x) {
            m.merge(Moments::of4(*reinterpret_cast<const float4*>(plane + i)));
        }
    } else {
        for (int i = begin + threadIdx.x; i < end; i += blockDim.x) m.add(plane[i]);
    }
    m = block_moments(m);
    if (threadIdx.x == 0) {
        float* out = partial + (blockIdx.y * gridDim.x + blockIdx.x) * 3;
        out[0] = m.n, out[1] = m.mean, out[2] = m.m2;
    }
}

// The moments of group g merged from its planes' partial moments, in a fixed order (instance: group
// g = plane g; batch: group c = planes n*C + c, n = 0..N-1).
__device__ Moments group_moments(const float* __restrict__ partial, int g, int N, int C, int chunks, int per_image) {
    Moments m{0.0f, 0.0f, 0.0f};
    for (int n = 0; n < (per_image ? 1 : N); ++n) {
        const float* p = partial + (per_image ? g : n * C + g) * chunks * 3;
        for (int k = 0; k < chunks; ++k) m.merge(Moments{p[3 * k], p[3 * k + 1], p[3 * k + 2]});
    }
    return m;
}

// grid (x, N*C), block 256: y = x * rstd * w + (b - mean * rstd * w) over plane blockIdx.y, then
// relu when asked. compute_stats: mean and rstd of the plane's group merged from `partial` (every
// block of the group merges the same partials in the same order, so all agree; the first writes
// them to mean[g], rstd[g] for backward); else mean and rstd are given per channel (eval).
extern "C" __global__ void __launch_bounds__(256)
norm_apply_v2(const float* __restrict__ x, const float* __restrict__ weight, const float* __restrict__ bias,
              const float* __restrict__ partial, float* __restrict__ mean, float* __restrict__ rstd,
              float* __restrict__ y, int N, int C, int HW, int chunks, int per_image, int compute_stats, float eps,
              int relu) {
    __shared__ float stats[2];
    const int p = blockIdx.y, c = p % C, g = per_image ? p : c;
    if (threadIdx.x == 0) {
        if (compute_stats) {
            const Moments m = group_moments(partial, g, N, C, chunks, per_image);
            stats[0] = m.mean, stats[1] = rsqrtf(m.m2 / m.n + eps);
            if (blockIdx.x == 0 && (per_image || p < C)) mean[g] = stats[0], rstd[g] = stats[1];
        } else {
            stats[0] = mean[g], stats[1] = rstd[g];
        }
    }
    __syncthreads();
    const float scale = stats[1] * weight[c], shift = bias[c] - stats[0] * scale;
    const float* xp = x + p * HW;
    float* yp = y + p * HW;
    if (HW % 4 == 0) {
        for (int i = 4 * (blockIdx.x * blockDim.x + threadIdx.x); i < HW; i += 4 * blockDim.x * gridDim.x) {
            float4 v = *reinterpret_cast<const float4*>(xp + i);
            v.x = fmaf(v.x, scale, shift), v.y = fmaf(v.y, scale, shift);
            v.z = fmaf(v.z, scale, shift), v.w = fmaf(v.w, scale, shift);
            if (relu) v.x = fmaxf(v.x, 0.0f), v.y = fmaxf(v.y, 0.0f), v.z = fmaxf(v.z, 0.0f), v.w = fmaxf(v.w, 0.0f);
            *reinterpret_cast<float4*>(yp + i) = v;
        }
    } else {
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += blockDim.x * gridDim.x) {
            const float v = fmaf(xp[i], scale, shift);
            yp[i] = relu ? fmaxf(v, 0.0f) : v;
        }
    }
}

// The gradient a norm sees: dy, masked by the fused ReLU's output y > 0 when relu.
__device__ __forceinline__ float grad_in(const float* dy, const float* y, int i, int relu) {
    return relu && !(y[i] > 0.0f) ? 0.0f : dy[i];
}

// grid (chunks, N*C), block 256: partial[(plane * chunks + chunk) * 2 + {0,1}] = sum g, sum g * xhat.
extern "C" __global__ void __launch_bounds__(256)
norm_backward_sums_v2(const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ y,
                      const float* __restrict__ mean, const float* __restrict__ rstd, float* __restrict__ partial,
                      int C, int HW, int chunk_len, int per_image, int relu) {
    __shared__ float scratch[32];
    const int p = blockIdx.y, g = per_image ? p : p % C;
    const float mu = mean[g], rs = rstd[g];
    const int base = p * HW;
    int begin, end;
    chunk_range(HW, chunk_len, begin, end);
    float s1 = 0.0f, s2 = 0.0f;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float d = grad_in(dy, y, base + i, relu);
        s1 += d;
        s2 += d * (x[base + i] - mu) * rs;
    }
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (threadIdx.x == 0) {
        float* out = partial + (p * gridDim.x + blockIdx.x) * 2;
        out[0] = s1, out[1] = s2;
    }
}

// Channel c's gradient sums from the partial sums of its planes, in a fixed order: of group g
// (s1 = sum dy, s2 = sum dy * xhat), and of the parameters (dweight = sum of s2, dbias = sum of s1
// over the channel's groups).
__device__ void channel_sums(const float* __restrict__ partial, int c, int n_of_group, int N, int C, int chunks,
                             int per_image, float& s1, float& s2, float& dw, float& db) {
    s1 = s2 = dw = db = 0.0f;
    for (int n = 0; n < N; ++n) {
        const float* p = partial + (n * C + c) * chunks * 2;
        float a = 0.0f, b = 0.0f;
        for (int k = 0; k < chunks; ++k) a += p[2 * k], b += p[2 * k + 1];
        db += a, dw += b;
        if (!per_image || n == n_of_group) s1 += a, s2 += b;
    }
}

// One thread per channel: dweight[c], dbias[c] alone (backward without dx: no apply pass to fold them into).
extern "C" __global__ void norm_backward_finalize_v2(const float* __restrict__ partial, float* __restrict__ dweight,
                                                     float* __restrict__ dbias, int N, int C, int chunks,
                                                     int per_image) {
    GRID_STRIDE_LOOP(c, C) {
        float s1, s2;
        channel_sums(partial, c, 0, N, C, chunks, per_image, s1, s2, dweight[c], dbias[c]);
    }
}

// grid (x, N*C), block 256: dx = rstd * w * (g - S1 / count - xhat * S2 / count) with batch
// statistics (batch_stats), dx = rstd * w * g with given ones (eval); g = grad_in(dy). S1 and S2 of
// the plane's group are merged from `partial` by every block (the same order: they agree); the
// first block of each channel's first plane writes dweight[c] and dbias[c].
extern "C" __global__ void __launch_bounds__(256)
norm_backward_apply_v2(const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ y,
                       const float* __restrict__ weight, const float* __restrict__ mean, const float* __restrict__ rstd,
                       const float* __restrict__ partial, float* __restrict__ dx, float* __restrict__ dweight,
                       float* __restrict__ dbias, int N, int C, int HW, int chunks, int per_image, int batch_stats,
                       int relu) {
    __shared__ float sums[2];
    const int p = blockIdx.y, n = p / C, c = p - n * C, g = per_image ? p : c;
    if (threadIdx.x == 0) {
        float s1, s2, dw, db;
        channel_sums(partial, c, n, N, C, chunks, per_image, s1, s2, dw, db);
        const float count = (float)(per_image ? HW : N * HW);
        sums[0] = s1 / count, sums[1] = s2 / count;
        if (blockIdx.x == 0 && n == 0) dweight[c] = dw, dbias[c] = db;
    }
    __syncthreads();
    const float mu = mean[g], rs = rstd[g], k = rs * weight[c];
    const float m1 = batch_stats ? sums[0] : 0.0f, m2 = batch_stats ? sums[1] : 0.0f;
    const int base = p * HW;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += blockDim.x * gridDim.x) {
        const float d = grad_in(dy, y, base + i, relu);
        dx[base + i] = k * (d - m1 - (x[base + i] - mu) * rs * m2);
    }
}
