// pool v1, the first version of this family.
// Resampling (see ops/pool.py): max_pool2d, avg_pool2d (no padding, floor), nearest upsampling.
// Forward: one thread per output. Backward: one thread per input pixel gathering from the
// windows that contain it (deterministic, no atomics).
#include "common.cuh"

// The windows (size K, step S, OUT of them) that contain input coordinate c: [first, last].
__device__ __forceinline__ int first_window(int c, int K, int S) { return c < K ? 0 : (c - K) / S + 1; }
__device__ __forceinline__ int last_window(int c, int S, int OUT) { return min(OUT - 1, c / S); }

// argmax[o] = kernel tap i * KW + j of the first maximum (strictly greater wins), as in PyTorch.
extern "C" __global__ void max_pool_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                            int* __restrict__ argmax,
        int NC, int H, int W, int HO, int WO, int KH, int KW, int SH, int SW) {
    GRID_STRIDE_LOOP(o, NC * HO * WO) {
        const int ow = o % WO, oh = (o / WO) % HO, nc = o / (WO * HO);
        const float* window = x + (nc * H + oh * SH) * W + ow * SW;
        float best = window[0];
        int best_tap = 0;
        for (int i = 0; i < KH; ++i)
            for (int j = 0; j < KW; ++j)
                if (window[i * W + j] > best) {
                    best = window[i * W + j];
                    best_tap = i * KW + j;
                }
        y[o] = best;
        argmax[o] = best_tap;
    }
}

extern "C" __global__ void max_pool_backward_v1(const float* __restrict__ dy, const int* __restrict__ argmax,
                                             float* __restrict__ dx,
        int NC, int H, int W, int HO, int WO, int KH, int KW, int SH, int SW) {
    GRID_STRIDE_LOOP(i, NC * H * W) {
        const int w = i % W, h = (i / W) % H, nc = i / (W * H);
        float s = 0.0f;
        for (int oh = first_window(h, KH, SH); oh <= last_window(h, SH, HO); ++oh)
            for (int ow = first_window(w, KW, SW); ow <= last_window(w, SW, WO); ++ow) {
                const int o = (nc * HO + oh) * WO + ow;
                if (argmax[o] == (h - oh * SH) * KW + (w - ow * SW)) s += dy[o];
            }
        dx[i] = s;
    }
}

extern "C" __global__ void avg_pool_forward_v1(const float* __restrict__ x, float* __restrict__ y,
        int NC, int H, int W, int HO, int WO, int KH, int KW, int SH, int SW) {
    GRID_STRIDE_LOOP(o, NC * HO * WO) {
        const int ow = o % WO, oh = (o / WO) % HO, nc = o / (WO * HO);
        const float* window = x + (nc * H + oh * SH) * W + ow * SW;
        float s = 0.0f;
        for (int i = 0; i < KH; ++i)
            for (int j = 0; j < KW; ++j) s += window[i * W + j];
        y[o] = s / (KH * KW);
    }
}

extern "C" __global__ void avg_pool_backward_v1(const float* __restrict__ dy, float* __restrict__ dx,
        int NC, int H, int W, int HO, int WO, int KH, int KW, int SH, int SW) {
    GRID_STRIDE_LOOP(i, NC * H * W) {
        const int w = i % W, h = (i / W) % H, nc = i / (W * H);
        float s = 0.0f;
        for (int oh = first_window(h, KH, SH); oh <= last_window(h, SH, HO); ++oh)
            for (int ow = first_window(w, KW, SW); ow <= last_window(w, SW, WO); ++ow) s += dy[(nc * HO + oh) * WO + ow];
        dx[i] = s / (KH * KW);
    }
}

// y (NC, H*S, W*S): every input pixel becomes an S x S block.
extern "C" __global__ void upsample_nearest_forward_v1(const float* __restrict__ x, float* __restrict__ y,
                                                    int NC, int H, int W, int S) {
    const int WO = W * S, HO = H * S;
    GRID_STRIDE_LOOP(o, NC * HO * WO) {
        const int ow = o % WO, oh = (o / WO) % HO, nc = o / (WO * HO);
        y[o] = x[(nc * H + oh / S) * W + ow / S];
    }
}

extern "C" __global__ void upsample_nearest_backward_v1(const float* __restrict__ dy, float* __restrict__ dx,
                                                     int NC, int H, int W, int S) {
    const int WO = W * S;
    GRID_STRIDE_LOOP(i, NC * H * W) {
        const int w = i % W, h = (i / W) % H, nc = i / (W * H);
        const float* block = dy + (nc * H * S + h * S) * WO + w * S;
        float s = 0.0f;
        for (int a = 0; a < S; ++a)
            for (int b = 0; b < S; ++b) s += block[a * WO + b];
        dx[i] = s;
    }
}
