// Tensor-core test kernels (WMMA, 16-bit floats): right ones, and ones that depend on what CUDA
// leaves unspecified (the fragment layout), or break WMMA's rules (partial warps, lanes that
// disagree, misaligned pointers). A block of 64 threads is two warps.
#include <cuda_bf16.h>
#include <mma.h>

using namespace nvcuda;

// C (M, N) = alpha * A (M, K) B (K, N), all row-major, in TF32 (inputs rounded with
// __float_to_tf32). Warp w of block (bx, by) computes the 16x16 tile at rows 32*by + 16*w, columns
// 16*bx. M a multiple of 32, N of 16, K of 8.
extern "C" __global__ void wmma_gemm_tf32(const float* A, const float* B, float* C, int M, int N, int K, float alpha) {
    const int warp = threadIdx.x / 32, row0 = blockIdx.y * 32 + warp * 16, col0 = blockIdx.x * 16;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < K; k0 += 8) {
        wmma::load_matrix_sync(a, A + (size_t)row0 * K + k0, K);
        wmma::load_matrix_sync(b, B + (size_t)k0 * N + col0, N);
        for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
        for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
        wmma::mma_sync(acc, a, b, acc);
    }
    for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= alpha;  // element-wise: layout-free
    wmma::store_matrix_sync(C + (size_t)row0 * N + col0, acc, N, wmma::mem_row_major);
}

// D = C0 + A B, stored transposed: At is A^T (K, M) and Bt is B^T (N, K), so that A and B load
// col_major; C0 (M, N) loads row-major into the accumulator, Dt (N, M) = D^T stores col-major.
// No __float_to_tf32: the fragments keep all 23 mantissa bits, and mma_sync reads 10 of them.
extern "C" __global__ void wmma_gemm_tf32_colmajor(const float* At, const float* Bt, const float* C0, float* Dt,
                                                   int M, int N, int K) {
    const int warp = threadIdx.x / 32, row0 = blockIdx.y * 32 + warp * 16, col0 = blockIdx.x * 16;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(acc, C0 + (size_t)row0 * N + col0, N, wmma::mem_row_major);
    for (int k0 = 0; k0 < K; k0 += 8) {
        wmma::load_matrix_sync(a, At + (size_t)k0 * M + row0, M);
        wmma::load_matrix_sync(b, Bt + (size_t)col0 * K + k0, K);
        wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(Dt + (size_t)col0 * M + row0, acc, M, wmma::mem_col_major);
}

// C = A B in BF16 (m16n16k16): each block converts its A rows and B columns to bf16 in shared
// memory (__float2bfloat16: round to nearest even), one k-step of 16 at a time.
extern "C" __global__ void wmma_gemm_bf16(const float* A, const float* B, float* C, int M, int N, int K) {
    __shared__ __align__(32) __nv_bfloat16 As[32][16];
    __shared__ __align__(32) __nv_bfloat16 Bs[16][16];
    const int warp = threadIdx.x / 32, row0 = blockIdx.y * 32, col0 = blockIdx.x * 16;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < K; k0 += 16) {
        for (int i = threadIdx.x; i < 32 * 16; i += blockDim.x)
            As[i / 16][i % 16] = __float2bfloat16(A[(size_t)(row0 + i / 16) * K + k0 + i % 16]);
        for (int i = threadIdx.x; i < 16 * 16; i += blockDim.x)
            Bs[i / 16][i % 16] = __float2bfloat16(B[(size_t)(k0 + i / 16) * N + col0 + i % 16]);
        __syncthreads();
        wmma::load_matrix_sync(a, &As[warp * 16][0], 16);
        wmma::load_matrix_sync(b, &Bs[0][0], 16);
        wmma::mma_sync(acc, a, b, acc);
        __syncthreads();
    }
    wmma::store_matrix_sync(C + (size_t)(row0 + warp * 16) * N + col0, acc, N, wmma::mem_row_major);
}

// The rounding of one float each way: tf32 (RNA), bf16 and fp16 (RNE), as bits, and back.
extern "C" __global__ void round_bits(const float* x, unsigned int* tf32, unsigned int* bf16, unsigned int* fp16,
                                      float* bf16_back, float* fp16_back, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    tf32[i] = __float_as_uint(wmma::__float_to_tf32(x[i]));
    const __nv_bfloat16 b = __float2bfloat16(x[i]);
    const __half h = __float2half(x[i]);
    bf16[i] = __bfloat16_as_ushort(b);
    fp16[i] = __half_as_ushort(h);
    bf16_back[i] = __bfloat162float(b);
    fp16_back[i] = __half2float(h);
}

// Wrong: writes the accumulator as if element i of lane l were row l/4 + 8*(i/2 % 2), column
// 2*(l%4) + i%2 + 8*(i/4) (the layout of mma.sync's m16n8 tiles). CUDA does not promise any
// layout to WMMA code, and emu uses another: the values land in the wrong places.
extern "C" __global__ void wmma_store_by_hand(const float* A, const float* B, float* C) {
    const int lane = threadIdx.x % 32;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    wmma::load_matrix_sync(a, A, 8);
    wmma::load_matrix_sync(b, B, 16);
    wmma::mma_sync(acc, a, b, acc);
    for (int i = 0; i < acc.num_elements; ++i)
        C[(lane / 4 + 8 * (i / 2 % 2)) * 16 + 2 * (lane % 4) + i % 2 + 8 * (i / 4)] = acc.x[i];
}

// Broken in the ways below, chosen by `how`; A (16, 8), B (8, 16), C (16, 16).
extern "C" __global__ void wmma_misuse(const float* A, const float* B, float* C, int how) {
    const int lane = threadIdx.x % 32;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    if (how != 4) wmma::fill_fragment(acc, 0.0f);  // 4: never initialised
    wmma::load_matrix_sync(b, B, 16);
    if (how == 1) {
        wmma::load_matrix_sync(a, A + (lane == 5 ? 8 : 0), 8);  // lanes disagree // misuse A
    } else if (how == 2) {
        wmma::load_matrix_sync(a, A + 1, 8);  // misaligned // misuse B
    } else {
        wmma::load_matrix_sync(a, A, 8);
    }
    if (how != 3 || lane < 16) wmma::mma_sync(acc, a, b, acc);  // 3: half the warp // misuse C
    wmma::store_matrix_sync(C, acc, 16, wmma::mem_row_major);
}
