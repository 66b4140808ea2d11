// activation v1, the first version of this family.
// Pointwise nonlinearities (see ops/activation.py). One thread per element, grid-stride loops.
// Backward passes read what forward saved: relu, tanh and sigmoid their output y, leaky_relu its input x.
#include "common.cuh"

extern "C" __global__ void relu_forward_v1(const float* __restrict__ x, float* __restrict__ y, int n) {
    GRID_STRIDE_LOOP(i, n) y[i] = fmaxf(x[i], 0.0f);
}

extern "C" __global__ void relu_backward_v1(const float* __restrict__ y, const float* __restrict__ dy,
                                         float* __restrict__ dx, int n) {
    GRID_STRIDE_LOOP(i, n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

extern "C" __global__ void leaky_relu_forward_v1(const float* __restrict__ x, float* __restrict__ y, int n, float slope) {
    GRID_STRIDE_LOOP(i, n) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}

extern "C" __global__ void leaky_relu_backward_v1(const float* __restrict__ x, const float* __restrict__ dy,
                                               float* __restrict__ dx, int n, float slope) {
    GRID_STRIDE_LOOP(i, n) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
}

extern "C" __global__ void tanh_forward_v1(const float* __restrict__ x, float* __restrict__ y, int n) {
    GRID_STRIDE_LOOP(i, n) y[i] = tanhf(x[i]);
}

extern "C" __global__ void tanh_backward_v1(const float* __restrict__ y, const float* __restrict__ dy,
                                         float* __restrict__ dx, int n) {
    GRID_STRIDE_LOOP(i, n) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

extern "C" __global__ void sigmoid_forward_v1(const float* __restrict__ x, float* __restrict__ y, int n) {
    GRID_STRIDE_LOOP(i, n) {
        const float e = expf(-fabsf(x[i]));  // exp of a non-positive number: never overflows
        y[i] = x[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

extern "C" __global__ void sigmoid_backward_v1(const float* __restrict__ y, const float* __restrict__ dy,
                                            float* __restrict__ dx, int n) {
    GRID_STRIDE_LOOP(i, n) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}
