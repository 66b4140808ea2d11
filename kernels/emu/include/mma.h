// mma.h: the WMMA API (namespace nvcuda::wmma) for microst's emu device, on the CPU.
//
// What there is: fragment<Use, M, N, K, T, Layout> with num_elements and x[]; fill_fragment,
// load_matrix_sync, store_matrix_sync, mma_sync; __float_to_tf32. Shapes and types: TF32
// m16n16k8 (a and b store float), BF16 (__nv_bfloat16) and FP16 (__half) m16n16k16, m32n8k16 and
// m8n32k16; a and b row_major or col_major; accumulators float only. Not here: half or int
// accumulators, int8/int4/b1 fragments, double (m8n8k4).
//
// Semantics, so that a NumPy reference rounded the same way can match emu exactly:
// - Layout: which matrix element element x[i] of lane l holds is unspecified on the GPU, so emu
//   uses a fixed pseudo-random bijection per fragment kind (Use, shape, type), not the GPU's.
//   Code that assumes a layout (writes x[i] as "row lane/4") gives wrong results here; element-wise
//   work on every x[i] (scaling, conversion, x[i] of two fragments of the same type) stays right.
//   num_elements = rows * cols / 32 (the GPU may hold some elements twice, emu never).
// - A new fragment holds NaN (0xFF bytes): an accumulator used before fill_fragment or
//   load_matrix_sync shows it.
// - load_matrix_sync, store_matrix_sync and mma_sync are warp-collective: the 32 lanes of a full
//   warp must call them, with the same pointer, ldm and layout; the pointer 256-bit (32-byte)
//   aligned and ldm a multiple of 16 bytes, as CUDA requires. Anything else is an error that names
//   the call site (lanes that never arrive: a deadlock report). They synchronise the warp.
// - __float_to_tf32 rounds to nearest, ties away from zero (cvt.rna.tf32.f32): an fp32 whose low 13
//   mantissa bits are zero. A tf32 fragment holds what was loaded, and x[i] shows it; mma_sync
//   reads an element that was not converted without its low 13 bits: emu truncates them (toward
//   zero), where the GPU's tensor cores are said to ignore them. Convert, to know what you get.
// - BF16 and FP16 elements are what __float2bfloat16 / __float2half made (round to nearest even).
// - mma_sync: D = C + A B with every product exact in fp32 (tf32, bf16 and fp16 products fit) and
//   the sum in fp32, round to nearest even, in k order starting from c: d[r][c] = ((c + a0 b0) +
//   a1 b1) + ... (subnormals flush to zero, as in every emu launch). A tensor core sums in another
//   order and rounding, so compare GPU results with a tolerance, emu results exactly.
#pragma once
#ifndef MICROST_EMU
#error "kernels/emu/include holds emu's stand-ins for CUDA headers: only the emu build uses it"
#endif
#include "emu_float16.h"

namespace nvcuda {
namespace wmma {
struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };
template <class Use, int M, int N, int K, class T, class Layout = void> class fragment;

inline float __float_to_tf32(float in) {
    const uint32_t b = __float_as_uint(in);
    if ((b & 0x7f800000u) == 0x7f800000u)  // inf stays inf; a NaN stays a (quiet) NaN
        return (b & 0x7fffffu) ? __uint_as_float((b | 0x400000u) & 0xffffe000u) : in;
    return __uint_as_float((b + 0x1000u) & 0xffffe000u);  // half an ulp up in magnitude, then truncate
}
}  // namespace wmma
}  // namespace nvcuda

