// arith v1, the first version of this family.
// Tensor arithmetic (see ops/arith.py). Shapes are padded to 4 dimensions by the launcher;
// strides are in elements and may be 0 (broadcasting) or negative (reversed slices).
#include "common.cuh"

struct Index4 {  // coordinates of element i of a contiguous d0 x d1 x d2 x d3 array
    int c0, c1, c2, c3;
    __device__ Index4(int i, int d1, int d2, int d3) {
        c3 = i % d3; i /= d3;
        c2 = i % d2; i /= d2;
        c1 = i % d1; c0 = i / d1;
    }
    __device__ __forceinline__ int offset(int s0, int s1, int s2, int s3) const {
        return c0 * s0 + c1 * s1 + c2 * s2 + c3 * s3;
    }
};

enum { OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3, OP_POW = 4 };

__device__ __forceinline__ float apply_op(int op, float a, float b) {
    switch (op) {
        case OP_ADD: return a + b;
        case OP_SUB: return a - b;
        case OP_MUL: return a * b;
        case OP_DIV: return a / b;
        default: return powf(a, b);
    }
}

// y = a op b, y contiguous of shape (d0, d1, d2, d3); a and b read through broadcast strides.
extern "C" __global__ void binary_forward_v1(const float* __restrict__ a, const float* __restrict__ b,
                                          float* __restrict__ y, int op, int d0, int d1, int d2, int d3,
                                          int as0, int as1, int as2, int as3, int bs0, int bs1, int bs2, int bs3) {
    GRID_STRIDE_LOOP(i, d0 * d1 * d2 * d3) {
        const Index4 c(i, d1, d2, d3);
        y[i] = apply_op(op, a[c.offset(as0, as1, as2, as3)], b[c.offset(bs0, bs1, bs2, bs3)]);
    }
}

// y = x op c for a scalar c (op ADD, MUL or POW).
extern "C" __global__ void scalar_forward_v1(const float* __restrict__ x, float* __restrict__ y, int n, int op, float c) {
    GRID_STRIDE_LOOP(i, n) y[i] = apply_op(op, x[i], c);
}

// dx = dy * p * x^(p - 1): the backward of x ** p.
extern "C" __global__ void pow_backward_v1(const float* __restrict__ x, const float* __restrict__ dy,
                                        float* __restrict__ dx, int n, float p) {
    GRID_STRIDE_LOOP(i, n) dx[i] = dy[i] * p * powf(x[i], p - 1.0f);
}

// y[o] = scale * sum of x over the reduced coordinates: output o enumerates the kept sizes
// (k0..k3, input strides ks*), each block sums the reduced sizes (r0..r3, strides rs*) with a
// block-wide reduction. grid = any, block 256.
extern "C" __global__ void __launch_bounds__(256)
reduce_sum_v1(const float* __restrict__ x, float* __restrict__ y, float scale,
           int k0, int k1, int k2, int k3, int ks0, int ks1, int ks2, int ks3,
           int r0, int r1, int r2, int r3, int rs0, int rs1, int rs2, int rs3) {
    __shared__ float scratch[32];
    const int outputs = k0 * k1 * k2 * k3, reduced = r0 * r1 * r2 * r3;
    for (int o = blockIdx.x; o < outputs; o += gridDim.x) {
        const int base = Index4(o, k1, k2, k3).offset(ks0, ks1, ks2, ks3);
        float s = 0.0f;
        for (int r = threadIdx.x; r < reduced; r += blockDim.x) s += x[base + Index4(r, r1, r2, r3).offset(rs0, rs1, rs2, rs3)];
        s = block_sum(s, scratch);
        if (threadIdx.x == 0) y[o] = s * scale;
    }
}

// dst[dst_offset + coordinates . dst strides] = src[src_offset + coordinates . src strides] for
// every coordinate of a (d0, d1, d2, d3) box: slicing, its backward, and cat.
extern "C" __global__ void strided_copy_v1(const float* __restrict__ src, float* __restrict__ dst,
                                        int d0, int d1, int d2, int d3,
                                        int ss0, int ss1, int ss2, int ss3, int src_offset,
                                        int ds0, int ds1, int ds2, int ds3, int dst_offset) {
    GRID_STRIDE_LOOP(i, d0 * d1 * d2 * d3) {
        const Index4 c(i, d1, d2, d3);
        dst[dst_offset + c.offset(ds0, ds1, ds2, ds3)] = src[src_offset + c.offset(ss0, ss1, ss2, ss3)];
    }
}
