// loss v2: what changes from v1 (loss_v1.cu), for the Gram matrices, and why. v1 gives relu1_2's
// Gram (C = 64, P = H*W = 65536 at 256x256) one 64x64 tile per image, 1 to 4 blocks for the whole
// GPU, each walking all of P alone, and loads B's columns with a stride of P floats.
//
// 1. Split-K: the P positions are cut into chunks, one block per (tile, chunk, image); the chunks'
//    partial sums are added in chunk order by gram_reduce_v2 (deterministic, no atomics).
// 2. Only the symmetric half: G = F F^T, so the blocks compute the tiles on and above the diagonal
//    (T (T + 1) / 2 of T^2) and gram_reduce_v2 mirrors them.
// 3. Coalesced loads: both operands are rows of F, loaded with consecutive threads on consecutive
//    positions p (gemm_v2.cuh's K_FASTEST order).
// 4. Backward dF = scale (dG + dG^T) F on gemm_v2.cuh's core (double-buffered, float4 reads).
// mse and tv keep v1's kernels (versions.py: a version may reuse an earlier version's kernel).
#include "common.cuh"
#include "gemm_v2.cuh"

using GramTile = gemm2::Shape<64, 64, 4, 4>;

struct FRows {  // rows r0 .. of one image's F (C x P, row-major): load(r, p) = F[r0 + r][p]
    const float* __restrict__ f;
    int r0, C, P;
    __device__ __forceinline__ float load(int r, int p) const { return r0 + r < C ? f[(r0 + r) * P + p] : 0.0f; }
};

// The (ti, tj) tile of linear index t over the upper triangle (ti <= tj) of a T x T grid of tiles.
__device__ __forceinline__ void triangle_tile(int t, int T, int& ti, int& tj) {
    ti = 0;
    while (t >= T - ti) t -= T - ti++;
    tj = ti + t;
}

// grid (T (T + 1) / 2, splits, N), block 256; T = ceil(C / 64). partial (N, splits, C, C): the
// chunk [split * chunk, (split + 1) * chunk) of sum_p F[a][p] F[b][p], for the tiles with a <= b.
extern "C" __global__ void __launch_bounds__(256)
gram_forward_v2(const float* __restrict__ f, float* __restrict__ partial, int C, int P, int chunk) {
    __shared__ gemm2::Stages<GramTile> stages;
    int ti, tj;
    triangle_tile(blockIdx.x, (C + 63) / 64, ti, tj);
    const float* fn = f + blockIdx.z * C * P;
    const int k_begin = blockIdx.y * chunk, k_end = min(P, k_begin + chunk);
    float acc[4][4] = {};
    gemm2::accumulate<GramTile, gemm2::K_FASTEST, gemm2::K_FASTEST>(stages, acc, k_begin, k_end, FRows{fn, ti * 64, C, P},
                                                                   FRows{fn, tj * 64, C, P});
    float* out = partial + (blockIdx.z * gridDim.y + blockIdx.y) * C * C;
    gemm2::store<GramTile>(acc, [&](int ml, int nl, float v) {
        const int a = ti * 64 + ml, b = tj * 64 + nl;
        if (a < C && b < C) out[a * C + b] = v;
    });
}

// g[n][a][b] = scale * sum over splits of partial[n][s][min(a,b)][max(a,b)], splits in order.
extern "C" __global__ void gram_reduce_v2(const float* __restrict__ partial, float* __restrict__ g, int N, int C,
                                          int splits, float scale) {
    GRID_STRIDE_LOOP(i, N * C * C) {
        const int n = i / (C * C), ab = i - n * C * C, a = ab / C, b = ab - a * C;
        const int upper = a <= b ? a * C + b : b * C + a;
        const float* p = partial + n * splits * C * C + upper;
        float total = 0.0f;
        for (int s = 0; s < splits; ++s) total += p[s * C * C];
        g[i] = total * scale;
    }
}

struct SymmetricRows {  // A(c, b) = dG[c][b] + dG[b][c] for rows c0 ..
    const float* __restrict__ dg;
    int c0, C;
    __device__ __forceinline__ float load(int c, int b) const {
        return c0 + c < C ? dg[(c0 + c) * C + b] + dg[b * C + c0 + c] : 0.0f;
    }
};

struct FColumns {  // B(b, p) = F[b][p] for this thread's column p (positions p0 ..)
    const float* __restrict__ f;
    int p, P;
    __device__ __forceinline__ float load(int, int b) const { return p < P ? f[b * P + p] : 0.0f; }
};

// dF[n] = scale (dG[n] + dG[n]^T) F[n]: grid (ceil(P / 64), ceil(C / 64), N), block 256.
extern "C" __global__ void __launch_bounds__(256)
gram_backward_v2(const float* __restrict__ dg, const float* __restrict__ f, float* __restrict__ df, int C, int P,
                 float scale) {
    __shared__ gemm2::Stages<GramTile> stages;
    const int p0 = blockIdx.x * 64, c0 = blockIdx.y * 64;
    const float* fn = f + blockIdx.z * C * P;
    const int p = p0 + gemm2::Slab<64, gemm2::MN_FASTEST>::mn(threadIdx.x);
    float acc[4][4] = {};
    gemm2::accumulate<GramTile, gemm2::K_FASTEST, gemm2::MN_FASTEST>(stages, acc, 0, C,
                                                                    SymmetricRows{dg + blockIdx.z * C * C, c0, C},
                                                                    FColumns{fn, p, P});
    float* out = df + blockIdx.z * C * P;
    gemm2::store<GramTile>(acc, [&](int ml, int nl, float v) {
        const int c = c0 + ml, q = p0 + nl;
        if (c < C && q < P) out[c * P + q] = v * scale;
    });
}
