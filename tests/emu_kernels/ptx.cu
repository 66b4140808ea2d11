// Inline PTX that is not guarded: emu must refuse it.
extern "C" __global__ void lane_ids_ptx(unsigned int* out) {
    unsigned int lane;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
    out[threadIdx.x] = lane;
}