namespace emu_wmma {
namespace w = nvcuda::wmma;

// The matrix a fragment holds: a is M x K, b is K x N, the accumulator M x N.
template <class Use, int M, int N, int K> struct Shape;
template <int M, int N, int K> struct Shape<w::matrix_a, M, N, K> { enum { rows = M, cols = K, use = 1 }; };
template <int M, int N, int K> struct Shape<w::matrix_b, M, N, K> { enum { rows = K, cols = N, use = 2 }; };
template <int M, int N, int K> struct Shape<w::accumulator, M, N, K> { enum { rows = M, cols = N, use = 3 }; };

template <class T> struct Storage { using type = T; enum { code = 1 }; };
template <> struct Storage<w::precision::tf32> { using type = float; enum { code = 2 }; };
template <> struct Storage<__half> { using type = __half; enum { code = 3 }; };
template <> struct Storage<__nv_bfloat16> { using type = __nv_bfloat16; enum { code = 4 }; };

template <class Use, int M, int N, int K, class T, class Layout> constexpr bool supported() {
    const bool f16_shape = K == 16 && ((M == 16 && N == 16) || (M == 32 && N == 8) || (M == 8 && N == 32));
    const bool tf32_shape = M == 16 && N == 16 && K == 8;
    if (std::is_same<Use, w::accumulator>::value)
        return std::is_same<T, float>::value && std::is_void<Layout>::value && (f16_shape || tf32_shape);
    if (!std::is_same<Layout, w::row_major>::value && !std::is_same<Layout, w::col_major>::value) return false;
    if (std::is_same<T, w::precision::tf32>::value) return tf32_shape;
    return (std::is_same<T, __half>::value || std::is_same<T, __nv_bfloat16>::value) && f16_shape;
}

// The emulated layout: element i of lane l is the matrix element pos[l * per_lane + i] (= row *
// cols + col), a Fisher-Yates shuffle drawn with splitmix64 from a seed per fragment kind.
template <int n> struct PosTable { unsigned short pos[n]; };
template <int n> constexpr PosTable<n> scramble(uint64_t seed) {
    PosTable<n> t{};
    for (int j = 0; j < n; ++j) t.pos[j] = (unsigned short)j;
    for (int j = n - 1; j > 0; --j) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        const int k = (int)((z ^ (z >> 31)) % (uint64_t)(j + 1));
        const unsigned short v = t.pos[j];
        t.pos[j] = t.pos[k];
        t.pos[k] = v;
    }
    return t;
}

template <class Frag> struct Traits;
template <class Use, int M, int N, int K, class T, class Layout> struct Traits<w::fragment<Use, M, N, K, T, Layout>> {
    using S = typename Storage<T>::type;
    enum { rows = Shape<Use, M, N, K>::rows, cols = Shape<Use, M, N, K>::cols, n = rows * cols, per_lane = n / 32 };
    static constexpr bool col_major = std::is_same<Layout, w::col_major>::value;
    // An element as mma_sync reads it: tf32 without its low 13 bits (a NaN stays a NaN).
    static float read(S v) {
        if constexpr (std::is_same<T, w::precision::tf32>::value) {
            const uint32_t b = __float_as_uint(v);
            return ((b & 0x7f800000u) == 0x7f800000u) ? v : __uint_as_float(b & 0xffffe000u);
        } else {
            return (float)v;
        }
    }
    // Every fragment type its own layout: only two fragments of one type are known to match.
    static constexpr PosTable<n> table = scramble<n>(((uint64_t)Shape<Use, M, N, K>::use << 32) + M * 10000 + N * 100 +
                                                     K + Storage<T>::code * 1000000 + col_major * 10000000);
};

template <class T> struct Tag { static constexpr char id = 0; };  // &Tag<T>::id names the type T

// What one lane passes to a collective call.
struct Call {
    const void* kind;  // the fragment type(s)
    void* frag;        // load: the destination; store: the source; mma: d
    const void *a, *b, *c, *ptr;
    unsigned ldm;
    int layout;
    const char* file;
    int line;
};
inline unsigned warp_of_thread() { return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) / 32; }

// The 32 lanes' calls to the last lane to arrive, which does the warp's work; null to the others.
inline const Call* const* collective(int op, const Call& mine) {
    if (!emu_in_fiber) emu::not_in_fiber(op, mine.file, mine.line);
    return reinterpret_cast<const Call* const*>(emu_warp_collective(op, &mine, mine.file, mine.line));
}

inline const char* layout_name(int layout) { return layout == w::mem_col_major ? "mem_col_major" : "mem_row_major"; }

