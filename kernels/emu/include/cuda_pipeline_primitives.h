// cuda_pipeline_primitives.h: cp.async (__pipeline_memcpy_async, __pipeline_commit,
// __pipeline_wait_prior) for microst's emu device. <cuda_pipeline.h> includes it, as CUDA's does.
//
// Each CUDA thread has its own queue (emu_runtime.cpp), in fibers and in plain loops alike:
// - __pipeline_memcpy_async(dst, src, size, zfill = 0) checks its arguments (size 4, 8 or 16,
//   zfill <= size, both pointers aligned to size, dst in shared memory), fills dst with 0xFF bytes
//   (NaN as floats) and records the copy in the thread's open group. It reads nothing yet.
// - __pipeline_commit() closes the open group (an empty group counts, as on the GPU).
// - __pipeline_wait_prior(N) performs the copies of every committed group but the newest N
//   (N above 8 counts as 8, as in CUDA's header), reading the source now: size - zfill bytes, then
//   zfill zero bytes. So a read of the destination before the wait that covers it (no wait, or a
//   wrong N) reads NaN instead of the stale or racing data a GPU might show.
// - A thread that exits with copies still pending is an error naming the first one's call site:
//   their data would land where nobody waits for it, a missing wait (or a wasted copy);
//   __pipeline_wait_prior(0) before the end drains them.
// Not here: __pipeline_arrive_on, and the C++ API of <cuda_pipeline.h> (nvcuda::experimental).
#pragma once
#ifndef MICROST_EMU
#error "kernels/emu/include holds emu's stand-ins for CUDA headers: only the emu build uses it"
#endif

namespace emu {
// In one of this module's static __shared__ variables (the runtime checks dynamic shared memory).
inline bool in_static_shared(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    for (int i = 0; i < n_shared_vars; ++i) {
        const char* v = (const char*)shared_vars[i].p;
        if (c >= v && c + n <= v + shared_vars[i].n) return true;
    }
    return false;
}
}  // namespace emu

inline void __pipeline_memcpy_async(void* __restrict__ dst_shared, const void* __restrict__ src_global,
                                    size_t size_and_align, size_t zfill = 0, const char* emu_file = __builtin_FILE(),
                                    int emu_line = __builtin_LINE()) {
    emu_async_copy(dst_shared, src_global, size_and_align, zfill, emu::in_static_shared(dst_shared, size_and_align),
                   emu_file, emu_line);
}
inline void __pipeline_commit() { emu_async_commit(); }
inline void __pipeline_wait_prior(size_t prior) { emu_async_wait(prior); }
