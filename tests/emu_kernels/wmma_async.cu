// cp.async (<cuda_pipeline.h>) test kernels: a double-buffered TF32 GEMM whose waits can be left
// out or miscounted, copies in a kernel without barriers, and misuses. Blocks of 64 threads.
#include <cuda_pipeline.h>
#include <mma.h>

using namespace nvcuda;

// C = A B (row-major, M a multiple of 32, N of 16, K of 8) in TF32; the A and B tiles of k-step
// kt + 1 are copied (cp.async) while k-step kt computes. `wait_n` is the N of the loop's
// __pipeline_wait_prior (1 is right, -1 leaves it out); `drain` adds __pipeline_wait_prior(0) at
// the end.
extern "C" __global__ void wmma_gemm_tf32_async(const float* A, const float* B, float* C, int M, int N, int K,
                                                int wait_n, int drain) {
    __shared__ __align__(128) float As[2][32][8];
    __shared__ __align__(128) float Bs[2][8][16];
    const int t = threadIdx.x, warp = t / 32, row0 = blockIdx.y * 32, col0 = blockIdx.x * 16, nk = K / 8;
    auto issue = [&](int kt) {  // 16 bytes a thread: A's 32x8 tile by all 64, B's 8x16 by the first 32
        const int s = kt % 2, k0 = kt * 8;
        const float* a = A + (size_t)(row0 + t / 2) * K + k0 + 4 * (t % 2);
        __pipeline_memcpy_async(&As[s][t / 2][4 * (t % 2)], a, 16);  // copy A
        if (t < 32)
            __pipeline_memcpy_async(&Bs[s][t / 4][4 * (t % 4)], B + (size_t)(k0 + t / 4) * N + col0 + 4 * (t % 4), 16);
    };
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    issue(0);
    __pipeline_commit();
    for (int kt = 0; kt < nk; ++kt) {
        if (kt + 1 < nk) issue(kt + 1);
        __pipeline_commit();  // every iteration, so that "all but the newest 1" is always step kt
        if (wait_n >= 0) __pipeline_wait_prior(wait_n);
        __syncthreads();
        wmma::load_matrix_sync(a, &As[kt % 2][warp * 16][0], 8);
        wmma::load_matrix_sync(b, &Bs[kt % 2][0][0], 16);
        for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
        for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
        wmma::mma_sync(acc, a, b, acc);
        __syncthreads();  // before the next issue overwrites this buffer
    }
    if (drain) __pipeline_wait_prior(0);
    wmma::store_matrix_sync(C + (size_t)(row0 + warp * 16) * N + col0, acc, N, wmma::mem_row_major);
}

// No barrier (a plain loop on emu): each thread copies its 4 floats of src into dynamic shared
// memory and waits; then copies its 4 floats of src + 256 there (the last zfill bytes zero), and
// reads them before the wait (emu: NaN, not the first copy's data) and after it.
extern "C" __global__ void async_copy_plain(const float* src, float* before, float* after, int zfill) {
    extern __shared__ __align__(16) float buf[];
    const int t = threadIdx.x;
    __pipeline_memcpy_async(&buf[4 * t], src + 4 * t, 16);
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __pipeline_memcpy_async(&buf[4 * t], src + 256 + 4 * t, 16, zfill);
    __pipeline_commit();
    for (int i = 0; i < 4; ++i) before[4 * t + i] = buf[4 * t + i];
    __pipeline_wait_prior(0);
    for (int i = 0; i < 4; ++i) after[4 * t + i] = buf[4 * t + i];
}

// Broken, chosen by `how`: 1 copies to global memory, 2 copies 12 bytes, 3 from a misaligned
// source, 4 never waits (and never commits).
extern "C" __global__ void async_copy_misuse(const float* src, float* dst, int how) {
    __shared__ __align__(16) float buf[64 * 4];
    const int t = threadIdx.x;
    if (how == 1) __pipeline_memcpy_async(dst + 4 * t, src + 4 * t, 16);  // misuse D
    if (how == 2) __pipeline_memcpy_async(&buf[4 * t], src + 4 * t, 12);
    if (how == 3) __pipeline_memcpy_async(&buf[4 * t], src + 4 * t + 1, 16);
    if (how == 4) __pipeline_memcpy_async(&buf[4 * t], src + 4 * t, 16);  // misuse E
    if (how != 4) {
        __pipeline_commit();
        __pipeline_wait_prior(0);
    }
    dst[t] = buf[4 * t];
}