// Every lane passed what lane 0 did; the pointer and ldm are as aligned as CUDA requires.
inline void check_memory_call(const char* what, const Call* const* lanes, size_t elem) {
    const Call& c0 = *lanes[0];
    for (int l = 1; l < 32; ++l) {
        const Call& c = *lanes[l];
        if (c.kind != c0.kind || c.ptr != c0.ptr || c.ldm != c0.ldm || c.layout != c0.layout) {
            emu_fail("warp %u: wmma::%s: lane %d (%s:%d) passed %p, ldm %u, %s%s and lane 0 (%s:%d) %p, ldm %u, %s: "
                     "every lane of the warp must pass the same fragment type, pointer, ldm and layout",
                     warp_of_thread(), what, l, c.file, c.line, c.ptr, c.ldm, layout_name(c.layout),
                     c.kind != c0.kind ? " (another fragment type)" : "", c0.file, c0.line, c0.ptr, c0.ldm,
                     layout_name(c0.layout));
        }
    }
    if (reinterpret_cast<uintptr_t>(c0.ptr) % 32 || (c0.ldm * elem) % 16) {
        emu_fail("warp %u: wmma::%s (%s:%d): pointer %p, ldm %u: the pointer must be 256-bit (32-byte) aligned and "
                 "ldm a multiple of 16 bytes (%zu elements)", warp_of_thread(), what, c0.file, c0.line, c0.ptr,
                 c0.ldm, 16 / elem);
    }
}

// Element (row, col) of a matrix in memory.
inline size_t offset(int row, int col, unsigned ldm, bool col_major) {
    return col_major ? (size_t)col * ldm + row : (size_t)row * ldm + col;
}

template <class Frag, class S>
void load(Frag& f, const S* p, unsigned ldm, bool col_major, const char* file, int line) {
    using Tr = Traits<Frag>;
    const Call mine{&Tag<Frag>::id, &f, nullptr, nullptr, nullptr, p, ldm, col_major, file, line};
    const Call* const* lanes = collective(emu::WMMA_LOAD, mine);
    if (!lanes) return;
    check_memory_call("load_matrix_sync", lanes, sizeof(S));
    for (int l = 0; l < 32; ++l) {
        Frag& g = *static_cast<Frag*>(lanes[l]->frag);
        for (int i = 0; i < Tr::per_lane; ++i) {
            const int pos = Tr::table.pos[l * Tr::per_lane + i];
            g.x[i] = p[offset(pos / Tr::cols, pos % Tr::cols, ldm, col_major)];
        }
    }
}

// The matrix of a fragment kind from the 32 lanes' fragments (dense, row-major).
template <class Frag, class Get> void gather(float* dense, const Call* const* lanes, Get get) {
    using Tr = Traits<Frag>;
    for (int l = 0; l < 32; ++l) {
        const Frag& g = *static_cast<const Frag*>(get(*lanes[l]));
        for (int i = 0; i < Tr::per_lane; ++i) dense[Tr::table.pos[l * Tr::per_lane + i]] = Tr::read(g.x[i]);
    }
}
}  // namespace emu_wmma

