// emu_float16.h: __half (<cuda_fp16.h>) and __nv_bfloat16 (<cuda_bf16.h>) for microst's emu device.
//
// Both are 16 bits of storage. Conversions from float round to nearest, ties to even (like
// __float2half / __float2bfloat16 on the GPU), with overflow to infinity and half's subnormals;
// a NaN becomes the canonical 0x7fff. They work on the bits, so the CPU's flush-to-zero mode
// during a launch does not change them. Arithmetic converts to float, computes, and rounds back:
// that is the correctly rounded result for + - * / (float has more than 2p+2 bits for both).
// Not here: the other intrinsics of the CUDA headers (__hfma, __hmax, h2 arithmetic, ...).
#pragma once
#ifndef MICROST_EMU
#error "kernels/emu/include holds emu's stand-ins for CUDA headers: only the emu build uses it"
#endif

namespace emu_f16 {
inline unsigned short float_to_half_rn(float f) {
    const uint32_t x = __float_as_uint(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return 0x7fffu;                      // NaN
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520 (or inf): inf
    if (ax <= 0x33000000u) return (unsigned short)sign;        // <= 2^-25: zero (2^-25 ties to even)
    if (ax < 0x38800000u) {                                    // below 2^-14: a subnormal half
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u, shift = 126 - (ax >> 23);
        uint32_t q = m >> shift;
        const uint32_t rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        q += rest > half || (rest == half && (q & 1));
        return (unsigned short)(sign | q);
    }
    const uint32_t r = ax - (112u << 23);                      // exponent bias 127 -> 15
    return (unsigned short)(sign | ((r + 0xfffu + ((r >> 13) & 1)) >> 13));
}
inline float half_to_float(unsigned short h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    if (e) return __uint_as_float(sign | ((e + 112) << 23) | (m << 13));
    if (!m) return __uint_as_float(sign);
    uint32_t fe = 113;                                         // a subnormal half is a normal float
    while (!(m & 0x400u)) { m <<= 1; --fe; }
    return __uint_as_float(sign | (fe << 23) | ((m & 0x3ffu) << 13));
}
inline unsigned short float_to_bf16_rn(float f) {
    const uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;       // NaN
    return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}
inline unsigned short float_to_bf16_rz(float f) {
    const uint32_t x = __float_as_uint(f);
    return (x & 0x7fffffffu) > 0x7f800000u ? 0x7fffu : (unsigned short)(x >> 16);
}
inline float bf16_to_float(unsigned short b) { return __uint_as_float((uint32_t)b << 16); }
}  // namespace emu_f16

// One 16-bit type T (raw struct RAW, pair T2) converting with TO / FROM.
#define EMU_F16_TYPE(T, RAW, T2, TO, FROM)                                                             \
    struct RAW { unsigned short x; };                                                                 \
    struct T {                                                                                        \
        unsigned short __x;                                                                           \
        T() = default;                                                                                \
        constexpr T(const RAW& r) : __x(r.x) {}                                                       \
        T(float f) : __x(emu_f16::TO(f)) {}                                                           \
        T(double d) : __x(emu_f16::TO((float)d)) {}                                                   \
        template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>         \
        T(I i) : __x(emu_f16::TO((float)i)) {}                                                        \
        T& operator=(const RAW& r) { __x = r.x; return *this; }                                       \
        T& operator=(float f) { __x = emu_f16::TO(f); return *this; }                                 \
        operator float() const { return emu_f16::FROM(__x); }                                         \
        operator RAW() const { return RAW{__x}; }                                                     \
    };                                                                                                \
    inline T operator+(const T& a, const T& b) { return T((float)a + (float)b); }                     \
    inline T operator-(const T& a, const T& b) { return T((float)a - (float)b); }                     \
    inline T operator*(const T& a, const T& b) { return T((float)a * (float)b); }                     \
    inline T operator/(const T& a, const T& b) { return T((float)a / (float)b); }                     \
    inline T operator-(const T& a) { return T(RAW{(unsigned short)(a.__x ^ 0x8000u)}); }              \
    inline T operator+(const T& a) { return a; }                                                      \
    inline T& operator+=(T& a, const T& b) { return a = a + b; }                                      \
    inline T& operator-=(T& a, const T& b) { return a = a - b; }                                      \
    inline T& operator*=(T& a, const T& b) { return a = a * b; }                                      \
    inline T& operator/=(T& a, const T& b) { return a = a / b; }                                      \
    inline bool operator==(const T& a, const T& b) { return (float)a == (float)b; }                   \
    inline bool operator!=(const T& a, const T& b) { return (float)a != (float)b; }                   \
    inline bool operator<(const T& a, const T& b) { return (float)a < (float)b; }                     \
    inline bool operator>(const T& a, const T& b) { return (float)a > (float)b; }                     \
    inline bool operator<=(const T& a, const T& b) { return (float)a <= (float)b; }                   \
    inline bool operator>=(const T& a, const T& b) { return (float)a >= (float)b; }                   \
    inline T __hadd(const T& a, const T& b) { return a + b; }                                         \
    inline T __hsub(const T& a, const T& b) { return a - b; }                                         \
    inline T __hmul(const T& a, const T& b) { return a * b; }                                         \
    inline T __hdiv(const T& a, const T& b) { return a / b; }                                         \
    inline T __hneg(const T& a) { return -a; }                                                        \
    struct __attribute__((aligned(4))) T2 {                                                           \
        T x, y;                                                                                       \
        T2() = default;                                                                               \
        constexpr T2(const T& a, const T& b) : x(a), y(b) {}                                          \
    };                                                                                                \
    inline float __low2float(const T2& v) { return (float)v.x; }                                      \
    inline float __high2float(const T2& v) { return (float)v.y; }

EMU_F16_TYPE(__half, __half_raw, __half2, float_to_half_rn, half_to_float)
EMU_F16_TYPE(__nv_bfloat16, __nv_bfloat16_raw, __nv_bfloat162, float_to_bf16_rn, bf16_to_float)
#undef EMU_F16_TYPE

typedef __half half;
typedef __half2 half2;
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

// cuda_fp16.h
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return (float)h; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half(__half_raw{u}); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2(__half(a), __half(b)); }
inline __half2 __float2half2_rn(float a) { return __half2(__half(a), __half(a)); }
inline __half2 __halves2half2(__half a, __half b) { return __half2(a, b); }
inline __half2 make_half2(__half a, __half b) { return __half2(a, b); }
inline float2 __half22float2(__half2 v) { return float2{(float)v.x, (float)v.y}; }
inline __half __low2half(__half2 v) { return v.x; }
inline __half __high2half(__half2 v) { return v.y; }

// cuda_bf16.h
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) {
    return __nv_bfloat16(__nv_bfloat16_raw{emu_f16::float_to_bf16_rz(f)});
}
inline float __bfloat162float(__nv_bfloat16 b) { return (float)b; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16(__nv_bfloat16_raw{u}); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162(__nv_bfloat16(a), __nv_bfloat16(b));
}
inline __nv_bfloat162 __float2bfloat162_rn(float a) { return __nv_bfloat162(__nv_bfloat16(a), __nv_bfloat16(a)); }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
inline __nv_bfloat162 make_bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return __nv_bfloat162(a, b); }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{(float)v.x, (float)v.y}; }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 v) { return v.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 v) { return v.y; }
