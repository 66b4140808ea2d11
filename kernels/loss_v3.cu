// loss v3: what changes from v2 (loss_v2.cu), for the Gram matrices, and why: the style loss's
// Grams are a quarter of a training step's GEMM work (VGG relu1_2 .. relu4_3, K = H * W up to
// 65536 at 256x256), and v2 runs them on CUDA cores in FP32.
//
// 1. Both Gram GEMMs run on tensor cores (gemm_tc.cuh: WMMA, TF32 or BF16, FP32 accumulate).
// 2. Forward keeps v2's plan: the tiles on and above the diagonal, the positions split into
//    chunks, the chunks' partial sums added in order and mirrored by gram_reduce_v2. Its tiles are
//    64x64 (the Gram of relu1_2 is 64x64: a 128-wide tile would double the work), both operands
//    rows of F, held k-major in shared memory (B's fragments col_major).
// 3. Backward dF = scale (dG + dG^T) F: the symmetric sum is formed once (gram_symmetrize_v3, C x C
//    per image), so that the tensor cores' operand is a plain matrix, then one 64x128-tile GEMM.
// 4. Precision: the operands are rounded to TF32 or BF16 as they are loaded; dG + dG^T is summed
//    in FP32 before that rounding, and the scale is applied to the FP32 result.
// mse and tv keep v1's kernels, the Gram's second stage v2's.
#include "common.cuh"
#include "gemm_tc.cuh"

struct FRowAddresses {  // rows r0 .. of a C x P matrix: address(r, p) of F[r0 + r][p]
    const float* __restrict__ f;
    int r0, C, P;
    __device__ __forceinline__ const float* address(int r, int p) const {
        return r0 + r < C ? f + (r0 + r) * P + p : nullptr;
    }
};

struct FColumnAddresses {  // B(b, p) = F[b][p] for columns p0 ..
    const float* __restrict__ f;
    int p0, P;
    __device__ __forceinline__ const float* address(int p, int b) const {
        return p0 + p < P ? f + b * P + p0 + p : nullptr;
    }
};

// The (ti, tj) tile of linear index t over the upper triangle (ti <= tj) of a T x T grid of tiles.
__device__ __forceinline__ void triangle_tile(int t, int T, int& ti, int& tj) {
    ti = 0;
    while (t >= T - ti) t -= T - ti++;
    tj = ti + t;
}

using GramShape = gemm_tc::Shape<64, 64, 2, 4>;

// grid (T (T + 1) / 2, splits, N), block 256; T = ceil(C / 64): as gram_forward_v2.
template <gemm_tc::Precision P>
__device__ __forceinline__ void gram_forward_tc(const float* __restrict__ f, float* __restrict__ partial, int C,
                                                int positions, int chunk) {
    using Tiles = gemm_tc::Tiles<GramShape, P, gemm_tc::K_FASTEST>;
    __shared__ Tiles tiles;
    int ti, tj;
    triangle_tile(blockIdx.x, (C + 63) / 64, ti, tj);
    const float* fn = f + blockIdx.z * C * positions;
    const int k_begin = blockIdx.y * chunk, k_end = min(positions, k_begin + chunk);
    gemm_tc::Accumulators<GramShape, P> acc;
    gemm_tc::zero<GramShape, P>(acc);
    gemm_tc::accumulate<GramShape, P, gemm_tc::K_FASTEST>(tiles, acc, k_begin, k_end,
                                                          FRowAddresses{fn, ti * 64, C, positions},
                                                          FRowAddresses{fn, tj * 64, C, positions});
    float* out = partial + (blockIdx.z * gridDim.y + blockIdx.y) * C * C;
    gemm_tc::store<GramShape, P, gemm_tc::K_FASTEST>(tiles, acc, [&](int ml, int nl, float v) {
        const int a = ti * 64 + ml, b = tj * 64 + nl;
        if (a < C && b < C) out[a * C + b] = v;
    });
}

extern "C" __global__ void __launch_bounds__(256)
gram_forward_tc_tf32_v3(const float* __restrict__ f, float* __restrict__ partial, int C, int P, int chunk) {
    gram_forward_tc<gemm_tc::TF32>(f, partial, C, P, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
gram_forward_tc_bf16_v3(const float* __restrict__ f, float* __restrict__ partial, int C, int P, int chunk) {
    gram_forward_tc<gemm_tc::BF16>(f, partial, C, P, chunk);
}

// s[n][a][b] = dg[n][a][b] + dg[n][b][a]
extern "C" __global__ void gram_symmetrize_v3(const float* __restrict__ dg, float* __restrict__ s, int N, int C) {
    GRID_STRIDE_LOOP(i, N * C * C) {
        const int n = i / (C * C), ab = i - n * C * C, a = ab / C, b = ab - a * C;
        s[i] = dg[i] + dg[n * C * C + b * C + a];
    }
}

using BackwardShape = gemm_tc::Shape<64, 128, 2, 4>;

// df[n] = scale * s[n] F[n]: grid (ceil(P / 128), ceil(C / 64), N), block 256.
template <gemm_tc::Precision P>
__device__ __forceinline__ void gram_backward_tc(const float* __restrict__ s, const float* __restrict__ f,
                                                 float* __restrict__ df, int C, int positions, float scale) {
    using Tiles = gemm_tc::Tiles<BackwardShape, P, gemm_tc::MN_FASTEST>;
    __shared__ Tiles tiles;
    const int p0 = blockIdx.x * BackwardShape::BN, c0 = blockIdx.y * BackwardShape::BM;
    const float* fn = f + blockIdx.z * C * positions;
    gemm_tc::Accumulators<BackwardShape, P> acc;
    gemm_tc::zero<BackwardShape, P>(acc);
    gemm_tc::accumulate<BackwardShape, P, gemm_tc::MN_FASTEST>(tiles, acc, 0, C,
                                                               FRowAddresses{s + blockIdx.z * C * C, c0, C, C},
                                                               FColumnAddresses{fn, p0, positions});
    float* out = df + blockIdx.z * C * positions;
    gemm_tc::store<BackwardShape, P, gemm_tc::MN_FASTEST>(tiles, acc, [&](int ml, int nl, float v) {
        const int c = c0 + ml, q = p0 + nl;
        if (c < C && q < positions) out[c * positions + q] = v * scale;
    });
}

extern "C" __global__ void __launch_bounds__(256)
gram_backward_tc_tf32_v3(const float* __restrict__ s, const float* __restrict__ f, float* __restrict__ df, int C,
                         int P, float scale) {
    gram_backward_tc<gemm_tc::TF32>(s, f, df, C, P, scale);
}

extern "C" __global__ void __launch_bounds__(256)
gram_backward_tc_bf16_v3(const float* __restrict__ s, const float* __restrict__ f, float* __restrict__ df, int C,
                         int P, float scale) {
    gram_backward_tc<gemm_tc::BF16>(s, f, df, C, P, scale);
}
