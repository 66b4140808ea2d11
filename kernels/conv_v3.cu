// conv v3: what changes from v2 (conv_v2.cu), and why: v2 wastes little, but FP32 on CUDA cores
// peaks at ~67 TFLOP/s on an H100/H200, against ~495 for TF32 and ~990 for BF16 on its tensor
// cores; PyTorch runs convolutions in TF32 by default.
//
// 1. The GEMM runs on tensor cores (gemm_tc.cuh: WMMA, FP32 accumulate), in TF32 or BF16, the
//    precision a kernel of its own (microst/ops/precision.py chooses).
// 2. Block tiles of 128x64, 64x128 or 32x256 (BM x BN), 8 warps of 32x32 each; the launcher picks
//    the one that wastes least, and keeps v2's SIMT kernel for a pass whose M is so small (a
//    3-channel layer) that the 16-row fragments would cost more than the tensor cores save.
// 3. TF32 stages its slabs with cp.async, two stages deep (the copies of the next step in flight
//    during this one's MMAs); BF16 loads through registers, where it is rounded.
// 4. The bias gradient is no longer a column of ones (it would be summed from dy rounded to TF32
//    or BF16): the launcher sums dy in FP32 (arith v2's channel sums).
//
// The tables (ct, kt) and the GEMM of every pass are v2's:
//   C(m, n)  = sum_k A(m, k) * B(k, n),  k in [z * chunk, (z + 1) * chunk) for split z = blockIdx.z
//   A(m, k)  = a[m * a_stride + kt[k].w]
//   B(k, n)  = src[ct[n].x + kt[k].x]  when 0 <= ct[n].y + kt[k].y < rows and 0 <= ct[n].z + kt[k].z < cols
//            = 0                        otherwise (the zero padding, an edge of a parity class)
//   out[z * M * out_stride + m * out_stride + ct[n].w] = C(m, n) (+ bias[m] when has_bias)
#include "common.cuh"
#include "gemm_tc.cuh"

struct GatherB {  // this thread's column of B, for every k
    const float* __restrict__ src;
    const int4* __restrict__ kt;
    int rows, cols, base, row, col;
    bool valid;

    __device__ GatherB(const float* src_, const int4* ct, const int4* kt_, int rows_, int cols_, int n, int N)
        : src(src_), kt(kt_), rows(rows_), cols(cols_), base(0), row(0), col(0), valid(n < N) {
        if (valid) {
            const int4 c = ct[n];
            base = c.x, row = c.y, col = c.z;
        }
    }
    __device__ __forceinline__ const float* address(int, int k) const {
        if (!valid) return nullptr;
        const int4 t = kt[k];
        const int r = row + t.y, c = col + t.z;
        return ((unsigned)r < (unsigned)rows && (unsigned)c < (unsigned)cols) ? src + base + t.x : nullptr;
    }
};

struct TableA {  // rows m0 .. of A
    const float* __restrict__ a;
    const int4* __restrict__ kt;
    int stride, m0, M;

    __device__ __forceinline__ const float* address(int m, int k) const {
        return m0 + m < M ? a + (m0 + m) * stride + kt[k].w : nullptr;
    }
};

template <class S, gemm_tc::Precision P>
__device__ __forceinline__ void conv_gemm_tc(const float* __restrict__ a, int a_stride, const float* __restrict__ src,
                                             int rows, int cols, const int4* __restrict__ ct,
                                             const int4* __restrict__ kt, const float* __restrict__ bias,
                                             int has_bias, float* __restrict__ out, int out_stride, int M, int N,
                                             int K, int chunk) {
    using Tiles = gemm_tc::Tiles<S, P, gemm_tc::MN_FASTEST>;
    __shared__ Tiles tiles;
    const int n0 = blockIdx.x * S::BN, m0 = blockIdx.y * S::BM;
    const int k_begin = blockIdx.z * chunk, k_end = min(K, k_begin + chunk);
    const TableA la{a, kt, a_stride, m0, M};
    // MN_FASTEST: thread tid always loads column tid % BN of B's slab
    const GatherB lb(src, ct, kt, rows, cols, n0 + threadIdx.x % S::BN, N);
    gemm_tc::Accumulators<S, P> acc;
    gemm_tc::zero<S, P>(acc);
    gemm_tc::accumulate<S, P, gemm_tc::MN_FASTEST>(tiles, acc, k_begin, k_end, la, lb);
    float* part = out + blockIdx.z * M * out_stride;
    gemm_tc::store<S, P, gemm_tc::MN_FASTEST>(tiles, acc, [&](int ml, int nl, float v) {
        const int m = m0 + ml, n = n0 + nl;
        if (m < M && n < N) part[m * out_stride + ct[n].w] = has_bias ? v + bias[m] : v;
    });
}

// grid (ceil(N / BN), ceil(M / BM), splits), block 256: one kernel per precision and tile shape
// (written out: the launcher reads each kernel's parameters from its source).
extern "C" __global__ void __launch_bounds__(256)
conv2d_tc_tf32_128x64_v3(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                         const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                         int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm_tc<gemm_tc::Shape<128, 64, 4, 2>, gemm_tc::TF32>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out,
                                                               out_stride, M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_tc_tf32_64x128_v3(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                         const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                         int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm_tc<gemm_tc::Shape<64, 128, 2, 4>, gemm_tc::TF32>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out,
                                                               out_stride, M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_tc_tf32_32x256_v3(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                         const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                         int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm_tc<gemm_tc::Shape<32, 256, 1, 8>, gemm_tc::TF32>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out,
                                                               out_stride, M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_tc_bf16_128x64_v3(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                         const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                         int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm_tc<gemm_tc::Shape<128, 64, 4, 2>, gemm_tc::BF16>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out,
                                                               out_stride, M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_tc_bf16_64x128_v3(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                         const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                         int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm_tc<gemm_tc::Shape<64, 128, 2, 4>, gemm_tc::BF16>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out,
                                                               out_stride, M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_tc_bf16_32x256_v3(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                         const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                         int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm_tc<gemm_tc::Shape<32, 256, 1, 8>, gemm_tc::BF16>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out,
                                                               out_stride, M, N, K, chunk);
}
