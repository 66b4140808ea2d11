// The matrix-multiply core of conv v2 and loss v2: a tiled GEMM whose tile shape is a template
// parameter (the launcher picks one per problem), with double-buffered shared tiles and
// vectorized shared-memory reads.
//
//     C[m][n] = sum_k A(m, k) * B(k, n)      for k in [k_begin, k_end)
//
// A block of 256 threads computes a BM x BN tile of C. Per step of BK = 16 it stages a BM x BK
// slab of A and a BK x BN slab of B in shared memory; thread (tx, ty) accumulates the TM x TN
// micro-tile of rows ty*TM.. and columns tx*TN.. in registers, reading each as float4 when its
// side is 4 wide. While the block computes on one stage, each thread's loads of the next slab are
// in flight in registers; they go to the other stage after the compute, so one barrier per step
// separates the two (v1 stored, waited, computed and waited again).
//
// Operands are loader objects: a loader is built per thread for the one index it always loads
// (every element a thread loads shares its row of A, or its column of B, across the k steps, so
// whatever the geometry costs, divisions included, is paid once), then asked for its elements
// at each step. MN-fastest loaders take consecutive columns (rows) on consecutive threads, the
// coalesced order when those are adjacent in memory; K-fastest loaders consecutive k.
#pragma once

namespace gemm2 {

constexpr int BK = 16, THREADS = 256;

template <int BM_, int BN_, int TM_, int TN_>
struct Shape {
    static constexpr int BM = BM_, BN = BN_, TM = TM_, TN = TN_;
    static constexpr int COLS = BN / TN, ROWS = BM / TM;  // the threads' grid over the tile
    static_assert(ROWS * COLS == THREADS, "a tile shape has one micro-tile per thread");
    static_assert(BM % 4 == 0 && BN % 4 == 0, "float4 reads of the shared tiles");
};

// Two stages of A (k-major; rows of BM + 4: 16-byte aligned and fewer store conflicts) and B.
template <class S>
struct __align__(16) Stages {
    float a[2][BK][S::BM + 4];
    float b[2][BK][S::BN];
};

enum Order { K_FASTEST, MN_FASTEST };

// The elements of a BM x BK (A) or BK x BN (B) slab that thread `tid` loads: the index it keeps
// (`fixed`, a row of A or a column of B) and its k offsets.
template <int MN, Order ORDER>
struct Slab {
    static constexpr int ELEMENTS = MN * BK;
    static constexpr int LOADS = (ELEMENTS + THREADS - 1) / THREADS;
    static_assert(ORDER == K_FASTEST ? THREADS % BK == 0 : THREADS % MN == 0, "a fixed index per thread");
    // element e = tid + q * THREADS of the slab, q < LOADS; valid when e < ELEMENTS
    static __device__ __forceinline__ int mn(int e) { return ORDER == K_FASTEST ? e / BK : e % MN; }
    static __device__ __forceinline__ int k(int e) { return ORDER == K_FASTEST ? e % BK : e / MN; }
};

template <int N>
__device__ __forceinline__ void read_fragment(float (&f)[N], const float* p) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const float4 v = *reinterpret_cast<const float4*>(p + i);
            f[i] = v.x, f[i + 1] = v.y, f[i + 2] = v.z, f[i + 3] = v.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) f[i] = p[i];
    }
}

// acc += A B over [k_begin, k_end) for the tile at (m0, n0). LoadA: a.load(m_local, k) -> float
// for rows m0 + m_local (0 outside A); LoadB: b.load(n_local, k) likewise for columns. `a` and
// `b` were built for this thread's fixed index (see Slab).
template <class S, Order A_ORDER, Order B_ORDER, class LoadA, class LoadB>
__device__ __forceinline__ void accumulate(Stages<S>& s, float (&acc)[S::TM][S::TN], int k_begin, int k_end,
                                           const LoadA& a, const LoadB& b) {
    using SA = Slab<S::BM, A_ORDER>;
    using SB = Slab<S::BN, B_ORDER>;
    const int tid = threadIdx.x, tx = tid % S::COLS, ty = tid / S::COLS;
    float ra[SA::LOADS], rb[SB::LOADS];
    auto fetch = [&](int k0) {
#pragma unroll
        for (int q = 0; q < SA::LOADS; ++q) {
            const int e = tid + q * THREADS, k = k0 + SA::k(e);
            ra[q] = (e < SA::ELEMENTS && k < k_end) ? a.load(SA::mn(e), k) : 0.0f;
        }
#pragma unroll
        for (int q = 0; q < SB::LOADS; ++q) {
            const int e = tid + q * THREADS, k = k0 + SB::k(e);
            rb[q] = (e < SB::ELEMENTS && k < k_end) ? b.load(SB::mn(e), k) : 0.0f;
        }
    };
    auto stage = [&](int st) {
#pragma unroll
        for (int q = 0; q < SA::LOADS; ++q) {
            const int e = tid + q * THREADS;
            if (e < SA::ELEMENTS) s.a[st][SA::k(e)][SA::mn(e)] = ra[q];
        }
#pragma unroll
        for (int q = 0; q < SB::LOADS; ++q) {
            const int e = tid + q * THREADS;
            if (e < SB::ELEMENTS) s.b[st][SB::k(e)][SB::mn(e)] = rb[q];
        }
    };
    if (k_begin >= k_end) return;
    fetch(k_begin);
    stage(0);
    __syncthreads();
    int st = 0;
    for (int k0 = k_begin; k0 < k_end; k0 += BK, st ^= 1) {
        const bool more = k0 + BK < k_end;
        if (more) fetch(k0 + BK);  // in flight while this stage is computed
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float fa[S::TM], fb[S::TN];
            read_fragment(fa, &s.a[st][k][ty * S::TM]);
            read_fragment(fb, &s.b[st][k][tx * S::TN]);
#pragma unroll
            for (int i = 0; i < S::TM; ++i)
#pragma unroll
                for (int j = 0; j < S::TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
        }
        if (more) stage(st ^ 1);  // the other stage was last read before the previous barrier
        __syncthreads();
    }
}

// Hand every element of the thread's micro-tile to store(m_local, n_local, value).
template <class S, class Store>
__device__ __forceinline__ void store(const float (&acc)[S::TM][S::TN], const Store& st) {
    const int tx = threadIdx.x % S::COLS, ty = threadIdx.x / S::COLS;
#pragma unroll
    for (int i = 0; i < S::TM; ++i)
#pragma unroll
        for (int j = 0; j < S::TN; ++j) st(ty * S::TM + i, tx * S::TN + j, acc[i][j]);
}

}  // namespace gemm2
