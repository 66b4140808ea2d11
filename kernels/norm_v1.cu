// norm v1, the first version of this family.
// instance_norm and batch_norm (see ops/norm.py): one block per statistics group.
//   instance norm: group g = n * C + c, the H*W values of one image's channel  (per_image = 1)
//   batch norm:    group g = c, the N*H*W values of a channel over the batch   (per_image = 0)
// Group element e lives at ((n * C + c) * HW + p) with n = first image + e / HW, p = e % HW.
#include "common.cuh"

struct NormGroup {
    int c, n_begin, count, C, HW;

    __device__ NormGroup(int g, int N, int C_, int HW_, int per_image)
        : c(per_image ? g % C_ : g), n_begin(per_image ? g / C_ : 0), count((per_image ? 1 : N) * HW_), C(C_), HW(HW_) {}

    __device__ __forceinline__ int index(int e) const {
        const int n = e / HW;
        return ((n_begin + n) * C + c) * HW + (e - n * HW);
    }
};

// grid groups, block 256 (a multiple of 32). compute_stats = 1: statistics of x itself, biased
// variance in two passes (mean first: no cancellation), written to mean[g], rstd[g].
// compute_stats = 0 (batch norm eval): mean and rstd are given per channel (from the running
// statistics) and only read.
extern "C" __global__ void __launch_bounds__(256)
norm_forward_v1(const float* __restrict__ x, const float* __restrict__ weight, const float* __restrict__ bias,
             float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd,
             int N, int C, int HW, int per_image, int compute_stats, float eps) {
    __shared__ float scratch[32];
    const NormGroup grp(blockIdx.x, N, C, HW, per_image);
    float mu, rs;
    if (compute_stats) {
        float s = 0.0f;
        for (int e = threadIdx.x; e < grp.count; e += blockDim.x) s += x[grp.index(e)];
        mu = block_sum(s, scratch) / grp.count;
        float ss = 0.0f;
        for (int e = threadIdx.x; e < grp.count; e += blockDim.x) {
            const float d = x[grp.index(e)] - mu;
            ss += d * d;
        }
        rs = rsqrtf(block_sum(ss, scratch) / grp.count + eps);
        if (threadIdx.x == 0) {
            mean[blockIdx.x] = mu;
            rstd[blockIdx.x] = rs;
        }
    } else {
        mu = mean[blockIdx.x];
        rs = rstd[blockIdx.x];
    }
    const float scale = rs * weight[grp.c], shift = bias[grp.c] - mu * scale;
    for (int e = threadIdx.x; e < grp.count; e += blockDim.x) {
        const int i = grp.index(e);
        y[i] = fmaf(x[i], scale, shift);
    }
}

// grid groups, block 256. Per group: S1 = sum(dy), S2 = sum(dy * xhat), written to sum_dy[g],
// sum_dy_xhat[g] (the parameter gradients, summed over images by sum_over_images_v1), and
//   batch_stats = 1:  dx = rstd * w * (dy - S1 / M - xhat * S2 / M)   (statistics depend on x)
//   batch_stats = 0:  dx = rstd * w * dy                              (eval: statistics are constants)
extern "C" __global__ void __launch_bounds__(256)
norm_backward_v1(const float* __restrict__ x, const float* __restrict__ dy, const float* __restrict__ weight,
              const float* __restrict__ mean, const float* __restrict__ rstd, float* __restrict__ dx,
              float* __restrict__ sum_dy, float* __restrict__ sum_dy_xhat,
              int N, int C, int HW, int per_image, int batch_stats) {
    __shared__ float scratch[32];
    const NormGroup grp(blockIdx.x, N, C, HW, per_image);
    const float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
    float s1 = 0.0f, s2 = 0.0f;
    for (int e = threadIdx.x; e < grp.count; e += blockDim.x) {
        const int i = grp.index(e);
        s1 += dy[i];
        s2 += dy[i] * (x[i] - mu) * rs;
    }
    s1 = block_sum(s1, scratch);
    s2 = block_sum(s2, scratch);
    if (threadIdx.x == 0) {
        sum_dy[blockIdx.x] = s1;
        sum_dy_xhat[blockIdx.x] = s2;
    }
    const float k = rs * weight[grp.c];
    const float m1 = batch_stats ? s1 / grp.count : 0.0f, m2 = batch_stats ? s2 / grp.count : 0.0f;
    for (int e = threadIdx.x; e < grp.count; e += blockDim.x) {
        const int i = grp.index(e);
        dx[i] = k * (dy[i] - m1 - (x[i] - mu) * rs * m2);
    }
}

// out[c] = sum over n of s[n * C + c], n in order (deterministic): per-image sums to per-channel ones.
extern "C" __global__ void sum_over_images_v1(const float* __restrict__ s, float* __restrict__ out, int N, int C) {
    GRID_STRIDE_LOOP(c, C) {
        float total = 0.0f;
        for (int n = 0; n < N; ++n) total += s[n * C + c];
        out[c] = total;
    }
}
