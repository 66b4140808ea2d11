// The one matrix-multiply core behind conv2d (all three passes) and gram: a tiled "implicit GEMM".
//
//     C[m][n] = sum_k A(m, k) * B(k, n)      for k in [k_begin, k_end)
//
// A and B are never stored: loader functors compute each element on the fly (an im2col entry, a
// transposed weight, a zero outside the image). A block of 256 threads computes a 64x64 tile of C:
// per step it stages a 64x16 slab of A and a 16x64 slab of B in shared memory, then each thread
// accumulates a 4x4 micro-tile in registers. Thread (tx, ty) owns rows ty + 16i and columns
// tx + 16j, so that neighbouring threads touch neighbouring columns (coalesced stores, no bank
// conflicts on the B reads, broadcasts on the A reads).
#pragma once

namespace gemm {

constexpr int BM = 64, BN = 64, BK = 16, THREADS = 256;
constexpr int TM = BM / 16, TN = BN / 16;

struct Tiles {
    float a[BK][BM + 1];  // A slab stored k-major; +1 so that the k-strided stores hit distinct banks
    float b[BK][BN];
};

template <class LoadA, class LoadB>
__device__ __forceinline__ void accumulate(Tiles& s, float (&acc)[TM][TN], int M, int N, int k_begin, int k_end,
                                           int m0, int n0, const LoadA& load_a, const LoadB& load_b) {
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        for (int e = tid; e < BM * BK; e += THREADS) {  // k fastest: A rows are k-contiguous in memory
            const int k = e % BK, m = e / BK;
            s.a[k][m] = (m0 + m < M && k0 + k < k_end) ? load_a(m0 + m, k0 + k) : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += THREADS) {  // n fastest: B rows are n-contiguous in memory
            const int k = e / BN, n = e % BN;
            s.b[k][n] = (n0 + n < N && k0 + k < k_end) ? load_b(k0 + k, n0 + n) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = s.a[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = s.b[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
}

// Hand every element of the tile that lies inside the M x N matrix to store(m, n, value).
template <class Store>
__device__ __forceinline__ void store(const float (&acc)[TM][TN], int M, int N, int m0, int n0, const Store& st) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
            if (m < M && n < N) st(m, n, acc[i][j]);
        }
}

}  // namespace gemm
