// conv v2: what changes from v1 (conv_v1.cu), and why: v1 issues 2.5x the useful FLOPs of a
// 512x512 stylization, and its loaders divide integers for every element.
//
// 1. A tile shape per problem: 64x64, 32x128, 16x256 or 4x256 (BM x BN, gemm_v2.cuh), the one
//    that wastes least on the pass's M x N. A 3-channel layer (the 9x9 output conv, VGG's first
//    backward-data) runs 4-row tiles instead of 64-row ones: 1.3x the useful work instead of 21x.
// 2. Precomputed im2col offsets: every pass is one GEMM over two tables that the launcher builds
//    once per geometry (microst/ops/conv.py): per column of C, where its receptive field starts,
//    and per reduction index k, the offset of tap k within it. A loader adds the two and checks
//    the row and column against the image: no division anywhere in the kernel.
// 3. Sub-pixel decomposition: a strided backward-data (the forward of a strided transposed conv)
//    runs one GEMM per output parity class (ph, pw), over only the taps that reach that class,
//    instead of multiplying the zeros the stride inserted (75% of the taps at stride 2).
// 4. Double-buffered shared tiles and float4 shared-memory reads (gemm_v2.cuh).
// 5. Backward-weight computes the bias gradient as one more column of ones in B (sum over the
//    reduction of dy), and the split reduction is summed in a fixed order by sum_split_columns_v2.
//
// The GEMM, for every pass:
//   C(m, n)  = sum_k A(m, k) * B(k, n),  k in [z * chunk, (z + 1) * chunk) for split z = blockIdx.z
//   A(m, k)  = a[m * a_stride + kt[k].w]
//   B(k, n)  = src[ct[n].x + kt[k].x]   when 0 <= ct[n].y + kt[k].y < rows and 0 <= ct[n].z + kt[k].z < cols
//            = 1                         for a column whose ct[n].y is ONES (the bias gradient)
//            = 0                         otherwise (the zero padding, an edge of a parity class)
//   out[z * M * out_stride + m * out_stride + ct[n].w] = C(m, n) (+ bias[m] when has_bias)
// ct: N int4 (one per column), kt: K int4 (one per reduction index).
#include "common.cuh"
#include "gemm_v2.cuh"

constexpr int ONES = -(1 << 30);  // ct[n].y of the column of ones

struct GatherB {  // this thread's column of B
    const float* __restrict__ src;
    const int4* __restrict__ kt;
    int rows, cols, base, row, col;
    bool valid, ones;

    __device__ GatherB(const float* src_, const int4* ct, const int4* kt_, int rows_, int cols_, int n, int N)
        : src(src_), kt(kt_), rows(rows_), cols(cols_), base(0), row(0), col(0), valid(n < N), ones(false) {
        if (valid) {
            const int4 c = ct[n];
            base = c.x, row = c.y, col = c.z, ones = c.y == ONES;
        }
    }
    __device__ __forceinline__ float load(int, int k) const {
        if (!valid) return 0.0f;
        if (ones) return 1.0f;
        const int4 t = kt[k];
        const int r = row + t.y, c = col + t.z;
        return ((unsigned)r < (unsigned)rows && (unsigned)c < (unsigned)cols) ? src[base + t.x] : 0.0f;
    }
};

struct TableA {  // rows m0 .. of A
    const float* __restrict__ a;
    const int4* __restrict__ kt;
    int stride, m0, M;

    __device__ __forceinline__ float load(int m, int k) const {
        return m0 + m < M ? a[(m0 + m) * stride + kt[k].w] : 0.0f;
    }
};

template <class S>
__device__ __forceinline__ void conv_gemm(const float* __restrict__ a, int a_stride, const float* __restrict__ src,
                                          int rows, int cols, const int4* __restrict__ ct,
                                          const int4* __restrict__ kt, const float* __restrict__ bias, int has_bias,
                                          float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    __shared__ gemm2::Stages<S> stages;
    const int n0 = blockIdx.x * S::BN, m0 = blockIdx.y * S::BM;
    const int k_begin = blockIdx.z * chunk, k_end = min(K, k_begin + chunk);
    const TableA la{a, kt, a_stride, m0, M};
    const GatherB lb(src, ct, kt, rows, cols, n0 + gemm2::Slab<S::BN, gemm2::MN_FASTEST>::mn(threadIdx.x), N);
    float acc[S::TM][S::TN] = {};
    gemm2::accumulate<S, gemm2::K_FASTEST, gemm2::MN_FASTEST>(stages, acc, k_begin, k_end, la, lb);
    float* part = out + blockIdx.z * M * out_stride;
    gemm2::store<S>(acc, [&](int ml, int nl, float v) {
        const int m = m0 + ml, n = n0 + nl;
        if (m < M && n < N) part[m * out_stride + ct[n].w] = has_bias ? v + bias[m] : v;
    });
}

// grid (ceil(N / BN), ceil(M / BM), splits), block 256: one kernel per tile shape.
extern "C" __global__ void __launch_bounds__(256)
conv2d_gemm_64x64_v2(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                     const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                     int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm<gemm2::Shape<64, 64, 4, 4>>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out, out_stride,
                                          M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_gemm_32x128_v2(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                      const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                      int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm<gemm2::Shape<32, 128, 4, 4>>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out, out_stride,
                                           M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_gemm_16x256_v2(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                      const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                      int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm<gemm2::Shape<16, 256, 4, 4>>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out, out_stride,
                                           M, N, K, chunk);
}

extern "C" __global__ void __launch_bounds__(256)
conv2d_gemm_4x256_v2(const float* __restrict__ a, int a_stride, const float* __restrict__ src, int rows, int cols,
                     const int4* __restrict__ ct, const int4* __restrict__ kt, const float* __restrict__ bias,
                     int has_bias, float* __restrict__ out, int out_stride, int M, int N, int K, int chunk) {
    conv_gemm<gemm2::Shape<4, 256, 4, 1>>(a, a_stride, src, rows, cols, ct, kt, bias, has_bias, out, out_stride,
                                          M, N, K, chunk);
}

// Backward-weight's second stage: partial (splits, M, K + 1), the last column the bias gradient;
// dw[m, k] and db[m] (want_db) are the sums over the splits, in split order (deterministic).
extern "C" __global__ void sum_split_columns_v2(const float* __restrict__ partial, float* __restrict__ dw,
                                                float* __restrict__ db, int splits, int M, int K, int want_db) {
    const int width = K + 1;
    GRID_STRIDE_LOOP(i, M * width) {
        const int m = i / width, k = i - m * width;
        float total = 0.0f;
        for (int s = 0; s < splits; ++s) total += partial[s * M * width + i];
        if (k < K) dw[m * K + k] = total;
        else if (want_db) db[m] = total;
    }
}
