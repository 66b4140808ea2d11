// Atomics from many blocks.
extern "C" __global__ void histogram(const int* __restrict__ x, int* __restrict__ bins, int n, int nbins) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        atomicAdd(&bins[min(max(x[i], 0), nbins - 1)], 1);
}

extern "C" __global__ void atomic_misc(const float* __restrict__ x, const int* __restrict__ v, float* fsum,
                                       double* dsum, int* imax, int* imin, unsigned int* count, int* claimed,
                                       float* last, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(fsum, x[i]);
    atomicAdd(dsum, (double)x[i]);
    atomicMax(imax, v[i]);
    atomicMin(imin, v[i]);
    atomicAdd(count, 1u);
    atomicCAS(claimed, -1, i);  // the first thread to get here claims the slot
    atomicExch(last, x[i]);
}
