// Inline PTX with a C++ fallback for emu.
extern "C" __global__ void lane_ids(unsigned int* out) {
    unsigned int lane;
#ifdef __CUDA_ARCH__
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
#else
    lane = threadIdx.x % warpSize;
#endif
    out[threadIdx.x] = lane;
}
