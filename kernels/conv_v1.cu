// conv v1: what changes from v0 (conv_v0.cu): the three passes become implicit GEMMs on shared-memory
// tiles. v0 reads every input element from global memory once per output that uses it; here a
// block of 256 threads stages a 64x16 slab of A and a 16x64 slab of B in shared memory and each
// thread accumulates a 4x4 micro-tile in registers (kernels/gemm.cuh), so that each loaded value
// is used 64 times. Backward-weight's long reduction is split over gridDim.z (more blocks in
// flight), and the splits are added in a fixed order (deterministic). What it still wastes
// (kernels-v2): 64-row tiles on 3-channel layers, zero taps of strided backward-data, integer
// divisions in the loaders.
//
// conv2d as three implicit GEMMs over the same geometry (see ops/conv.py for the story):
//
//   forward          y[n,co,p]   = sum_{ci,i,j} w[co,ci,i,j] * x[n,ci, oh*s-pad+i, ow*s-pad+j]  (+ bias)
//                    M = Cout, columns = N*Ho*Wo, K = Cin*KH*KW
//   backward-data    dx[n,ci,ih,iw] = sum_{co,i,j} w[co,ci,i,j] * dy[n,co,(ih+pad-i)/s,(iw+pad-j)/s]
//                    a gather: each dx element is written once (no atomics, deterministic);
//                    taps where (ih+pad-i) is not a multiple of s contribute nothing.
//                    M = Cin, columns = N*H*W, K = Cout*KH*KW
//   backward-weight  dw[co,ci,i,j] = sum_{n,oh,ow} dy[n,co,oh,ow] * x[n,ci, oh*s-pad+i, ow*s-pad+j]
//                    M = Cout, columns = Cin*KH*KW, K = N*Ho*Wo (long): split over gridDim.z into
//                    partial sums, added in a fixed order by sum_splits_v1 (deterministic).
// conv_transpose2d runs the same kernels with the roles swapped.
#include "common.cuh"
#include "gemm.cuh"

struct ConvGeometry {
    int N, Cin, H, W, Cout, KH, KW, SH, SW, PH, PW, HO, WO;

    // x value read by kernel tap k = (ci, i, j) for output pixel p = (oh, ow) of image n; 0 in the padding.
    __device__ __forceinline__ float im2col(const float* __restrict__ x, int n, int k, int p) const {
        const int taps = KH * KW, ci = k / taps, r = k - ci * taps, i = r / KW, j = r - i * KW;
        const int oh = p / WO, ow = p - oh * WO;
        const int ih = oh * SH - PH + i, iw = ow * SW - PW + j;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) return 0.0f;
        return x[((n * Cin + ci) * H + ih) * W + iw];
    }
};


// grid (ceil(N*HO*WO / 64), ceil(Cout / 64)), block 256. has_bias = 0: no bias (bias then
// points at any valid array and is not read).
extern "C" __global__ void __launch_bounds__(256)
conv2d_forward_v1(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
               float* __restrict__ y, int has_bias,
               int N, int Cin, int H, int W, int Cout, int KH, int KW, int SH, int SW, int PH, int PW, int HO, int WO) {
    const ConvGeometry g{N, Cin, H, W, Cout, KH, KW, SH, SW, PH, PW, HO, WO};
    __shared__ gemm::Tiles tiles;
    const int P = HO * WO, K = Cin * KH * KW;
    const int n0 = blockIdx.x * gemm::BN, m0 = blockIdx.y * gemm::BM;
    float acc[gemm::TM][gemm::TN] = {};
    gemm::accumulate(tiles, acc, Cout, N * P, 0, K, m0, n0,
        [&](int co, int k) { return w[co * K + k]; },
        [&](int k, int col) { const int n = col / P; return g.im2col(x, n, k, col - n * P); });
    gemm::store(acc, Cout, N * P, m0, n0, [&](int co, int col, float v) {
        const int n = col / P;
        y[(n * Cout + co) * P + (col - n * P)] = has_bias ? v + bias[co] : v;
    });
}

// grid (ceil(N*H*W / 64), ceil(Cin / 64)), block 256.
extern "C" __global__ void __launch_bounds__(256)
conv2d_backward_data_v1(const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx,
                     int N, int Cin, int H, int W, int Cout, int KH, int KW, int SH, int SW, int PH, int PW, int HO, int WO) {
    __shared__ gemm::Tiles tiles;
    const int taps = KH * KW, HW = H * W, K = Cout * taps;
    const int n0 = blockIdx.x * gemm::BN, m0 = blockIdx.y * gemm::BM;
    float acc[gemm::TM][gemm::TN] = {};
    gemm::accumulate(tiles, acc, Cin, N * HW, 0, K, m0, n0,
        [&](int ci, int k) { const int co = k / taps; return w[(co * Cin + ci) * taps + (k - co * taps)]; },
        [&](int k, int col) {
            const int co = k / taps, r = k - co * taps, i = r / KW, j = r - i * KW;
            const int n = col / HW, p = col - n * HW, ih = p / W, iw = p - ih * W;
            const int th = ih + PH - i, tw = iw + PW - j;  // = oh * SH, ow * SW if this tap was used
            if (th < 0 || tw < 0 || th % SH || tw % SW) return 0.0f;
            const int oh = th / SH, ow = tw / SW;
            if (oh >= HO || ow >= WO) return 0.0f;
            return dy[((n * Cout + co) * HO + oh) * WO + ow];
        });
    gemm::store(acc, Cin, N * HW, m0, n0, [&](int ci, int col, float v) {
        const int n = col / HW;
        dx[(n * Cin + ci) * HW + (col - n * HW)] = v;
    });
}

// grid (ceil(Cin*KH*KW / 64), ceil(Cout / 64), splits), block 256. Split z sums the reduction
// indices [z * chunk, (z + 1) * chunk) into partial[z]; chunk is a multiple of gemm::BK.
extern "C" __global__ void __launch_bounds__(256)
conv2d_backward_weight_v1(const float* __restrict__ dy, const float* __restrict__ x, float* __restrict__ partial,
                       int chunk,
               int N, int Cin, int H, int W, int Cout, int KH, int KW, int SH, int SW, int PH, int PW, int HO, int WO) {
    const ConvGeometry g{N, Cin, H, W, Cout, KH, KW, SH, SW, PH, PW, HO, WO};
    __shared__ gemm::Tiles tiles;
    const int P = HO * WO, K = Cin * KH * KW, R = N * P;
    const int n0 = blockIdx.x * gemm::BN, m0 = blockIdx.y * gemm::BM;
    const int r_begin = blockIdx.z * chunk, r_end = min(R, r_begin + chunk);
    float acc[gemm::TM][gemm::TN] = {};
    gemm::accumulate(tiles, acc, Cout, K, r_begin, r_end, m0, n0,
        [&](int co, int r) { const int n = r / P; return dy[(n * Cout + co) * P + (r - n * P)]; },
        [&](int r, int k) { const int n = r / P; return g.im2col(x, n, k, r - n * P); });
    float* out = partial + blockIdx.z * Cout * K;
    gemm::store(acc, Cout, K, m0, n0, [&](int co, int k, float v) { out[co * K + k] = v; });
}

// out[i] = sum over s of partial[s * size + i], s in order: the second half of the split reduction.
extern "C" __global__ void sum_splits_v1(const float* __restrict__ partial, float* __restrict__ out, int splits, int size) {
    GRID_STRIDE_LOOP(i, size) {
        float total = 0.0f;
        for (int s = 0; s < splits; ++s) total += partial[s * size + i];
        out[i] = total;
    }
}
