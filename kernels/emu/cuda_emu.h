// cuda_emu.h: CUDA C on the CPU, for microst's `emu` device.
//
// microst/cuda.py compiles a kernels/*.cu file with g++ and `-include` of this header, after two
// source rewrites (_emu_rewrite in microst/cuda.py): each `__shared__` declaration registers its
// variable, so that every block starts with it filled with 0xFF, and `extern __shared__ T x[]`
// becomes a pointer into the dynamic shared buffer. It appends one EMU_LAUNCHER(kernel, fibers)
// line per kernel, and Python calls emu_launch_<kernel> through ctypes.
//
// Execution: one block at a time, on the calling OS thread. A kernel that never synchronises
// runs its threads as a plain loop, here, with the kernel inlined. A kernel that reaches
// __syncthreads or a warp function runs one fiber per CUDA thread, in the scheduler of
// emu_runtime.cpp (built once into a shared library that every kernel module links to).
//
// include/ stands in for the CUDA headers kernels name: <mma.h> (WMMA, warp-collective through
// emu_warp_collective), <cuda_bf16.h> and <cuda_fp16.h>, <cuda_pipeline.h> (cp.async, a deferred
// per-thread copy queue in the runtime). Each header says what it emulates and how it rounds.
#pragma once

// The C library's own headers, not libstdc++'s wrappers around them: a third of the compile time.
#define _GLIBCXX_INCLUDE_NEXT_C_HEADERS
#include <assert.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#undef _GLIBCXX_INCLUDE_NEXT_C_HEADERS

#include <type_traits>
#include <utility>

#define MICROST_EMU 1
// __CUDA_ARCH__ stays undefined, so `#ifdef __CUDA_ARCH__ <PTX> #else <C++> #endif` takes the C++.

// ---------------------------------------------------------------------------------------------
// Qualifiers
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// The rewrite in cuda.py turns `__shared__` into `static` plus a fill registration; this
// definition only serves declarations it cannot see (e.g. inside a macro): shared, not 0xFF-filled.
#define __shared__ static

// ---------------------------------------------------------------------------------------------
// Built-in types and variables
#define EMU_VEC2(T, N, A) struct __attribute__((aligned(A))) N##2 { T x, y; }; \
    inline N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define EMU_VEC3(T, N) struct N##3 { T x, y, z; }; \
    inline N##3 make_##N##3(T x, T y, T z) { return N##3{x, y, z}; }
#define EMU_VEC4(T, N, A) struct __attribute__((aligned(A))) N##4 { T x, y, z, w; }; \
    inline N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
#define EMU_VECS(T, N, A2, A4) struct N##1 { T x; }; inline N##1 make_##N##1(T x) { return N##1{x}; } \
    EMU_VEC2(T, N, A2) EMU_VEC3(T, N) EMU_VEC4(T, N, A4)
EMU_VECS(float, float, 8, 16)
EMU_VECS(int, int, 8, 16)
EMU_VECS(unsigned int, uint, 8, 16)
EMU_VECS(signed char, char, 2, 4)
EMU_VECS(unsigned char, uchar, 2, 4)
EMU_VECS(short, short, 4, 8)
EMU_VECS(unsigned short, ushort, 4, 8)
EMU_VECS(double, double, 16, 16)
EMU_VECS(long long, longlong, 16, 16)
EMU_VECS(unsigned long long, ulonglong, 16, 16)
#undef EMU_VECS
#undef EMU_VEC2
#undef EMU_VEC3
#undef EMU_VEC4
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};


// ---------------------------------------------------------------------------------------------
// Math (the float overloads of exp, log, ... come from <math.h>)
#define EMU_MINMAX(A, B, R) \
    inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; } \
    inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }
EMU_MINMAX(int, int, int)
EMU_MINMAX(unsigned int, unsigned int, unsigned int)
EMU_MINMAX(int, unsigned int, unsigned int)
EMU_MINMAX(unsigned int, int, unsigned int)
EMU_MINMAX(long, long, long)
EMU_MINMAX(unsigned long, unsigned long, unsigned long)
EMU_MINMAX(long long, long long, long long)
EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
#undef EMU_MINMAX
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }

