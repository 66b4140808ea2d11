// Kernels without barriers: emu runs their threads as a plain loop.
#include "common.cuh"

extern "C" __global__ void saxpy(const float* __restrict__ x, float* __restrict__ y, float a, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = a * x[i] + y[i];
}

// 3-D grid of 3-D blocks: each element gets its coordinates.
extern "C" __global__ void coords(int* __restrict__ out, int nx, int ny, int nz) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int z = blockIdx.z * blockDim.z + threadIdx.z;
    if (x < nx && y < ny && z < nz) out[((size_t)z * ny + y) * nx + x] = x + 1000 * y + 1000000 * z;
}

extern "C" __global__ void scale_f64(const double* __restrict__ x, double* __restrict__ y, double a, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];
}

extern "C" __global__ void pack_scalars(double* out, int a, unsigned int b, float c, double d, long long e,
                                        unsigned long long f, bool g) {
    if (threadIdx.x != 0) return;
    out[0] = a; out[1] = b; out[2] = c; out[3] = d; out[4] = (double)e; out[5] = (double)f; out[6] = g;
}

// What the real kernels use: float4 loads, templates, constexpr, __ldg, math, min/max on ints.
extern "C" __global__ void features(const float4* __restrict__ x, float4* __restrict__ y, float* __restrict__ z,
                                    int n4, float alpha) {
    constexpr float coef[3] = {1.0f, 0.5f, 0.25f};
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    const float4 v = __ldg(&x[i]);
    float4 r;
    r.x = fmaxf(v.x, 0.0f) * alpha;
    r.y = tanhf(v.y) + expf(-fabsf(v.y));
    r.z = rsqrtf(fabsf(v.z) + 1.0f);
    r.w = horner<3>(coef, v.w) + (float)max(min(i, 7), 2);
    y[i] = r;
    float* o = z + 8 * i;
    o[0] = __expf(v.x * 0.1f);
    o[1] = logf(fabsf(v.y) + 1.0f);
    o[2] = powf(fabsf(v.z) + 1.0f, 1.5f);
    o[3] = __fdividef(v.w, 3.0f);
    o[4] = __frcp_rn(v.x + 10.0f);
    o[5] = fmaf(v.x, v.y, v.z);
    o[6] = __int_as_float(__float_as_int(v.w) ^ (int)0x80000000);  // -v.w
    o[7] = sqrtf(fabsf(v.x)) + fminf(v.y, v.z) + max(v.x, 0.25f);
}
