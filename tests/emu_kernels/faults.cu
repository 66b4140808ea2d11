// Kernels with bugs that emu must make visible. They are valid CUDA (tests/test_nvcc.py).

// Block 0 writes all of s, other blocks only its first half: they read the rest uninitialised.
extern "C" __global__ void uninit_shared(float* out) {
    __shared__ float s[64];
    if (blockIdx.x == 0 || threadIdx.x < 32) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void uninit_dynamic(float* out) {
    extern __shared__ float dyn[];
    if (blockIdx.x == 0 || threadIdx.x < 32) dyn[threadIdx.x] = 2.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = dyn[threadIdx.x];
}

// A barrier inside a branch that only some threads take.
extern "C" __global__ void divergent_barrier(float* out) {
    if (threadIdx.x < 16) {
        __syncthreads();  // barrier A
    }
    out[threadIdx.x] = 1.0f;
}

// Two different barriers, each reached by half of the threads.
extern "C" __global__ void two_barriers(float* out) {
    if (threadIdx.x % 2) {
        __syncthreads();  // barrier B
    } else {
        __syncthreads();  // barrier C
    }
    out[threadIdx.x] = 1.0f;
}

// Lanes 16-31 exit before a full-warp shuffle.
extern "C" __global__ void exited_lanes_shuffle(float* out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);  // shuffle D
}

// Block b reads what block b-1 wrote: right only when the blocks happen to run in order.
extern "C" __global__ void block_race(float* tmp, float* out) {
    const int b = blockIdx.x;
    if (threadIdx.x == 0) {
        tmp[b] = b + 1.0f;
        out[b] = b > 0 ? tmp[b - 1] : 0.0f;
    }
}

// Every thread of a block writes the same element: which one wins is up to the scheduler.
extern "C" __global__ void last_writer(int* out) {
    out[blockIdx.x] = threadIdx.x;
}

// Reads the next thread's shared value and overwrites its own without a barrier in between:
// right when the threads happen to run in increasing order.
extern "C" __global__ void missing_barrier(float* out) {
    __shared__ float s[32];
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    const float v = threadIdx.x + 1 < 32 ? s[threadIdx.x + 1] : 0.0f;
    s[threadIdx.x] = 2.0f * v;  // a __syncthreads() is missing before this write
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

// Recursion with 4 KiB frames: `depth` 100 needs 400 KiB of stack per thread.
__device__ __noinline__ int burn_stack(int depth, volatile char* prev) {
    volatile char pad[4096];
    pad[0] = prev[0] + 1;
    return depth > 0 ? burn_stack(depth - 1, pad) : pad[0];
}

extern "C" __global__ void stack_hog(int* out, int depth) {
    volatile char start[1] = {0};
    const int r = burn_stack(depth, start);
    __syncthreads();
    out[threadIdx.x] = r;
}

// Out-of-bounds accesses that emu's guarded memory must trap (microst/emu_memory.py).
extern "C" __global__ void read_past_end(const float* x, float* y, int n, int offset) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + offset];  // read E
}

extern "C" __global__ void write_past_end(float* y, int n, int offset) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i + offset] = 1.0f;  // write F
}

// The same read from a kernel that runs as fibers (it has a barrier).
extern "C" __global__ void read_past_end_synced(const float* x, float* y, int n, int offset) {
    __shared__ float s[64];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = i < n ? x[i + offset] : 0.0f;
    __syncthreads();
    if (i < n) y[i] = s[threadIdx.x];
}
