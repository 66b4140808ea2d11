// emu_runtime.cpp: the scheduler of microst's emu device (see cuda_emu.h).
//
// Built once (per g++ version and flags) into a shared library that every kernel module links
// to. It owns threadIdx & co., the dynamic shared buffer and the fibers: a kernel that reaches
// __syncthreads or a warp function runs one fiber per CUDA thread. A fiber runs until it waits at
// a barrier or warp function, then switches straight to the next thread that can run; a pass
// visits every thread once, in the launch's order. What would hang or be undefined on a GPU (a
// barrier that some threads never reach, a shuffle whose lanes exited) becomes an error message
// for Python instead of a hang.
#include "cuda_emu.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include <ucontext.h>  // the fault handler reads the access kind; and the portable fibers below
#if defined(__x86_64__) && !defined(MICROST_EMU_UCONTEXT)
#define EMU_X86_64_FIBERS 1
#endif  // else swapcontext: the portable fallback, a signal-mask syscall per switch
#ifdef __SSE__
#include <xmmintrin.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
alignas(256) unsigned char emu_dynamic_smem[EMU_MAX_DYNAMIC_SHARED];
bool emu_in_fiber;
bool emu_async_used;

// The fiber switch and a fiber's first frame, outside namespaces for their assembler names.
extern "C" void emu_fiber_entry(void*);
#ifdef EMU_X86_64_FIBERS
// emu_switch(save, load): push the callee-saved registers, store rsp in *save, continue on the
// stack `load`. The MXCSR and x87 control words are not switched: every fiber of a launch runs
// with the launch's (set in emu_launch_begin), and loading them cost 4 times the rest here.
extern "C" void emu_switch(void** save, void* load);
extern "C" void emu_fiber_trampoline();
__asm__(
    ".text\n"
    ".globl emu_switch\n.hidden emu_switch\n.type emu_switch,@function\n"
    "emu_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_switch, .-emu_switch\n"
    // A new fiber "returns" here from emu_switch, with its argument in r12.
    ".globl emu_fiber_trampoline\n.hidden emu_fiber_trampoline\n.type emu_fiber_trampoline,@function\n"
    "emu_fiber_trampoline:\n"
    "  movq %r12, %rdi\n  andq $-16, %rsp\n  call emu_fiber_entry\n  ud2\n"
    ".size emu_fiber_trampoline, .-emu_fiber_trampoline\n");
#endif