namespace nvcuda {
namespace wmma {
template <class Use, int M, int N, int K, class T, class Layout> class fragment {
    static_assert(emu_wmma::supported<Use, M, N, K, T, Layout>(),
                  "emu (kernels/emu/include/mma.h) has the WMMA fragments of TF32 m16n16k8 and BF16/FP16 m16n16k16, "
                  "m32n8k16, m8n32k16, a and b row_major or col_major, with float accumulators");

  public:
    using element_type = T;
    using storage_element_type = typename emu_wmma::Storage<T>::type;
    enum { num_elements = emu_wmma::Shape<Use, M, N, K>::rows * emu_wmma::Shape<Use, M, N, K>::cols / 32,
           num_storage_elements = num_elements };
    storage_element_type x[num_elements];
    fragment() { memset((void*)x, 0xff, sizeof x); }  // NaN until filled or loaded
};

template <class Use, int M, int N, int K, class T, class Layout>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const typename emu_wmma::Storage<T>::type& v) {
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

// matrix_a and matrix_b: the layout is the fragment's.
template <class Use, int M, int N, int K, class T, class Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const typename emu_wmma::Storage<T>::type* p,
                             unsigned ldm, const char* emu_file = __builtin_FILE(), int emu_line = __builtin_LINE()) {
    static_assert(!std::is_same<Use, accumulator>::value,
                  "load_matrix_sync of an accumulator takes a layout_t (mem_row_major or mem_col_major)");
    emu_wmma::load(f, p, ldm, std::is_same<Layout, col_major>::value, emu_file, emu_line);
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t layout,
                             const char* emu_file = __builtin_FILE(), int emu_line = __builtin_LINE()) {
    emu_wmma::load(f, p, ldm, layout == mem_col_major, emu_file, emu_line);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout,
                              const char* emu_file = __builtin_FILE(), int emu_line = __builtin_LINE()) {
    using Frag = fragment<accumulator, M, N, K, float>;
    using Tr = emu_wmma::Traits<Frag>;
    const emu_wmma::Call mine{&emu_wmma::Tag<Frag>::id, (void*)&f, nullptr, nullptr, nullptr, p, ldm,
                              layout == mem_col_major, emu_file, emu_line};
    const emu_wmma::Call* const* lanes = emu_wmma::collective(emu::WMMA_STORE, mine);
    if (!lanes) return;
    emu_wmma::check_memory_call("store_matrix_sync", lanes, sizeof(float));
    for (int l = 0; l < 32; ++l) {
        const Frag& g = *static_cast<const Frag*>(lanes[l]->frag);
        for (int i = 0; i < Tr::per_lane; ++i) {
            const int pos = Tr::table.pos[l * Tr::per_lane + i];
            p[emu_wmma::offset(pos / Tr::cols, pos % Tr::cols, ldm, layout == mem_col_major)] = g.x[i];
        }
    }
}

// d = c + a b (d may be c).
template <int M, int N, int K, class T, class LA, class LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
                     const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c,
                     const char* emu_file = __builtin_FILE(), int emu_line = __builtin_LINE()) {
    using A = fragment<matrix_a, M, N, K, T, LA>;
    using B = fragment<matrix_b, M, N, K, T, LB>;
    using C = fragment<accumulator, M, N, K, float>;
    using Tr = emu_wmma::Traits<C>;
    struct Kind;  // this combination of fragment types
    const emu_wmma::Call mine{&emu_wmma::Tag<Kind>::id, &d, &a, &b, &c, nullptr, 0, 0, emu_file, emu_line};
    const emu_wmma::Call* const* lanes = emu_wmma::collective(emu::WMMA_MMA, mine);
    if (!lanes) return;
    for (int l = 1; l < 32; ++l) {
        if (lanes[l]->kind != lanes[0]->kind) {
            emu_fail("warp %u: wmma::mma_sync: lane %d (%s:%d) and lane 0 (%s:%d) passed fragments of different types",
                     emu_wmma::warp_of_thread(), l, lanes[l]->file, lanes[l]->line, lanes[0]->file, lanes[0]->line);
        }
    }
    float da[M * K], db[K * N], dc[M * N];
    emu_wmma::gather<A>(da, lanes, [](const emu_wmma::Call& x) { return x.a; });
    emu_wmma::gather<B>(db, lanes, [](const emu_wmma::Call& x) { return x.b; });
    emu_wmma::gather<C>(dc, lanes, [](const emu_wmma::Call& x) { return x.c; });
    for (int r = 0; r < M; ++r) {  // each d[r][col] in k order; the loop over col vectorises
        for (int k = 0; k < K; ++k) {
            const float ark = da[r * K + k];
            for (int col = 0; col < N; ++col) dc[r * N + col] += ark * db[k * N + col];  // exact products
        }
    }
    for (int l = 0; l < 32; ++l) {
        C& g = *static_cast<C*>(lanes[l]->frag);
        for (int i = 0; i < Tr::per_lane; ++i) g.x[i] = dc[Tr::table.pos[l * Tr::per_lane + i]];
    }
}
}  // namespace wmma
}  // namespace nvcuda
