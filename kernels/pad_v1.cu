// pad v1, the first version of this family.
// pad on H and W: reflect (edge not repeated), replicate, constant (see ops/pad.py).
// Backward is a gather: each input pixel sums the output pixels that were copied from it.
#include "common.cuh"

enum { PAD_REFLECT = 0, PAD_REPLICATE = 1, PAD_CONSTANT = 2 };

// The input coordinate that output coordinate o (padded axis) reads, or -1 for a constant pad.
__device__ __forceinline__ int pad_source(int o, int before, int size, int mode) {
    int t = o - before;
    if (t >= 0 && t < size) return t;
    if (mode == PAD_CONSTANT) return -1;
    if (mode == PAD_REPLICATE) return t < 0 ? 0 : size - 1;
    return t < 0 ? -t : 2 * (size - 1) - t;
}

// Output coordinates that read input coordinate c: up to three ranges [lo, hi].
struct PadSources {
    int lo[3], hi[3], count;
    __device__ PadSources(int c, int before, int after, int size, int mode) : count(0) {
        int first = c + before, last = c + before;
        if (mode == PAD_REPLICATE) {
            if (c == 0) first = 0;
            if (c == size - 1) last = before + size - 1 + after;
        }
        add(first, last);
        if (mode == PAD_REFLECT) {
            if (c >= 1 && c <= before) add(before - c, before - c);
            if (c >= size - 1 - after && c <= size - 2) add(before + 2 * (size - 1) - c, before + 2 * (size - 1) - c);
        }
    }
    __device__ void add(int a, int b) { lo[count] = a; hi[count] = b; ++count; }
};

// grid-stride over the NC x HO x WO output; HO = H + top + bottom, WO = W + left + right.
extern "C" __global__ void pad_forward_v1(const float* __restrict__ x, float* __restrict__ y, int NC, int H, int W,
                                       int top, int bottom, int left, int right, int mode, float value) {
    const int HO = H + top + bottom, WO = W + left + right;
    GRID_STRIDE_LOOP(i, NC * HO * WO) {
        const int ow = i % WO, oh = (i / WO) % HO, nc = i / (WO * HO);
        const int h = pad_source(oh, top, H, mode), w = pad_source(ow, left, W, mode);
        y[i] = (h < 0 || w < 0) ? value : x[(nc * H + h) * W + w];
    }
}

// grid-stride over the NC x H x W input.
extern "C" __global__ void pad_backward_v1(const float* __restrict__ dy, float* __restrict__ dx, int NC, int H, int W,
                                        int top, int bottom, int left, int right, int mode) {
    const int HO = H + top + bottom, WO = W + left + right;
    GRID_STRIDE_LOOP(i, NC * H * W) {
        const int w = i % W, h = (i / W) % H, nc = i / (W * H);
        const PadSources rows(h, top, bottom, H, mode), cols(w, left, right, W, mode);
        const float* plane = dy + nc * HO * WO;
        float s = 0.0f;
        for (int a = 0; a < rows.count; ++a)
            for (int oh = rows.lo[a]; oh <= rows.hi[a]; ++oh)
                for (int b = 0; b < cols.count; ++b)
                    for (int ow = cols.lo[b]; ow <= cols.hi[b]; ++ow) s += plane[oh * WO + ow];
        dx[i] = s;
    }
}