namespace emu {
namespace {

enum State { RUNNABLE, AT_BARRIER, AT_WARP, EXITED };

const char* op_name(int op) {
    static const char* const names[] = {
        "__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or",
        "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
        "__ballot_sync", "__any_sync", "__all_sync", "__reduce_add_sync", "__reduce_min_sync",
        "__reduce_max_sync", "__reduce_min_sync", "__reduce_max_sync", "__activemask",
        "wmma::load_matrix_sync", "wmma::store_matrix_sync", "wmma::mma_sync"};
    return names[op];
}

struct Fiber {
#ifdef EMU_X86_64_FIBERS
    void* sp;
#else
    ucontext_t uc;
#endif
    uint3 tid;
    int state;
    int op;            // where it waits: the barrier or warp function,
    const char* file;  // and its call site
    int line;
    uint32_t mask;     // warp functions: the mask, the lane's value and argument (lane, delta, ...)
    uint64_t value;
    int arg, width;
    uint64_t result;   // what the barrier or warp function returns to it
};
bool is_collective(int op) { return op >= WMMA_LOAD; }

// Lanes of one warp waiting at a warp function with the same mask.
struct WarpWait { uint32_t mask, arrived; int op; };
struct Warp { WarpWait waits[32]; int n; };

// The launch in progress (one at a time: launch_mutex).
pthread_mutex_t launch_mutex = PTHREAD_MUTEX_INITIALIZER;
const Launch* launch_params;
const char* kernel_name;
bool failed;
uint32_t nthreads;
uint64_t rng_state;
#ifdef __SSE__
unsigned int saved_csr;
#endif

// Fibers: one stack per CUDA thread, each with a PROT_NONE guard page below it.
Fiber* fibers;
Warp* warps;
char* pool;
size_t pool_stride, page_size;
uint32_t pool_count;
uint32_t current;            // the running fiber
void (*thread_body)();
volatile bool fiber_launch;  // a fiber launch is in progress (read by the SIGSEGV handler)
sigjmp_buf overflow_escape;  // where the SIGSEGV handler leaves a fiber launch that faulted
volatile bool plain_launch;  // a plain-loop launch is in progress
sigjmp_buf* plain_escape_at; // ... and where the handler leaves it

// The block in progress.
Perm pass(0, FORWARD);       // the threads in this pass's order
uint32_t n_exited, n_at_barrier, n_at_warp;
bool barrier_open;           // this pass resumes the threads waiting at the barrier
bool barrier_mixed;          // threads wait at different barriers
int barrier_op, barrier_line, barrier_count;
const char* barrier_file;
uint64_t barrier_result;

// Errors ------------------------------------------------------------------------------------
int append(int pos, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
int append(int pos, const char* fmt, ...) {
    size_t len = launch_params->errlen;
    if (pos < 0 || (size_t)pos >= len) return pos;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(launch_params->err + pos, len - pos, fmt, ap);
    va_end(ap);
    return k < 0 ? pos : pos + k;
}
int where(int pos) {
    return append(pos, "emu: kernel %s, block (%u,%u,%u): ", kernel_name, blockIdx.x, blockIdx.y, blockIdx.z);
}
// "0-15, 17, 20-31" for the threads t with pick(t).
template <class Pick> int append_threads(int pos, Pick pick) {
    bool first = true;
    for (uint32_t t = 0; t < nthreads;) {
        if (!pick(t)) { ++t; continue; }
        uint32_t end = t;
        while (end + 1 < nthreads && pick(end + 1)) ++end;
        pos = append(pos, end > t ? "%s%u-%u" : "%s%u", first ? "" : ", ", t, end);
        first = false;
        t = end + 1;
    }
    return pos;
}
bool same_site(const char* file_a, int line_a, const char* file_b, int line_b) {
    return line_a == line_b && (file_a == file_b || strcmp(file_a, file_b) == 0);
}

// Why the block cannot go on: which threads wait where, which have exited.
void report_stuck_block() {
    int pos = where(0);
    pos = append(pos, "deadlock:");
    bool done[1024] = {};
    for (uint32_t t = 0; t < nthreads; ++t) {
        const Fiber& g = fibers[t];
        if (done[t] || g.state == EXITED) continue;
        auto same = [&](uint32_t u) {
            const Fiber& h = fibers[u];
            return h.state == g.state && h.op == g.op && same_site(h.file, h.line, g.file, g.line) &&
                   (g.state == AT_BARRIER || h.mask == g.mask);
        };
        pos = append(pos, " threads ");
        pos = append_threads(pos, same);
        for (uint32_t u = t; u < nthreads; ++u) done[u] = done[u] || same(u);
        if (g.state == AT_BARRIER) {
            pos = append(pos, " wait at %s (%s:%d);", op_name(g.op), g.file, g.line);
        } else {
            pos = append(pos, " wait at %s with mask 0x%08x (%s:%d) for lanes that never arrive;",
                         op_name(g.op), g.mask, g.file, g.line);
        }
    }
    if (n_exited) {
        pos = append(pos, " threads ");
        pos = append_threads(pos, [](uint32_t u) { return fibers[u].state == EXITED; });
        pos = append(pos, " have exited;");
    }
    append(pos, " every thread of the block must reach the same __syncthreads, and every lane of a "
           "mask the same warp function%s", blockDim.y * blockDim.z > 1 ? " (thread numbers are "
           "x + y*blockDim.x + z*blockDim.x*blockDim.y)" : "");
}

// Fibers -------------------------------------------------------------------------------------
void* scheduler_sp;  // the launching thread's stack, while fibers run
#ifdef EMU_X86_64_FIBERS
void start_fiber(Fiber& f, char* stack_lo, size_t size) {
    uint64_t* sp = reinterpret_cast<uint64_t*>(stack_lo + size);  // 16-byte aligned
    *--sp = 0;                                                   // alignment padding
    *--sp = reinterpret_cast<uint64_t>(&emu_fiber_trampoline);   // return address
    for (int i = 0; i < 6; ++i) *--sp = 0;                       // rbp rbx r12 r13 r14 r15
    f.sp = sp;
}
void jump(Fiber& from, Fiber& to) { emu_switch(&from.sp, to.sp); }
void from_scheduler(Fiber& to) { emu_switch(&scheduler_sp, to.sp); }
void to_scheduler(Fiber& from) { emu_switch(&from.sp, scheduler_sp); }
#else
ucontext_t scheduler_uc;
void fiber_main_uc() { emu_fiber_entry(nullptr); }
void start_fiber(Fiber& f, char* stack_lo, size_t size) {
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = stack_lo;
    f.uc.uc_stack.ss_size = size;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, fiber_main_uc, 0);
}
void jump(Fiber& from, Fiber& to) { swapcontext(&from.uc, &to.uc); }
void from_scheduler(Fiber& to) { swapcontext(&scheduler_uc, &to.uc); }
void to_scheduler(Fiber& from) { swapcontext(&from.uc, &scheduler_uc); }
#endif

// The next thread to run, or null when the block is done or stuck (then `failed` is set).
Fiber* pick_next() {
    for (;;) {
        uint64_t t;
        while (pass.next(t)) {
            Fiber& f = fibers[t];
            if (f.state == RUNNABLE) return &f;
            if (f.state == AT_BARRIER && barrier_open) {
                f.state = RUNNABLE;
                f.result = barrier_result;
                return &f;
            }
        }
        barrier_open = false;
        if (n_exited == nthreads) return nullptr;
        pass = Perm(nthreads, launch_params->order);
        if (n_exited + n_at_barrier + n_at_warp < nthreads) continue;  // warp functions released some
        if (n_at_barrier == nthreads && !barrier_mixed) {
            const int n = (int)nthreads, count = barrier_count;
            barrier_result = barrier_op == SYNCTHREADS_COUNT ? count : barrier_op == SYNCTHREADS_AND ? count == n
                             : barrier_op == SYNCTHREADS_OR ? count != 0 : 0;
            barrier_open = true;
            n_at_barrier = 0;
            barrier_count = 0;
            continue;
        }
        report_stuck_block();
        failed = true;
        return nullptr;
    }
}

// The running thread `self` waits or has exited: go on with the next one, straight from fiber
// to fiber. Returns when `self` runs again.
void switch_from(Fiber& self) {
    Fiber* next = failed ? nullptr : pick_next();
    if (next == &self) return;
    if (!next) {
        to_scheduler(self);  // the block is done, or failed: `self` never runs again
        return;
    }
    current = (uint32_t)(next - fibers);
    threadIdx = next->tid;
    jump(self, *next);
}

// After an error message: leave the fiber for good; the scheduler sees `failed` and stops.
[[noreturn]] void abandon_thread() {
    failed = true;
    to_scheduler(fibers[current]);
    __builtin_unreachable();
}
[[noreturn]] void leave_plain_launch();  // the same for a plain-loop launch (below)
[[noreturn]] void fail_now() {
    if (emu_in_fiber) abandon_thread();
    leave_plain_launch();
}

// A fault during a launch is the kernel's: a stack overflow hits a fiber's guard page, an
// out-of-bounds access the PROT_NONE guard around every emu array (microst/emu_memory.py) or
// some other unmapped address. Report it and leave the launch (overflow_escape, plain_escape);
// Python names the argument array the address lies next to. Any other fault goes on to the
// handler that was there before (Python's faulthandler, ...).
struct sigaction previous_segv;
const char* access_kind(void* ctx) {
#if defined(__x86_64__) && defined(REG_ERR)
    return (static_cast<ucontext_t*>(ctx)->uc_mcontext.gregs[REG_ERR] & 2) ? "write" : "read";
#else
    (void)ctx;
    return "access";
#endif
}
void on_segv(int sig, siginfo_t* info, void* ctx) {
    char* a = static_cast<char*>(info->si_addr);
    if (fiber_launch && pool && a >= pool && a < pool + pool_count * pool_stride &&
        (size_t)(a - pool) % pool_stride < page_size) {
        const Fiber& f = fibers[(a - pool) / pool_stride];
        append(where(0), "thread (%u,%u,%u) overflowed its %zu KiB stack (set MICROST_EMU_STACK_KIB to give "
               "each emulated thread more)", f.tid.x, f.tid.y, f.tid.z, (pool_stride - page_size) / 1024);
        siglongjmp(overflow_escape, 1);
    }
    if (fiber_launch || plain_launch) {
        append(where(0), "thread (%u,%u,%u): out-of-bounds %s at address 0x%llx", threadIdx.x, threadIdx.y,
               threadIdx.z, access_kind(ctx), (unsigned long long)(uintptr_t)a);
        if (fiber_launch) siglongjmp(overflow_escape, 1);
        plain_launch = false;
        siglongjmp(*plain_escape_at, 1);
    }
    if (previous_segv.sa_flags & SA_SIGINFO) {
        previous_segv.sa_sigaction(sig, info, ctx);
    } else if (previous_segv.sa_handler == SIG_DFL || previous_segv.sa_handler == SIG_IGN) {
        signal(sig, SIG_DFL);  // returning re-runs the faulting access, which now kills the process
    } else {
        previous_segv.sa_handler(sig);
    }
}
[[noreturn]] void leave_plain_launch() {
    plain_launch = false;
    siglongjmp(*plain_escape_at, 1);
}
void install_segv_handler() {
    static bool installed = false;
    if (installed) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    installed = true;
}
// The handler needs a stack of its own: the faulting one is full.
struct AltStack {
    void* mem = nullptr;
    AltStack() {
        stack_t cur;
        if (sigaltstack(nullptr, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return;  // one is set
        size_t size = 64 * 1024;
        mem = malloc(size);
        stack_t st = {mem, 0, size};
        sigaltstack(&st, nullptr);
    }
    ~AltStack() {
        if (!mem) return;
        stack_t st = {nullptr, SS_DISABLE, 0};
        sigaltstack(&st, nullptr);
        free(mem);
    }
};

bool prepare_fibers(uint32_t n, size_t stack_bytes) {
    install_segv_handler();
    static thread_local AltStack alt_stack;
    (void)alt_stack;
    if (!page_size) page_size = (size_t)sysconf(_SC_PAGESIZE);
    size_t stride = (stack_bytes + page_size - 1) / page_size * page_size + page_size;
    if (pool && pool_count >= n && pool_stride == stride) return true;
    if (pool) munmap(pool, pool_count * pool_stride);
    free(fibers);
    free(warps);
    pool = nullptr;
    pool_count = 0;
    void* mem = mmap(nullptr, n * stride, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    fibers = static_cast<Fiber*>(calloc(n, sizeof(Fiber)));
    warps = static_cast<Warp*>(calloc((n + 31) / 32, sizeof(Warp)));
    if (mem == MAP_FAILED || !fibers || !warps) {
        append(0, "emu: cannot allocate %u fiber stacks of %zu KiB", n, stack_bytes / 1024);
        return false;
    }
    pool = static_cast<char*>(mem);
    pool_stride = stride;
    pool_count = n;
    for (uint32_t i = 0; i < n; ++i) mprotect(pool + i * stride, page_size, PROT_NONE);
    return true;
}

// One block, one fiber per thread. Returns false on an error (message written).
bool run_block_fibers() {
    for (uint32_t t = 0; t < nthreads; ++t) {
        Fiber& f = fibers[t];
        f.state = RUNNABLE;
        start_fiber(f, pool + t * pool_stride + page_size, pool_stride - page_size);
    }
    for (uint32_t w = 0; w < (nthreads + 31) / 32; ++w) warps[w].n = 0;
    n_exited = n_at_barrier = n_at_warp = 0;
    barrier_open = barrier_mixed = false;
    barrier_count = 0;
    pass = Perm(nthreads, launch_params->order);
    Fiber* first = pick_next();
    current = (uint32_t)(first - fibers);
    threadIdx = first->tid;
    emu_in_fiber = true;
    from_scheduler(*first);  // back here when the block is done or has failed
    emu_in_fiber = false;
    return !failed;
}

inline void fill_shared(const SharedVar* vars, int n) {
    for (int i = 0; i < n; ++i) memset((void*)vars[i].p, 0xFF, vars[i].n);
    if (launch_params->shared_bytes) memset(emu_dynamic_smem, 0xFF, launch_params->shared_bytes);
}

// Warp functions -----------------------------------------------------------------------------
// Lane `lane`'s result, once every lane of the exchange has arrived.
uint64_t lane_result(const Fiber* w, uint32_t arrived, int lane, int op, uint64_t common) {
    const Fiber& f = w[lane];
    int width = f.width, src = lane;
    switch (op) {
    case SHFL: src = (lane & ~(width - 1)) | (f.arg & (width - 1)); break;
    case SHFL_UP: src = (lane & (width - 1)) >= f.arg ? lane - f.arg : lane; break;
    case SHFL_DOWN: src = (lane & (width - 1)) + f.arg < width ? lane + f.arg : lane; break;
    case SHFL_XOR: src = lane ^ (f.arg & 31); if (src > (lane | (width - 1))) src = lane; break;
    default: return common;
    }
    // A lane outside the exchange has no defined value: all ones (NaN as a float) shows it.
    return (arrived >> src & 1) ? w[src].value : ~0ull;
}

// The result that every lane gets (ballot, vote, reduction).
uint64_t common_result(const Fiber* w, uint32_t arrived, int op) {
    uint32_t ballot = 0, sum = 0, umin = UINT32_MAX, umax = 0;
    int32_t smin = INT32_MAX, smax = INT32_MIN;
    for (int l = 0; l < 32; ++l) {
        if (!(arrived >> l & 1)) continue;
        const uint32_t v = (uint32_t)w[l].value;
        ballot |= (uint32_t)(w[l].value != 0) << l;
        sum += v;
        smin = smin < (int32_t)v ? smin : (int32_t)v;
        smax = smax > (int32_t)v ? smax : (int32_t)v;
        umin = umin < v ? umin : v;
        umax = umax > v ? umax : v;
    }
    switch (op) {
    case BALLOT: return ballot;
    case ANY: return ballot != 0;
    case ALL: return ballot == arrived;
    case REDUCE_ADD: return sum;
    case REDUCE_MIN: return (uint32_t)smin;
    case REDUCE_MAX: return (uint32_t)smax;
    case REDUCE_MIN_U: return umin;
    case REDUCE_MAX_U: return umax;
    default: return 0;
    }
}

// Wait until every lane of the mask (that exists) has arrived; the last one to arrive computes
// every lane's result and makes the others runnable.
uint64_t warp_exchange(int op, uint32_t mask, uint64_t value, int arg, int width, const char* file, int line) {
    const uint32_t t = current, w = t / 32, lane = t % 32;
    Fiber* wf = fibers + w * 32;
    Fiber& f = fibers[t];
    if (!(mask >> lane & 1)) {
        append(where(0), "thread %u called %s (%s:%d) with mask 0x%08x, which leaves out its own lane %u",
               t, op_name(op), file, line, mask, lane);
        abandon_thread();
    }
    if (width < 1 || width > 32 || (width & (width - 1))) {
        append(where(0), "thread %u called %s (%s:%d) with width %d; it must be a power of 2 up to 32",
               t, op_name(op), file, line, width);
        abandon_thread();
    }
    f.op = op;
    f.mask = mask;
    f.value = value;
    f.arg = arg;
    f.width = width;
    f.file = file;
    f.line = line;
    const uint32_t lanes = nthreads - w * 32 >= 32 ? ~0u : (1u << (nthreads - w * 32)) - 1;  // that exist
    if (is_collective(op) && lanes != ~0u) {
        append(where(0), "thread %u called %s (%s:%d) in warp %u, which has only %u threads: WMMA functions "
               "are collective over a full warp of 32 (make the block's thread count a multiple of 32)",
               t, op_name(op), file, line, w, nthreads - w * 32);
        abandon_thread();
    }
    const uint32_t need = mask & lanes;
    Warp& warp = warps[w];
    WarpWait* wait = nullptr;
    for (int i = 0; i < warp.n; ++i)
        if (warp.waits[i].mask == mask) wait = &warp.waits[i];
    if (wait && wait->op != op) {
        const int other = __builtin_ctz(wait->arrived);
        append(where(0), "lane %u of warp %u is at %s (%s:%d) while lane %d is at %s (%s:%d), with the same "
               "mask 0x%08x", lane, w, op_name(op), file, line, other, op_name(wait->op), wf[other].file,
               wf[other].line, mask);
        abandon_thread();
    }
    if (!wait) {
        wait = &warp.waits[warp.n++];
        *wait = WarpWait{mask, 0, op};
    }
    wait->arrived |= 1u << lane;
    if ((wait->arrived & need) != need) {
        f.state = AT_WARP;
        ++n_at_warp;
        switch_from(f);
        return f.result;
    }
    const uint32_t arrived = wait->arrived;
    *wait = warp.waits[--warp.n];  // the exchange is complete: free its slot
    if (is_collective(op)) {  // the others resume only when this lane has done the warp's work
        static const void* published[32];
        for (uint32_t l = 0; l < 32; ++l) {
            published[l] = reinterpret_cast<const void*>(wf[l].value);
            if (l != lane) {
                wf[l].result = 0;
                wf[l].state = RUNNABLE;
                --n_at_warp;
            }
        }
        return reinterpret_cast<uint64_t>(published);
    }
    const uint64_t common = op >= BALLOT ? common_result(wf, arrived, op) : 0;
    for (uint32_t l = 0; l < 32; ++l) {
        if (!(arrived >> l & 1)) continue;
        wf[l].result = lane_result(wf, arrived, (int)l, op, common);
        if (l != lane) {
            wf[l].state = RUNNABLE;
            --n_at_warp;
        }
    }
    return f.result;
}

// cp.async ------------------------------------------------------------------------------------
// Each CUDA thread of the block has its own queue of deferred copies, in issue order, each tagged
// with its commit group; __pipeline_wait_prior performs a prefix of it.
struct AsyncCopy {
    void* dst;
    const void* src;
    uint32_t size, zfill, group;
    const char* file;
    int line;
};
struct AsyncQueue {
    std::vector<AsyncCopy> copies;
    uint32_t committed = 0;  // groups committed so far; copies issued now join group `committed`
};
AsyncQueue async_queues[1024];

AsyncQueue& my_queue() {
    return async_queues[threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)];
}
void reset_async_queues() {
    for (AsyncQueue& q : async_queues) {
        q.copies.clear();
        q.committed = 0;
    }
    emu_async_used = false;
}
// Leave the launch when the thread that ends now has copies that no wait covered.
void check_async_done() {
    AsyncQueue& q = my_queue();
    if (!q.copies.empty()) {
        const AsyncCopy& c = q.copies.front();
        append(where(0), "thread (%u,%u,%u) exited with %zu cp.async copies that no __pipeline_wait_prior covered "
               "(the first issued at %s:%d%s); wait for them (__pipeline_wait_prior(0)) before the thread exits",
               threadIdx.x, threadIdx.y, threadIdx.z, q.copies.size(), c.file, c.line,
               c.group == q.committed ? ", never committed" : "");
        fail_now();
    }
    q.committed = 0;
}

}  // namespace
}  // namespace emu

using namespace emu;

extern "C" void emu_fiber_entry(void*) {
    thread_body();
    if (emu_async_used) check_async_done();
    Fiber& f = fibers[current];
    f.state = EXITED;
    ++n_exited;
    switch_from(f);
    __builtin_unreachable();
}

// The API of cuda_emu.h ----------------------------------------------------------------------
int emu_launch_begin(const Launch* p, const char* kernel, int arity) {
    pthread_mutex_lock(&launch_mutex);
    launch_params = p;
    kernel_name = kernel;
    failed = false;
    rng_state = p->seed;
    gridDim = dim3(p->grid[0], p->grid[1], p->grid[2]);
    blockDim = dim3(p->block[0], p->block[1], p->block[2]);
    blockIdx = uint3{0, 0, 0};
    nthreads = p->block[0] * p->block[1] * p->block[2];
    if (emu_async_used) reset_async_queues();  // a launch that failed may have left some
    if (p->nargs != arity) {
        append(0, "emu: kernel %s takes %d arguments, the launcher was given %d", kernel, arity, p->nargs);
    } else if (p->shared_bytes > EMU_MAX_DYNAMIC_SHARED) {
        append(0, "emu: kernel %s: %llu bytes of dynamic shared memory, more than the %zu a block can have",
               kernel, (unsigned long long)p->shared_bytes, EMU_MAX_DYNAMIC_SHARED);
    } else if (nthreads < 1 || nthreads > 1024) {
        append(0, "emu: kernel %s: %u threads per block; CUDA allows 1 to 1024", kernel, nthreads);
    } else {
#ifdef __SSE__
        // Denormals flush to zero, as CuPy compiles kernels with -ftz=true (MXCSR FTZ and DAZ).
        saved_csr = _mm_getcsr();
        _mm_setcsr(saved_csr | 0x8040);
#endif
        return 0;
    }
    pthread_mutex_unlock(&launch_mutex);
    return 1;
}

void emu_launch_end() {
#ifdef __SSE__
    _mm_setcsr(saved_csr);
#endif
    pthread_mutex_unlock(&launch_mutex);
}

uint64_t emu_random() {  // splitmix64
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void emu_fill_shared(const SharedVar* vars, int n) { fill_shared(vars, n); }

int emu_run_fibers(void (*body)(), const SharedVar* vars, const int* n) {
    if (!prepare_fibers(nthreads, launch_params->stack_bytes)) return 1;
    thread_body = body;
    for (uint32_t t = 0; t < nthreads; ++t) fibers[t].tid = thread_index(t);
    if (sigsetjmp(overflow_escape, 1)) {  // from on_segv: a fiber overflowed its stack
        fiber_launch = false;
        emu_in_fiber = false;
        return 1;
    }
    fiber_launch = true;
    Perm blocks((uint64_t)gridDim.x * gridDim.y * gridDim.z, launch_params->order);
    uint64_t b;
    int rc = 0;
    while (rc == 0 && blocks.next(b)) {
        set_block(b);
        fill_shared(vars, *n);
        if (!run_block_fibers()) rc = 1;
    }
    fiber_launch = false;
    return rc;
}

// Wait until every thread of the block is at this barrier (pick_next releases them).
int emu_barrier(int op, int pred, const char* file, int line) {
    Fiber& f = fibers[current];
    f.op = op;
    f.file = file;
    f.line = line;
    f.state = AT_BARRIER;
    if (n_at_barrier++ == 0) {
        barrier_op = op;
        barrier_file = file;
        barrier_line = line;
        barrier_mixed = false;
    } else if (op != barrier_op || !same_site(file, line, barrier_file, barrier_line)) {
        barrier_mixed = true;
    }
    barrier_count += pred != 0;
    switch_from(f);
    return (int)f.result;
}

uint64_t emu_warp_op(int op, uint32_t mask, uint64_t value, int arg, int width, const char* file, int line) {
    return warp_exchange(op, mask, value, arg, width, file, line);
}

// The lanes of the warp that have not exited (a GPU would give those on the same code path).
uint32_t emu_active_mask() {
    uint32_t w = current / 32, mask = 0;
    for (uint32_t l = 0; l < 32 && w * 32 + l < nthreads; ++l)
        if (fibers[w * 32 + l].state != EXITED) mask |= 1u << l;
    return mask;
}

void emu_plain_begin(sigjmp_buf* escape) {
    install_segv_handler();
    static thread_local AltStack alt_stack;
    (void)alt_stack;
    plain_escape_at = escape;
    plain_launch = true;
}

void emu_plain_end() { plain_launch = false; }

void emu_report_not_in_fiber(int op, const char* file, int line) {
    append(where(0), "thread (%u,%u,%u) called %s (%s:%d), but the kernel runs as a plain loop without "
           "fibers: microst.cuda's source scan found no barrier or warp function reachable from the "
           "kernel (is it called through a function pointer?)",
           threadIdx.x, threadIdx.y, threadIdx.z, op_name(op), file, line);
}

const void* const* emu_warp_collective(int op, const void* arg, const char* file, int line) {
    return reinterpret_cast<const void* const*>(
        warp_exchange(op, ~0u, reinterpret_cast<uint64_t>(arg), 0, 32, file, line));
}

void emu_fail(const char* fmt, ...) {
    int pos = where(0);
    size_t len = launch_params->errlen;
    if ((size_t)pos < len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(launch_params->err + pos, len - pos, fmt, ap);
        va_end(ap);
    }
    fail_now();
}

// cp.async: the copy is deferred to the wait that covers its group; its destination reads as
// 0xFF bytes (NaN) until then.
void emu_async_copy(void* dst, const void* src, size_t size, size_t zfill, bool dst_static_shared,
                    const char* file, int line) {
    const char* d = static_cast<const char*>(dst);
    const bool dynamic = d >= (const char*)emu_dynamic_smem &&
                         d + size <= (const char*)emu_dynamic_smem + launch_params->shared_bytes;
    const char* why = size != 4 && size != 8 && size != 16 ? "size_and_align must be 4, 8 or 16"
                      : zfill > size ? "zfill must be at most size_and_align"
                      : (reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src)) & (size - 1)
                          ? "both pointers must be aligned to size_and_align"
                      : !dst_static_shared && !dynamic ? "the destination (the first argument) must be shared memory"
                      : nullptr;
    if (why) {
        emu_fail("thread (%u,%u,%u): __pipeline_memcpy_async(%p, %p, %zu, %zu) (%s:%d): %s", threadIdx.x,
                 threadIdx.y, threadIdx.z, dst, src, size, zfill, file, line, why);
    }
    memset(dst, 0xFF, size);
    AsyncQueue& q = my_queue();
    q.copies.push_back(AsyncCopy{dst, src, (uint32_t)size, (uint32_t)zfill, q.committed, file, line});
    emu_async_used = true;
}

void emu_async_commit() { ++my_queue().committed; }

// Perform the copies of every committed group but the newest `prior` (at most 8, as on the GPU).
void emu_async_wait(size_t prior) {
    AsyncQueue& q = my_queue();
    const uint32_t keep = prior < 8 ? (uint32_t)prior : 8;
    size_t n = 0;
    for (; n < q.copies.size() && q.copies[n].group + keep < q.committed; ++n) {
        const AsyncCopy& c = q.copies[n];
        memcpy(c.dst, c.src, c.size - c.zfill);
        memset(static_cast<char*>(c.dst) + c.size - c.zfill, 0, c.zfill);
    }
    q.copies.erase(q.copies.begin(), q.copies.begin() + n);
}

void emu_async_thread_end() { check_async_done(); }
