// The tensor-core GEMM core of conv v3 and loss v3 (WMMA: nvcuda::wmma, FP32 accumulate).
//
//     C[m][n] = sum_k A(m, k) * B(k, n)      for k in [k_begin, k_end)
//
// A block of 256 threads (8 warps) computes a BM x BN tile of C; warp (wm, wn) of the WM x WN warp
// grid owns a (BM / WM) x (BN / WN) sub-tile of 16 x 16 accumulator fragments. Per step of BK it
// stages a BM x BK slab of A and a BK x BN slab of B in shared memory, in two stages:
//   TF32 (m16n16k8, BK = 16): the slabs are copied as they are with cp.async (cuda_pipeline.h),
//     the next step's copies in flight while the tensor cores work on this one; each fragment is
//     rounded to TF32 (__float_to_tf32: nearest, ties away) after it is loaded.
//   BF16 (m16n16k16, BK = 32): storage is FP32, and a copy cannot convert, so the next slab is
//     loaded into registers while this one is computed, then rounded to BF16 (nearest even) on its
//     way into the other stage (gemm_v2.cuh's scheme).
// Element-wise work on fragments is uniform over x[] (the layout of a fragment is unspecified, and
// emu scrambles it), so nothing here depends on which element is where.
//
// Operands are loader objects, as in gemm_v2.cuh, but a loader gives addresses:
// a.address(m_local, k) -> const float* of A(m0 + m_local, k), or nullptr where A is 0 (outside
// the matrix, the zero padding); b.address(n_local, k) likewise. K_FASTEST: consecutive threads
// take consecutive k (the operand is contiguous along k); MN_FASTEST: consecutive m or n. A is
// always K_FASTEST, held [m][k] in shared memory (row_major fragments); B is held [k][n]
// (row_major) when MN_FASTEST, [n][k] (col_major) when K_FASTEST, so that the copies of
// consecutive threads land side by side either way.
//
// After the loop the accumulators go through shared memory (store_matrix_sync), and every
// element of the tile is handed to store(m_local, n_local, value), consecutive threads on
// consecutive n: the caller maps it to memory (a conv's output offset table, a bias).
#pragma once
#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>

namespace gemm_tc {

using namespace nvcuda;

constexpr int THREADS = 256, WARPS = 8;
enum Precision { TF32, BF16 };
enum Order { K_FASTEST, MN_FASTEST };

template <Precision P> struct Traits;
template <> struct Traits<TF32> {
    using Element = float;                 // in shared memory
    using Fragment = wmma::precision::tf32;
    static constexpr int FK = 8, BK = 16, PAD = 4;  // PAD keeps ldm a multiple of 16 bytes
};
template <> struct Traits<BF16> {
    using Element = __nv_bfloat16;
    using Fragment = __nv_bfloat16;
    static constexpr int FK = 16, BK = 32, PAD = 8;
};

template <int BM_, int BN_, int WM_, int WN_>
struct Shape {
    static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_;
    static constexpr int FM = BM / WM / 16, FN = BN / WN / 16;  // fragments per warp, down and across
    static_assert(WM * WN == WARPS && FM * WM * 16 == BM && FN * WN * 16 == BN, "warps tile the block tile");
};

// The shared memory of one block: two stages of A and B, or, after the loop, the C tile.
template <class S, Precision P, Order B_ORDER>
struct Tiles {
    using E = typename Traits<P>::Element;
    static constexpr int BK = Traits<P>::BK, PAD = Traits<P>::PAD;
    static constexpr int LDA = BK + PAD;                                // a[m][k]
    static constexpr int LDB = B_ORDER == MN_FASTEST ? S::BN + PAD : BK + PAD;  // b[k][n] or b[n][k]
    static constexpr int A_STAGE = S::BM * LDA, B_STAGE = (B_ORDER == MN_FASTEST ? BK : S::BN) * LDB;
    static constexpr int LDC = S::BN + 4;
    static constexpr int STAGE_BYTES = 2 * (A_STAGE + B_STAGE) * (int)sizeof(E), C_BYTES = S::BM * LDC * 4;
    static constexpr int BYTES = STAGE_BYTES > C_BYTES ? STAGE_BYTES : C_BYTES;

    __align__(128) unsigned char raw[BYTES];