// float overloads of the C math functions, as CUDA has them (sqrt(float) is float). They sit in
// a namespace brought in by a using-directive, so that they cannot clash with a libstdc++ header.
namespace emu_math {
#define EMU_F1(name) inline float name(float x) { return name##f(x); }
#define EMU_F2(name) inline float name(float x, float y) { return name##f(x, y); }
EMU_F1(exp) EMU_F1(exp2) EMU_F1(expm1) EMU_F1(log) EMU_F1(log2) EMU_F1(log10) EMU_F1(log1p)
EMU_F1(sqrt) EMU_F1(cbrt) EMU_F1(sin) EMU_F1(cos) EMU_F1(tan) EMU_F1(asin) EMU_F1(acos) EMU_F1(atan)
EMU_F1(sinh) EMU_F1(cosh) EMU_F1(tanh) EMU_F1(asinh) EMU_F1(acosh) EMU_F1(atanh) EMU_F1(fabs)
EMU_F1(floor) EMU_F1(ceil) EMU_F1(round) EMU_F1(trunc) EMU_F1(rint) EMU_F1(nearbyint) EMU_F1(erf)
EMU_F1(erfc) EMU_F1(lgamma) EMU_F1(tgamma)
EMU_F2(pow) EMU_F2(atan2) EMU_F2(fmod) EMU_F2(remainder) EMU_F2(fmin) EMU_F2(fmax) EMU_F2(hypot)
EMU_F2(copysign)
#undef EMU_F1
#undef EMU_F2
inline float fma(float x, float y, float z) { return fmaf(x, y, z); }
inline float abs(float x) { return fabsf(x); }
inline double abs(double x) { return fabs(x); }
inline long long abs(long long x) { return x < 0 ? -x : x; }
}  // namespace emu_math
using namespace emu_math;

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
inline float __saturatef(float x) { return saturatef(x); }
// The fast intrinsics are the exact functions here; tests should allow for the GPU's error.
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return exp10f(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
inline float __tanhf(float x) { return tanhf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

template <class To, class From> inline To emu_bit_cast(From v) { To r; memcpy(&r, &v, sizeof r); return r; }
inline int __float_as_int(float x) { return emu_bit_cast<int>(x); }
inline unsigned int __float_as_uint(float x) { return emu_bit_cast<unsigned int>(x); }
inline float __int_as_float(int x) { return emu_bit_cast<float>(x); }
inline float __uint_as_float(unsigned int x) { return emu_bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return emu_bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return emu_bit_cast<double>(x); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
inline int __mul24(int a, int b) { return a * b; }
inline unsigned int __umul24(unsigned int a, unsigned int b) { return a * b; }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned)(((unsigned long long)a * b) >> 32); }

// Loads and stores with cache hints: plain accesses.
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------------------------------------
// Atomics. Blocks run one at a time, so these only need to be atomic against other kernels
// launched from other Python threads on the same arrays; the __atomic builtins cover that.
#define EMU_ATOMIC_INT(T) \
    inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); } \
    inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); } \
    inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); } \
    inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); } \
    inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); } \
    inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); } \
    inline T atomicCAS(T* p, T expected, T v) { \
        __atomic_compare_exchange_n(p, &expected, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
        return expected; } \
    inline T atomicMax(T* p, T v) { T old = __atomic_load_n(p, __ATOMIC_RELAXED); \
        while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {} \
        return old; } \
    inline T atomicMin(T* p, T v) { T old = __atomic_load_n(p, __ATOMIC_RELAXED); \
        while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {} \
        return old; }
EMU_ATOMIC_INT(int)
EMU_ATOMIC_INT(unsigned int)
EMU_ATOMIC_INT(long long)
EMU_ATOMIC_INT(unsigned long long)
#undef EMU_ATOMIC_INT

// Other read-modify-writes: a compare-and-swap loop on the bits.
template <class T, class Op> inline T emu_atomic_rmw(T* p, Op op) {
    using U = typename std::conditional<sizeof(T) == 4, unsigned int, unsigned long long>::type;
    static_assert(sizeof(T) == sizeof(U), "emu atomics work on 4- and 8-byte values");
    U* q = reinterpret_cast<U*>(p);
    U old = __atomic_load_n(q, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(q, &old, emu_bit_cast<U>(op(emu_bit_cast<T>(old))), true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
    return emu_bit_cast<T>(old);
}
inline float atomicAdd(float* p, float v) { return emu_atomic_rmw(p, [v](float a) { return a + v; }); }
inline double atomicAdd(double* p, double v) { return emu_atomic_rmw(p, [v](double a) { return a + v; }); }
inline float atomicExch(float* p, float v) { return emu_atomic_rmw(p, [v](float) { return v; }); }
inline unsigned int atomicInc(unsigned int* p, unsigned int limit) {
    return emu_atomic_rmw(p, [limit](unsigned int a) { return a >= limit ? 0u : a + 1; });
}
inline unsigned int atomicDec(unsigned int* p, unsigned int limit) {
    return emu_atomic_rmw(p, [limit](unsigned int a) { return (a == 0 || a > limit) ? limit : a - 1; });
}


// =============================================================================================
// The interface to the runtime (emu_runtime.cpp), and the launch of one kernel.
#define EMU_API extern "C" __attribute__((visibility("default")))

// Set by the scheduler; the kernel modules see the runtime's copies. On a fiber switch the
// scheduler rewrites threadIdx, and the compiler reloads it after the (opaque) switch call.
EMU_API uint3 threadIdx, blockIdx;
EMU_API dim3 blockDim, gridDim;
constexpr int warpSize = 32;

namespace emu {
// Filled by microst/cuda.py (ctypes mirror: _EmuLaunch); keep the two in step.
struct Launch {
    uint32_t grid[3], block[3];
    uint64_t shared_bytes;  // dynamic shared memory
    uint64_t stack_bytes;   // per fiber
    uint64_t seed;          // for order == RANDOM
    int32_t order;          // FORWARD, REVERSE or RANDOM: blocks, and threads of a block
    int32_t nargs;
    const uint64_t* args;   // one 8-byte slot per kernel parameter (pointer or scalar bits)
    char* err;              // the error message, when the launcher returns nonzero
    uint64_t errlen;
};
enum Order { FORWARD = 0, REVERSE = 1, RANDOM = 2 };
enum Op {
    SYNCTHREADS, SYNCTHREADS_COUNT, SYNCTHREADS_AND, SYNCTHREADS_OR,
    SYNCWARP, SHFL, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, ANY, ALL,
    REDUCE_ADD, REDUCE_MIN, REDUCE_MAX, REDUCE_MIN_U, REDUCE_MAX_U, ACTIVEMASK,
    WMMA_LOAD, WMMA_STORE, WMMA_MMA,  // warp-collective over the full warp (include/mma.h)
};
struct SharedVar { volatile void* p; size_t n; };
}  // namespace emu

constexpr size_t EMU_MAX_DYNAMIC_SHARED = 227 * 1024;  // an H100 block's limit (with opt-in)
EMU_API unsigned char emu_dynamic_smem[EMU_MAX_DYNAMIC_SHARED];
EMU_API bool emu_in_fiber;  // a fiber runs (barriers and warp functions work only there)

// Take the process-wide launch lock and set up the launch; 0, or 1 with the message written
// (and the lock released).
EMU_API int emu_launch_begin(const emu::Launch* p, const char* kernel, int arity);
EMU_API void emu_launch_end();
EMU_API uint64_t emu_random();
EMU_API void emu_fill_shared(const emu::SharedVar* vars, int n);
EMU_API int emu_run_fibers(void (*thread_body)(), const emu::SharedVar* vars, const int* n);  // n grows
EMU_API int emu_barrier(int op, int pred, const char* file, int line);
EMU_API uint64_t emu_warp_op(int op, uint32_t mask, uint64_t value, int arg, int width, const char* file, int line);
EMU_API uint32_t emu_active_mask();
// A warp-collective call (WMMA): every lane of the full warp publishes `arg`; the last lane to
// arrive gets the 32 published pointers (lane order) and does the whole warp's work before any
// other lane runs again; the other lanes get null.
EMU_API const void* const* emu_warp_collective(int op, const void* arg, const char* file, int line);
// An error in the kernel's use of the emulation: the message (after "emu: kernel K, block B: "),
// then the launch stops, in fibers or in a plain loop.
EMU_API void emu_fail(const char* fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
// cp.async (include/cuda_pipeline.h): a per-thread queue of deferred copies.
EMU_API bool emu_async_used;  // this launch has issued a copy
EMU_API void emu_async_copy(void* dst, const void* src, size_t size, size_t zfill, bool dst_static_shared,
                            const char* file, int line);
EMU_API void emu_async_commit();
EMU_API void emu_async_wait(size_t prior);
EMU_API void emu_async_thread_end();  // a plain-loop thread returned: no copy may be pending
EMU_API void emu_report_not_in_fiber(int op, const char* file, int line);
// A plain-loop launch runs between these: a memory fault in it leaves through `escape`.
EMU_API void emu_plain_begin(sigjmp_buf* escape);
EMU_API void emu_plain_end();

namespace emu {
// A permutation of 0..n-1 in the launch's order; RANDOM walks a full-period LCG over the next
// power of two and skips values >= n, which needs no memory however many blocks there are.
struct Perm {
    uint64_t n, i = 0, x = 0, a = 1, c = 1, m = 1;
    int order;
    Perm(uint64_t n_, int order_) : n(n_), order(order_) {
        if (order != RANDOM) return;
        while (m < n) m <<= 1;
        a = (emu_random() << 2) | 1;  // a = 1 (mod 4) and c odd: full period modulo 2^k
        c = emu_random() | 1;
        x = emu_random() & (m - 1);
    }
    bool next(uint64_t& out) {
        if (order == FORWARD) { if (i >= n) return false; out = i++; return true; }
        if (order == REVERSE) { if (i >= n) return false; out = n - 1 - i++; return true; }
        while (i < m) {
            uint64_t v = x;
            x = (a * x + c) & (m - 1);
            ++i;
            if (v < n) { out = v; return true; }
        }
        return false;
    }
};
inline void set_block(uint64_t b) {
    blockIdx.x = (unsigned)(b % gridDim.x);
    blockIdx.y = (unsigned)(b / gridDim.x % gridDim.y);
    blockIdx.z = (unsigned)(b / ((uint64_t)gridDim.x * gridDim.y));
}
inline uint3 thread_index(uint32_t t) {
    return uint3{t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y)};
}

// This module's static __shared__ variables, registered when a block first reaches them.
constexpr int MAX_SHARED_VARS = 1024;
static SharedVar shared_vars[MAX_SHARED_VARS];
static int n_shared_vars;
struct SharedReg {
    SharedReg(volatile void* p, size_t n) {
        memset((void*)p, 0xFF, n);  // the first thread of the block just reached the declaration
        if (n_shared_vars < MAX_SHARED_VARS) shared_vars[n_shared_vars++] = SharedVar{p, n};
    }
};

static const uint64_t* kernel_args;
static sigjmp_buf plain_escape;  // where a plain-loop kernel that calls a barrier or faults leaves

// The kernel's arguments, from their 8-byte slots.
template <class T> inline T arg(const uint64_t* slot) {
    T v;
    memcpy(&v, slot, sizeof(T));
    return v;
}
template <auto K, class F = decltype(K)> struct Invoke;
template <auto K, class... P> struct Invoke<K, void (*)(P...)> {
    static constexpr int arity = sizeof...(P);
    template <size_t... I> static inline void call(const uint64_t* a, std::index_sequence<I...>) {
        K(arg<P>(a + I)...);
    }
    static void run() { call(kernel_args, std::index_sequence_for<P...>()); }
};

// A kernel without barriers or warp functions: its threads are a loop.
template <class Kernel> __attribute__((noinline)) void run_plain_blocks(const Launch* p) {
    Perm blocks((uint64_t)gridDim.x * gridDim.y * gridDim.z, p->order);
    const uint32_t nthreads = blockDim.x * blockDim.y * blockDim.z;
    uint64_t b, t;
    while (blocks.next(b)) {
        set_block(b);
        emu_fill_shared(shared_vars, n_shared_vars);
        if (p->order == FORWARD) {
            for (unsigned z = 0; z < blockDim.z; ++z)
                for (unsigned y = 0; y < blockDim.y; ++y)
                    for (unsigned x = 0; x < blockDim.x; ++x) {
                        threadIdx = uint3{x, y, z};
                        Kernel::run();
                        if (emu_async_used) emu_async_thread_end();
                    }
        } else {
            Perm threads(nthreads, p->order);
            while (threads.next(t)) {
                threadIdx = thread_index((uint32_t)t);
                Kernel::run();
                if (emu_async_used) emu_async_thread_end();
            }
        }
    }
}
template <class Kernel> inline int run_plain(const Launch* p) {
    if (sigsetjmp(plain_escape, 1)) {  // from not_in_fiber, or the runtime's SIGSEGV handler
        emu_plain_end();
        return 1;
    }
    emu_plain_begin(&plain_escape);
    run_plain_blocks<Kernel>(p);
    emu_plain_end();
    return 0;
}

template <auto K> int launch(const Launch* p, const char* name, bool use_fibers) {
    using Kernel = Invoke<K>;
    if (emu_launch_begin(p, name, Kernel::arity)) return 1;
    kernel_args = p->args;
    const int rc = use_fibers ? emu_run_fibers(&Kernel::run, shared_vars, &n_shared_vars) : run_plain<Kernel>(p);
    emu_launch_end();
    return rc;
}

// A barrier or warp function in a kernel that the source scan let run as a plain loop.
[[noreturn]] inline void not_in_fiber(int op, const char* file, int line) {
    emu_report_not_in_fiber(op, file, line);
    siglongjmp(plain_escape, 1);
}
template <class T> inline uint64_t bits(T v) {
    static_assert(sizeof(T) <= 8, "warp functions take values of up to 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}
inline int barrier(int op, int pred, const char* file, int line) {
    if (!emu_in_fiber) not_in_fiber(op, file, line);
    return emu_barrier(op, pred, file, line);
}
inline uint64_t warp_op(int op, uint32_t mask, uint64_t value, int arg, int width, const char* file, int line) {
    if (!emu_in_fiber) not_in_fiber(op, file, line);
    return emu_warp_op(op, mask, value, arg, width, file, line);
}
}  // namespace emu

#define EMU_LAUNCHER(kernel, use_fibers)                                                       \
    extern "C" __attribute__((visibility("default"))) int emu_launch_##kernel(const ::emu::Launch* p) { \
        return ::emu::launch<&kernel>(p, #kernel, use_fibers);                                 \
    }
// Registration of a static __shared__ variable (inserted after its declaration by cuda.py).
#define EMU_CAT2(a, b) a##b
#define EMU_CAT(a, b) EMU_CAT2(a, b)
#define EMU_SHARED_FILL(var) static ::emu::SharedReg EMU_CAT(emu_shared_reg_, __COUNTER__)(&(var), sizeof(var));

// ---------------------------------------------------------------------------------------------
// Barriers and warp functions. The defaulted file/line name the call site in error messages.
#define EMU_SITE const char* emu_file = __builtin_FILE(), int emu_line = __builtin_LINE()
inline void __syncthreads(EMU_SITE) { emu::barrier(emu::SYNCTHREADS, 0, emu_file, emu_line); }
inline int __syncthreads_count(int pred, EMU_SITE) {
    return emu::barrier(emu::SYNCTHREADS_COUNT, pred, emu_file, emu_line);
}
inline int __syncthreads_and(int pred, EMU_SITE) {
    return emu::barrier(emu::SYNCTHREADS_AND, pred, emu_file, emu_line);
}
inline int __syncthreads_or(int pred, EMU_SITE) {
    return emu::barrier(emu::SYNCTHREADS_OR, pred, emu_file, emu_line);
}
inline void __syncwarp(unsigned int mask = 0xffffffffu, EMU_SITE) {
    emu::warp_op(emu::SYNCWARP, mask, 0, 0, 32, emu_file, emu_line);
}
template <class T> inline T __shfl_sync(unsigned int mask, T var, int src_lane, int width = 32, EMU_SITE) {
    return emu::from_bits<T>(emu::warp_op(emu::SHFL, mask, emu::bits(var), src_lane, width, emu_file, emu_line));
}
template <class T> inline T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = 32, EMU_SITE) {
    return emu::from_bits<T>(emu::warp_op(emu::SHFL_UP, mask, emu::bits(var), (int)delta, width, emu_file, emu_line));
}
template <class T> inline T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = 32, EMU_SITE) {
    return emu::from_bits<T>(emu::warp_op(emu::SHFL_DOWN, mask, emu::bits(var), (int)delta, width, emu_file, emu_line));
}
template <class T> inline T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = 32, EMU_SITE) {
    return emu::from_bits<T>(emu::warp_op(emu::SHFL_XOR, mask, emu::bits(var), lane_mask, width, emu_file, emu_line));
}
inline unsigned int __ballot_sync(unsigned int mask, int pred, EMU_SITE) {
    return (unsigned int)emu::warp_op(emu::BALLOT, mask, pred != 0, 0, 32, emu_file, emu_line);
}
inline int __any_sync(unsigned int mask, int pred, EMU_SITE) {
    return (int)emu::warp_op(emu::ANY, mask, pred != 0, 0, 32, emu_file, emu_line);
}
inline int __all_sync(unsigned int mask, int pred, EMU_SITE) {
    return (int)emu::warp_op(emu::ALL, mask, pred != 0, 0, 32, emu_file, emu_line);
}
inline unsigned int __reduce_add_sync(unsigned int mask, unsigned int v, EMU_SITE) {
    return (unsigned int)emu::warp_op(emu::REDUCE_ADD, mask, v, 0, 32, emu_file, emu_line);
}
inline int __reduce_add_sync(unsigned int mask, int v, EMU_SITE) {
    return (int)emu::warp_op(emu::REDUCE_ADD, mask, (uint32_t)v, 0, 32, emu_file, emu_line);
}
inline int __reduce_min_sync(unsigned int mask, int v, EMU_SITE) {
    return (int)emu::warp_op(emu::REDUCE_MIN, mask, (uint32_t)v, 0, 32, emu_file, emu_line);
}
inline int __reduce_max_sync(unsigned int mask, int v, EMU_SITE) {
    return (int)emu::warp_op(emu::REDUCE_MAX, mask, (uint32_t)v, 0, 32, emu_file, emu_line);
}
inline unsigned int __reduce_min_sync(unsigned int mask, unsigned int v, EMU_SITE) {
    return (unsigned int)emu::warp_op(emu::REDUCE_MIN_U, mask, v, 0, 32, emu_file, emu_line);
}
inline unsigned int __reduce_max_sync(unsigned int mask, unsigned int v, EMU_SITE) {
    return (unsigned int)emu::warp_op(emu::REDUCE_MAX_U, mask, v, 0, 32, emu_file, emu_line);
}
// The lanes of the warp that have not exited (a GPU would give those on the same code path).
inline unsigned int __activemask() {
    if (!emu_in_fiber) emu::not_in_fiber(emu::ACTIVEMASK, __FILE__, __LINE__);
    return emu_active_mask();
}
#undef EMU_SITE
