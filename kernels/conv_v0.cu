// conv v0: the three passes of conv2d as plain loops, one thread per output element.
//
// The starting point for reading (see ops/conv.py for the story, and conv_v1.cu for the tiled
// version): no shared memory, no tiles, every thread walks the whole reduction of its own
// output element straight from global memory. Correct for every stride, padding and kernel
// size, deterministic (no atomics: each output is written by one thread), and slow: each input
// element is read once per output element that uses it.
//
//   forward          y[n,co,oh,ow]  = bias[co] + sum_{ci,i,j} w[co,ci,i,j] * x[n,ci, oh*SH-PH+i, ow*SW-PW+j]
//   backward-data    dx[n,ci,ih,iw] = sum_{co,i,j} w[co,ci,i,j] * dy[n,co,(ih+PH-i)/SH,(iw+PW-j)/SW]
//                    over the taps where ih+PH-i and iw+PW-j are multiples of the stride (a gather)
//   backward-weight  dw[co,ci,i,j]  = sum_{n,oh,ow} dy[n,co,oh,ow] * x[n,ci, oh*SH-PH+i, ow*SW-PW+j]
// Reads outside the input are the zero padding.
#include "common.cuh"

// grid-stride over N*Cout*HO*WO outputs. has_bias = 0: bias points at any array and is not read.
extern "C" __global__ void conv2d_forward_v0(const float* __restrict__ x, const float* __restrict__ w,
                                             const float* __restrict__ bias, float* __restrict__ y, int has_bias,
                                             
        int N, int Cin, int H, int W, int Cout, int KH, int KW, int SH, int SW, int PH, int PW, int HO, int WO) {
    GRID_STRIDE_LOOP(o, N * Cout * HO * WO) {
        const int ow = o % WO, oh = (o / WO) % HO, co = (o / (WO * HO)) % Cout, n = o / (WO * HO * Cout);
        float s = has_bias ? bias[co] : 0.0f;
        for (int ci = 0; ci < Cin; ++ci)
            for (int i = 0; i < KH; ++i) {
                const int ih = oh * SH - PH + i;
                if (ih < 0 || ih >= H) continue;
                for (int j = 0; j < KW; ++j) {
                    const int iw = ow * SW - PW + j;
                    if (iw < 0 || iw >= W) continue;
                    s += w[((co * Cin + ci) * KH + i) * KW + j] * x[((n * Cin + ci) * H + ih) * W + iw];
                }
            }
        y[o] = s;
    }
}

// grid-stride over N*Cin*H*W input pixels.
extern "C" __global__ void conv2d_backward_data_v0(const float* __restrict__ dy, const float* __restrict__ w,
                                                   float* __restrict__ dx, 
        int N, int Cin, int H, int W, int Cout, int KH, int KW, int SH, int SW, int PH, int PW, int HO, int WO) {
    GRID_STRIDE_LOOP(e, N * Cin * H * W) {
        const int iw = e % W, ih = (e / W) % H, ci = (e / (W * H)) % Cin, n = e / (W * H * Cin);
        float s = 0.0f;
        for (int co = 0; co < Cout; ++co)
            for (int i = 0; i < KH; ++i) {
                const int th = ih + PH - i;  // = oh * SH when output row oh read this pixel with tap i
                if (th < 0 || th % SH || th / SH >= HO) continue;
                for (int j = 0; j < KW; ++j) {
                    const int tw = iw + PW - j;
                    if (tw < 0 || tw % SW || tw / SW >= WO) continue;
                    s += w[((co * Cin + ci) * KH + i) * KW + j] * dy[((n * Cout + co) * HO + th / SH) * WO + tw / SW];
                }
            }
        dx[e] = s;
    }
}

// grid-stride over Cout*Cin*KH*KW weights.
extern "C" __global__ void conv2d_backward_weight_v0(const float* __restrict__ dy, const float* __restrict__ x,
                                                     float* __restrict__ dw, 
        int N, int Cin, int H, int W, int Cout, int KH, int KW, int SH, int SW, int PH, int PW, int HO, int WO) {
    GRID_STRIDE_LOOP(k, Cout * Cin * KH * KW) {
        const int j = k % KW, i = (k / KW) % KH, ci = (k / (KW * KH)) % Cin, co = k / (KW * KH * Cin);
        float s = 0.0f;
        for (int n = 0; n < N; ++n)
            for (int oh = 0; oh < HO; ++oh) {
                const int ih = oh * SH - PH + i;
                if (ih < 0 || ih >= H) continue;
                for (int ow = 0; ow < WO; ++ow) {
                    const int iw = ow * SW - PW + j;
                    if (iw < 0 || iw >= W) continue;
                    s += dy[((n * Cout + co) * HO + oh) * WO + ow] * x[((n * Cin + ci) * H + ih) * W + iw];
                }
            }
        dw[k] = s;
    }
}