    __device__ __forceinline__ E* a(int st) { return reinterpret_cast<E*>(raw) + st * A_STAGE; }
    __device__ __forceinline__ E* b(int st) { return reinterpret_cast<E*>(raw) + 2 * A_STAGE + st * B_STAGE; }
    __device__ __forceinline__ float* c() { return reinterpret_cast<float*>(raw); }
    // where element (k, n) of B's slab lives in its stage
    static __device__ __forceinline__ int b_index(int k, int n) {
        return B_ORDER == MN_FASTEST ? k * LDB + n : n * LDB + k;
    }
};

// The elements of a slab of MN x BK that thread `tid` moves: element e = tid + q * THREADS
template <int MN, int BK, Order ORDER>
struct Slab {
    static constexpr int ELEMENTS = MN * BK, LOADS = (ELEMENTS + THREADS - 1) / THREADS;
    static __device__ __forceinline__ int mn(int e) { return ORDER == K_FASTEST ? e / BK : e % MN; }
    static __device__ __forceinline__ int k(int e) { return ORDER == K_FASTEST ? e % BK : e / MN; }
};

template <Precision P, class Frag>
__device__ __forceinline__ void round_fragment(Frag& f) {
    if constexpr (P == TF32) {
#pragma unroll
        for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
    }
}

template <Precision P>
__device__ __forceinline__ typename Traits<P>::Element to_element(float v) {
    if constexpr (P == TF32) return v;
    else return __float2bfloat16(v);
}

template <class S, Precision P>
using Accumulators = wmma::fragment<wmma::accumulator, 16, 16, Traits<P>::FK, float>[S::FM][S::FN];

template <bool C, class A, class B> struct Pick { using type = A; };  // std::conditional, which NVRTC lacks
template <class A, class B> struct Pick<false, A, B> { using type = B; };

// acc += A B over [k_begin, k_end) on the tensor cores (see the top of the file).
template <class S, Precision P, Order B_ORDER, class LoadA, class LoadB>
__device__ __forceinline__ void accumulate(Tiles<S, P, B_ORDER>& t, Accumulators<S, P>& acc, int k_begin,
                                           int k_end, const LoadA& la, const LoadB& lb) {
    using T = Tiles<S, P, B_ORDER>;
    using E = typename T::E;
    constexpr int BK = T::BK, FK = Traits<P>::FK;
    using SA = Slab<S::BM, BK, K_FASTEST>;
    using SB = Slab<S::BN, BK, B_ORDER>;
    using BLayout = typename Pick<B_ORDER == MN_FASTEST, wmma::row_major, wmma::col_major>::type;
    const int tid = threadIdx.x, warp = tid / 32, wm = warp / S::WN, wn = warp % S::WN;

    auto a_source = [&](int q, int k0) -> const float* {
        const int e = tid + q * THREADS, k = k0 + SA::k(e);
        return (e < SA::ELEMENTS && k < k_end) ? la.address(SA::mn(e), k) : nullptr;
    };
    auto b_source = [&](int q, int k0) -> const float* {
        const int e = tid + q * THREADS, k = k0 + SB::k(e);
        return (e < SB::ELEMENTS && k < k_end) ? lb.address(SB::mn(e), k) : nullptr;
    };
    auto compute = [&](int st) {
        const E* a = t.a(st);
        const E* b = t.b(st);
#pragma unroll
        for (int kk = 0; kk < BK; kk += FK) {
            wmma::fragment<wmma::matrix_a, 16, 16, FK, typename Traits<P>::Fragment, wmma::row_major> fa[S::FM];
            wmma::fragment<wmma::matrix_b, 16, 16, FK, typename Traits<P>::Fragment, BLayout> fb[S::FN];
#pragma unroll
            for (int i = 0; i < S::FM; ++i) {
                wmma::load_matrix_sync(fa[i], a + ((wm * S::FM + i) * 16) * T::LDA + kk, T::LDA);
                round_fragment<P>(fa[i]);
            }
#pragma unroll
            for (int j = 0; j < S::FN; ++j) {
                wmma::load_matrix_sync(fb[j], b + T::b_index(kk, (wn * S::FN + j) * 16), T::LDB);
                round_fragment<P>(fb[j]);
            }
#pragma unroll
            for (int i = 0; i < S::FM; ++i)
#pragma unroll
                for (int j = 0; j < S::FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
    };
    if (k_begin >= k_end) return;

    if constexpr (P == TF32) {
        // cp.async: a source of nullptr is a plain store of 0 (nothing to copy)
        auto issue = [&](int st, int k0) {
            E* a = t.a(st);
            E* b = t.b(st);
#pragma unroll
            for (int q = 0; q < SA::LOADS; ++q) {
                const int e = tid + q * THREADS;
                if (e >= SA::ELEMENTS) continue;
                float* dst = a + SA::mn(e) * T::LDA + SA::k(e);
                if (const float* src = a_source(q, k0)) __pipeline_memcpy_async(dst, src, sizeof(float));
                else *dst = 0.0f;
            }
#pragma unroll
            for (int q = 0; q < SB::LOADS; ++q) {
                const int e = tid + q * THREADS;
                if (e >= SB::ELEMENTS) continue;
                float* dst = b + T::b_index(SB::k(e), SB::mn(e));
                if (const float* src = b_source(q, k0)) __pipeline_memcpy_async(dst, src, sizeof(float));
                else *dst = 0.0f;
            }
            __pipeline_commit();
        };
        issue(0, k_begin);
        int st = 0;
        for (int k0 = k_begin; k0 < k_end; k0 += BK, st ^= 1) {
            if (k0 + BK < k_end) {
                issue(st ^ 1, k0 + BK);  // the other stage was last read before the previous barrier
                __pipeline_wait_prior(1);  // this stage's copies have landed; the next one's may not
            } else {
                __pipeline_wait_prior(0);
            }
            __syncthreads();
            compute(st);
            __syncthreads();
        }
    } else {
        float ra[SA::LOADS], rb[SB::LOADS];
        auto fetch = [&](int k0) {
#pragma unroll
            for (int q = 0; q < SA::LOADS; ++q) {
                const float* src = a_source(q, k0);
                ra[q] = src ? *src : 0.0f;
            }
#pragma unroll
            for (int q = 0; q < SB::LOADS; ++q) {
                const float* src = b_source(q, k0);
                rb[q] = src ? *src : 0.0f;
            }
        };
        auto stage = [&](int st) {
            E* a = t.a(st);
            E* b = t.b(st);
#pragma unroll
            for (int q = 0; q < SA::LOADS; ++q) {
                const int e = tid + q * THREADS;
                if (e < SA::ELEMENTS) a[SA::mn(e) * T::LDA + SA::k(e)] = to_element<P>(ra[q]);
            }
#pragma unroll
            for (int q = 0; q < SB::LOADS; ++q) {
                const int e = tid + q * THREADS;
                if (e < SB::ELEMENTS) b[T::b_index(SB::k(e), SB::mn(e))] = to_element<P>(rb[q]);
            }
        };
        fetch(k_begin);
        stage(0);
        __syncthreads();
        int st = 0;
        for (int k0 = k_begin; k0 < k_end; k0 += BK, st ^= 1) {
            const bool more = k0 + BK < k_end;
            if (more) fetch(k0 + BK);  // in flight while this stage is computed
            compute(st);
            if (more) stage(st ^ 1);
            __syncthreads();
        }
    }
}

// Hand every element of the tile to store(m_local, n_local, value): the accumulators go through
// shared memory (the stages are free after accumulate's last barrier).
template <class S, Precision P, Order B_ORDER, class Store>
__device__ __forceinline__ void store(Tiles<S, P, B_ORDER>& t, Accumulators<S, P>& acc, const Store& st) {
    using T = Tiles<S, P, B_ORDER>;
    const int warp = threadIdx.x / 32, wm = warp / S::WN, wn = warp % S::WN;
    float* c = t.c();
#pragma unroll
    for (int i = 0; i < S::FM; ++i)
#pragma unroll
        for (int j = 0; j < S::FN; ++j)
            wmma::store_matrix_sync(c + ((wm * S::FM + i) * 16) * T::LDC + (wn * S::FN + j) * 16, acc[i][j], T::LDC,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int e = threadIdx.x; e < S::BM * S::BN; e += THREADS) {
        const int m = e / S::BN, n = e % S::BN;
        st(m, n, c[m * T::LDC + n]);
    }
}

template <class S, Precision P>
__device__ __forceinline__ void zero(Accumulators<S, P>& acc) {
#pragma unroll
    for (int i = 0; i < S::FM; ++i)
#pragma unroll
        for (int j = 0; j < S::FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
}

}  // namespace gemm_tc
