/* CUDA emulation: the runtime (devices, guarded device memory, copies, streams, events) and the block scheduler that runs kernels thread by thread. */
#include <cuda_runtime.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace {

/* ---- errors ------------------------------------------------------------------------------------------------- */

cudaError_t last_error = cudaSuccess;

cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

/* What is running, for messages: the kernel and its block and thread, or the library call. */
const char *running_kernel;
const char *running_call;

/* ---- devices ------------------------------------------------------------------------------------------------ */

int current_device;

/* ZF_CUDA_EMU_DEVICES (default 1) devices, each with ZF_CUDA_EMU_MEM bytes (default 80G; K, M, G suffixes). */
int device_count()
{
    const char *s = getenv("ZF_CUDA_EMU_DEVICES");
    if (!s || !*s) return 1;
    char *end = NULL;
    long n = strtol(s, &end, 10);
    if (*end || n < 0 || n > 64) zf_emu_fatal("ZF_CUDA_EMU_DEVICES=\"%s\": expected a device count 0 .. 64", s);
    return (int)n;
}

size_t device_memory()
{
    const char *s = getenv("ZF_CUDA_EMU_MEM");
    if (!s || !*s) return (size_t)80 << 30;
    char *end = NULL;
    double v = strtod(s, &end);
    switch (*end) {
    case 'K': case 'k': v *= 1024.0, end++; break;
    case 'M': case 'm': v *= 1024.0 * 1024.0, end++; break;
    case 'G': case 'g': v *= 1024.0 * 1024.0 * 1024.0, end++; break;
    default: break;
    }
    if (end == s || *end || !(v >= 1.0 && v < 1e18))
        zf_emu_fatal("ZF_CUDA_EMU_MEM=\"%s\": expected bytes with an optional K, M or G suffix, e.g. 64M", s);
    return (size_t)v;
}

/* ---- device memory ------------------------------------------------------------------------------------------- */

/* Each allocation is its own mapping: data pages, then a guard page the allocation ends right against, so that
 * reading or writing one byte past the end faults. Data pages are inaccessible unless the device is open. */
struct allocation {
    char *map;         /* start of the mapping */
    size_t data_pages; /* bytes of data pages (the guard page follows) */
    size_t bytes;      /* as requested */
};

std::map<uintptr_t, allocation> allocations; /* keyed by the pointer handed out */
size_t live_bytes;
int open_depth;
std::recursive_mutex emu_lock; /* one launch or call at a time: the scheduler's state is global */
size_t page_size;

void protect_all(int prot)
{
    for (auto &kv : allocations)
        if (mprotect(kv.second.map, kv.second.data_pages, prot) != 0)
            zf_emu_fatal("mprotect of a device allocation failed: %s", strerror(errno));
}

/* The allocation holding [p, p + bytes), or NULL. */
const allocation *find_allocation(const void *p, size_t bytes, uintptr_t *base)
{
    uintptr_t a = (uintptr_t)p;
    auto it = allocations.upper_bound(a);
    if (it == allocations.begin()) return NULL;
    --it;
    if (a - it->first > it->second.bytes || bytes > it->second.bytes - (a - it->first)) return NULL;
    if (base) *base = it->first;
    return &it->second;
}

bool is_device(const void *p) { return find_allocation(p, 0, NULL) != NULL; }

/* The allocation nearest to address a, described for fault reports. */
std::string describe_address(uintptr_t a)
{
    char buf[256];
    for (auto &kv : allocations) {
        const allocation &al = kv.second;
        uintptr_t lo = (uintptr_t)al.map, end = kv.first + al.bytes, guard_end = lo + al.data_pages + page_size;
        if (a >= kv.first && a < end) {
            snprintf(buf, sizeof buf, "byte %zu of a %zu-byte device allocation at %p", (size_t)(a - kv.first),
                     al.bytes, (void *)kv.first);
            return buf;
        }
        if (a >= end && a < guard_end) {
            snprintf(buf, sizeof buf, "%zu bytes past the end of a %zu-byte device allocation at %p",
                     (size_t)(a - end), al.bytes, (void *)kv.first);
            return buf;
        }
    }
    return "an address outside every device allocation";
}

/* ---- faults -------------------------------------------------------------------------------------------------- */

char fault_stack[1 << 16];

void on_fault(int sig, siginfo_t *info, void *)
{
    uintptr_t a = (uintptr_t)info->si_addr;
    std::string where = describe_address(a);
    char msg[512];
    int n;
    if (open_depth == 0 && where.rfind("byte ", 0) == 0)
        n = snprintf(msg, sizeof msg, "cuda-emu: host code touched device memory: %s\n", where.c_str());
    else if (running_kernel)
        n = snprintf(msg, sizeof msg,
                     "cuda-emu: kernel %s, block (%u,%u,%u) thread (%u,%u,%u): invalid access to %s (signal %d)\n",
                     running_kernel, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z,
                     where.c_str(), sig);
    else
        n = snprintf(msg, sizeof msg, "cuda-emu: %s: invalid access to %s (signal %d)\n",
                     running_call ? running_call : "host code", where.c_str(), sig);
    if (n > 0) (void)!write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    signal(SIGABRT, SIG_DFL);
    abort();
}

void install_fault_handler()
{
    static bool done;
    if (done) return;
    done = true;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    stack_t ss = {};
    ss.ss_sp = fault_stack;
    ss.ss_size = sizeof fault_stack;
    sigaltstack(&ss, NULL);
    struct sigaction sa = {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

/* ---- the scheduler ------------------------------------------------------------------------------------------- */

enum thread_state { READY, AT_BARRIER, AT_SHUFFLE, DONE };

/* ---- contexts: each emulated thread runs on its own stack ---------------------------------------------------------
 * On x86-64 a switch saves the callee-saved registers on the old stack and pops them from the new one (tens of
 * nanoseconds; swapcontext's signal-mask system calls would make the emulator 50 times slower). Elsewhere ucontext. */
#if defined(__x86_64__)
extern "C" void zf_emu_switch(void **save_sp, void *load_sp);
__asm__(".text\n"
        ".globl zf_emu_switch\n"
        ".type zf_emu_switch,@function\n"
        "zf_emu_switch:\n"
        "    pushq %rbp\n    pushq %rbx\n    pushq %r12\n    pushq %r13\n    pushq %r14\n    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n    popq %r14\n    popq %r13\n    popq %r12\n    popq %rbx\n    popq %rbp\n"
        "    ret\n"
        ".size zf_emu_switch, .-zf_emu_switch\n");

struct context {
    void *sp;
};

/* A fresh context that starts in entry(), which never returns. */
void context_init(context *c, char *stack, size_t bytes, void (*entry)())
{
    uintptr_t top = ((uintptr_t)stack + bytes) & ~(uintptr_t)15;
    void **slot = (void **)(top - 16); /* entry starts with rsp = top - 8, as after a call */
    slot[1] = NULL;                    /* its return address: none */
    slot[0] = (void *)entry;           /* popped by the switch's ret */
    void **regs = slot - 6;            /* r15, r14, r13, r12, rbx, rbp */
    for (int i = 0; i < 6; i++) regs[i] = NULL;
    c->sp = regs;
}

void context_switch(context *from, context *to) { zf_emu_switch(&from->sp, to->sp); }
#else
struct context {
    ucontext_t uc;
};

void context_init(context *c, char *stack, size_t bytes, void (*entry)())
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = bytes;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, entry, 0);
}

void context_switch(context *from, context *to) { swapcontext(&from->uc, &to->uc); }
#endif

struct emu_thread {
    context ctx;
    char *stack;
    uint3 idx;
    thread_state state;
    const char *file; /* where it waits */
    int line;
    unsigned mask;
    int lane_mask;
    unsigned char value[8];
};

const size_t STACK_BYTES = 128 * 1024; /* glibc's libm and printf want more than kernels do */
const unsigned MAX_THREADS = 1024;
std::vector<emu_thread> threads;
context scheduler_ctx;
unsigned current;
unsigned nthreads;
void (*thread_body)(void *);
void *thread_ctx;

/* Who waits where, counted as threads arrive, so that the last arrival releases the wait at once. */
unsigned ndone, nat_barrier;
unsigned warp_done[MAX_THREADS / 32], warp_at_shuffle[MAX_THREADS / 32];
/* Threads to run in this pass and in the next. Released groups are queued forwards and backwards in turn, so that
 * code reading another thread's write without a barrier between them sees it missing in one of the two orders. */
std::vector<unsigned> run_now, run_next;
size_t run_pos;
unsigned releases;

/* The next thread of this pass, made current, or the scheduler once the pass is over: a waiting thread hands over
 * directly (one switch instead of two through the scheduler). */
context *next_context()
{
    if (run_pos == run_now.size()) return &scheduler_ctx;
    current = run_now[run_pos++];
    threadIdx = threads[current].idx;
    return &threads[current].ctx;
}

unsigned warp_size(unsigned w) { return nthreads - w * 32 < 32 ? nthreads - w * 32 : 32; }

bool same_site(const emu_thread &a, const emu_thread &b)
{
    return a.line == b.line && (a.file == b.file || strcmp(a.file, b.file) == 0);
}

const char *state_name(thread_state s)
{
    switch (s) {
    case READY: return "running";
    case AT_BARRIER: return "__syncthreads";
    case AT_SHUFFLE: return "a warp shuffle";
    default: return "exited";
    }
}

[[noreturn]] void block_fatal(const char *what, unsigned t)
{
    const emu_thread &x = threads[t];
    zf_emu_fatal("kernel %s, block (%u,%u,%u): %s (thread (%u,%u,%u) in %s at %s:%d)", running_kernel, blockIdx.x,
                 blockIdx.y, blockIdx.z, what, x.idx.x, x.idx.y, x.idx.z, state_name(x.state),
                 x.file ? x.file : "?", x.line);
}

bool forwards_next() { return releases++ % 2 == 0; }

void queue_ready(unsigned lo, unsigned hi, thread_state from)
{
    const bool forwards = forwards_next();
    for (unsigned i = lo; i < hi; i++) {
        unsigned t = forwards ? i : hi - 1 + lo - i;
        if (threads[t].state != from) continue;
        threads[t].state = READY;
        run_next.push_back(t);
    }
}

/* Completes warp w's shuffle once every lane that has not exited is in it. */
void try_release_shuffle(unsigned w)
{
    const unsigned w0 = w * 32, w1 = w0 + warp_size(w);
    if (warp_at_shuffle[w] == 0 || warp_at_shuffle[w] + warp_done[w] != w1 - w0) return;
    unsigned first = w0;
    while (threads[first].state != AT_SHUFFLE) first++;
    const emu_thread &f = threads[first];
    for (unsigned lane = 0; lane < 32; lane++) {
        if (!(f.mask >> lane & 1u)) continue;
        if (w0 + lane >= w1) block_fatal("a warp shuffle names a lane the block does not have", first);
        if (threads[w0 + lane].state != AT_SHUFFLE) block_fatal("a lane in the shuffle's mask has exited", first);
    }
    /* one shuffle per warp at a time: lanes splitting the warp into concurrent shuffles are not emulated */
    for (unsigned t = first + 1; t < w1; t++) {
        const emu_thread &x = threads[t];
        if (x.state == AT_SHUFFLE && (!same_site(x, f) || x.mask != f.mask || x.lane_mask != f.lane_mask))
            block_fatal("lanes of one warp are in different shuffles", t);
    }
    unsigned char got[32][8];
    for (unsigned t = w0; t < w1; t++) {
        if (threads[t].state != AT_SHUFFLE) continue;
        /* a source lane outside the warp gives the lane its own value, as on the device */
        const unsigned src = (t - w0) ^ (unsigned)f.lane_mask;
        memcpy(got[t - w0], threads[src < 32 ? w0 + src : t].value, 8);
    }
    for (unsigned t = w0; t < w1; t++)
        if (threads[t].state == AT_SHUFFLE) memcpy(threads[t].value, got[t - w0], 8);
    warp_at_shuffle[w] = 0;
    queue_ready(w0, w1, AT_SHUFFLE);
}

/* Completes __syncthreads once every thread that has not exited waits in it (exited threads count as arrived). */
void try_release_barrier()
{
    if (nat_barrier == 0 || nat_barrier + ndone != nthreads) return;
    unsigned first = 0;
    while (threads[first].state != AT_BARRIER) first++;
    for (unsigned t = first + 1; t < nthreads; t++)
        if (threads[t].state == AT_BARRIER && !same_site(threads[t], threads[first]))
            block_fatal("threads wait in different __syncthreads", t);
    nat_barrier = 0;
    queue_ready(0, nthreads, AT_BARRIER);
}

/* Parks the running thread in state s; the scheduler resumes it once its wait is released. */
void wait_in(thread_state s, const char *file, int line)
{
    emu_thread &t = threads[current];
    t.state = s;
    t.file = file;
    t.line = line;
    if (s == AT_BARRIER) {
        nat_barrier++;
        try_release_barrier();
    } else {
        warp_at_shuffle[current / 32]++;
        try_release_shuffle(current / 32);
    }
    context_switch(&t.ctx, next_context());
}

[[noreturn]] void thread_main()
{
    thread_body(thread_ctx);
    threads[current].state = DONE;
    ndone++;
    warp_done[current / 32]++;
    /* an exit may be what a wait was missing */
    try_release_shuffle(current / 32);
    try_release_barrier();
    context *self = &threads[current].ctx;
    context_switch(self, next_context()); /* never resumed */
    abort();
}

/* Runs every thread of the current block to completion. */
void run_block()
{
    ndone = nat_barrier = 0;
    releases = blockIdx.x + blockIdx.y + blockIdx.z; /* blocks start forwards and backwards in turn */
    memset(warp_done, 0, sizeof warp_done);
    memset(warp_at_shuffle, 0, sizeof warp_at_shuffle);
    run_next.clear();
    for (unsigned t = 0; t < nthreads; t++) {
        emu_thread &x = threads[t];
        /* stack tops a whole number of pages apart would share cache sets: stagger them by cache lines */
        context_init(&x.ctx, x.stack, STACK_BYTES - (t % 61) * 64, thread_main);
        x.idx.x = t % blockDim.x;
        x.idx.y = t / blockDim.x % blockDim.y;
        x.idx.z = t / (blockDim.x * blockDim.y);
        x.state = READY;
        x.file = NULL;
        x.line = 0;
    }
    const bool forwards = forwards_next();
    for (unsigned i = 0; i < nthreads; i++) run_next.push_back(forwards ? i : nthreads - 1 - i);
    while (!run_next.empty()) {
        run_now.swap(run_next);
        run_next.clear();
        run_pos = 0;
        context_switch(&scheduler_ctx, next_context());
    }
    if (ndone != nthreads)
        for (unsigned t = 0; t < nthreads; t++)
            if (threads[t].state != DONE) block_fatal("deadlock: no thread can go on", t);
}

bool in_kernel() { return running_kernel != NULL; }

/* ---- the profile: ZF_CUDA_EMU_PROFILE=1 prints where emulation time went, at exit -------------------------------- */

struct profile_entry {
    double seconds;
    uint64_t calls, threads;
};
std::map<std::string, profile_entry> profile;

double now_seconds()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void print_profile()
{
    std::vector<std::pair<std::string, profile_entry>> rows(profile.begin(), profile.end());
    std::sort(rows.begin(), rows.end(),
              [](const auto &a, const auto &b) { return a.second.seconds > b.second.seconds; });
    fprintf(stderr, "cuda-emu profile: seconds, calls, emulated threads\n");
    for (const auto &r : rows)
        fprintf(stderr, "  %9.3f %9llu %14llu  %s\n", r.second.seconds, (unsigned long long)r.second.calls,
                (unsigned long long)r.second.threads, r.first.c_str());
}

bool profiling()
{
    static int on = -1;
    if (on < 0) {
        const char *s = getenv("ZF_CUDA_EMU_PROFILE");
        on = s && *s && strcmp(s, "0") != 0;
        if (on) atexit(print_profile);
    }
    return on;
}

} /* namespace */

/* ---- public: the scheduler --------------------------------------------------------------------------------------- */

extern "C" void zf_emu_syncthreads(const char *file, int line)
{
    if (!in_kernel()) zf_emu_fatal("__syncthreads outside a kernel (%s:%d)", file, line);
    wait_in(AT_BARRIER, file, line);
}

extern "C" void zf_emu_shfl_xor(unsigned mask, void *v, size_t bytes, int lane_mask, int width, const char *file,
                                int line)
{
    if (!in_kernel()) zf_emu_fatal("a warp shuffle outside a kernel (%s:%d)", file, line);
    if (width != 32) zf_emu_fatal("%s:%d: only shuffles over whole warps are emulated", file, line);
    unsigned lane = (unsigned)(current % 32);
    if (!(mask >> lane & 1u)) zf_emu_fatal("%s:%d: lane %u shuffles but is not in mask 0x%x", file, line, lane, mask);
    emu_thread &t = threads[current];
    t.mask = mask;
    t.lane_mask = lane_mask;
    memcpy(t.value, v, bytes);
    wait_in(AT_SHUFFLE, file, line);
    memcpy(v, threads[current].value, bytes);
}

extern "C" void zf_emu_check_kernel_pointer(const char *kernel, int arg, const void *p)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    if (p && !is_device(p))
        zf_emu_fatal("kernel %s: pointer argument %d (%p) is not device memory", kernel, arg + 1, p);
}

extern "C" void zf_emu_run_grid(const char *kernel, const zf_emu::launch_config *cfg, void (*body)(void *), void *ctx)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    const dim3 &gd = cfg->grid, &bd = cfg->block;
    uint64_t per_block = (uint64_t)bd.x * bd.y * bd.z;
    /* the device's limits: a bad configuration is a launch error, reported by cudaGetLastError */
    if (gd.x == 0 || gd.y == 0 || gd.z == 0 || per_block == 0 || per_block > MAX_THREADS || gd.x > 0x7fffffffu ||
        gd.y > 65535u || gd.z > 65535u || bd.z > 64u) {
        fail(cudaErrorInvalidConfiguration);
        return;
    }
    if (cfg->shared_bytes > 0) zf_emu_fatal("kernel %s: dynamic shared memory is not emulated", kernel);
    if (threads.empty()) {
        threads.resize(MAX_THREADS);
        for (emu_thread &t : threads) t.stack = (char *)malloc(STACK_BYTES);
    }
    gridDim = gd;
    blockDim = bd;
    nthreads = (unsigned)per_block;
    thread_body = body;
    thread_ctx = ctx;
    running_kernel = kernel;
    const double t0 = profiling() ? now_seconds() : 0.0;
    zf_emu_device_open();
    for (unsigned z = 0; z < gd.z; z++)
        for (unsigned y = 0; y < gd.y; y++)
            for (unsigned x = 0; x < gd.x; x++) {
                blockIdx = uint3{x, y, z};
                run_block();
            }
    zf_emu_device_close();
    running_kernel = NULL;
    if (profiling()) zf_emu_profile(kernel, now_seconds() - t0, (uint64_t)gd.x * gd.y * gd.z * per_block);
}

extern "C" void zf_emu_profile(const char *what, double seconds, uint64_t threads)
{
    if (!profiling()) return;
    profile_entry &e = profile[what];
    e.seconds += seconds;
    e.calls++;
    e.threads += threads;
}

/* ---- public: memory checks for the emulated libraries ---------------------------------------------------------- */

extern "C" void zf_emu_check_device_range(const void *p, size_t bytes, const char *what)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    if (bytes == 0) return;
    if (!find_allocation(p, bytes, NULL))
        zf_emu_fatal("%s: [%p, +%zu bytes) is not inside one device allocation (%s)", what, p, bytes,
                     describe_address((uintptr_t)p).c_str());
}

extern "C" void zf_emu_device_open(void)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    if (open_depth++ == 0) protect_all(PROT_READ | PROT_WRITE);
}

extern "C" void zf_emu_device_close(void)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    if (--open_depth == 0) protect_all(PROT_NONE);
}

extern "C" void zf_emu_set_call(const char *name)
{
    static double t0;
    if (name) t0 = profiling() ? now_seconds() : 0.0;
    else if (running_call) zf_emu_profile(running_call, now_seconds() - t0, 0);
    running_call = name;
}

extern "C" void zf_emu_fatal(const char *fmt, ...)
{
    fflush(stdout);
    fprintf(stderr, "cuda-emu: ");
    if (running_call) fprintf(stderr, "%s: ", running_call);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

/* ---- public: the runtime API ------------------------------------------------------------------------------------ */

extern "C" {

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = device_count();
    if (*count <= 0) {
        *count = 0;
        return fail(cudaErrorNoDevice);
    }
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "CUDA emulator on the CPU");
    prop->totalGlobalMem = device_memory();
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 1;
    prop->maxThreadsPerBlock = (int)MAX_THREADS;
    prop->warpSize = 32;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    *total_bytes = device_memory();
    *free_bytes = *total_bytes > live_bytes ? *total_bytes - live_bytes : 0;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **dev, size_t bytes)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    install_fault_handler();
    *dev = NULL;
    if (bytes == 0) return fail(cudaErrorInvalidValue);
    if (bytes > device_memory() - (live_bytes < device_memory() ? live_bytes : device_memory()))
        return fail(cudaErrorMemoryAllocation);
    size_t data_pages = (bytes + page_size - 1) / page_size * page_size;
    void *map = mmap(NULL, data_pages + page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
    char *p = (char *)map + data_pages - bytes;
    /* fresh device memory holds garbage: NaN bytes make a read before the first write show in the results */
    memset(p, 0xff, bytes);
    if (mprotect((char *)map + data_pages, page_size, PROT_NONE) != 0 ||
        (open_depth == 0 && mprotect(map, data_pages, PROT_NONE) != 0))
        zf_emu_fatal("mprotect of a new device allocation failed: %s", strerror(errno));
    allocations[(uintptr_t)p] = allocation{(char *)map, data_pages, bytes};
    live_bytes += bytes;
    *dev = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *dev)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    if (!dev) return cudaSuccess;
    auto it = allocations.find((uintptr_t)dev);
    if (it == allocations.end()) zf_emu_fatal("cudaFree(%p): not the start of a live device allocation", dev);
    munmap(it->second.map, it->second.data_pages + page_size);
    live_bytes -= it->second.bytes;
    allocations.erase(it);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    if (bytes == 0) return cudaSuccess;
    const bool dst_dev = is_device(dst), src_dev = is_device(src);
    switch (kind) {
    case cudaMemcpyHostToDevice:
        zf_emu_check_device_range(dst, bytes, "cudaMemcpy host to device, destination");
        if (src_dev) zf_emu_fatal("cudaMemcpy host to device: the source %p is device memory", src);
        break;
    case cudaMemcpyDeviceToHost:
        zf_emu_check_device_range(src, bytes, "cudaMemcpy device to host, source");
        if (dst_dev) zf_emu_fatal("cudaMemcpy device to host: the destination %p is device memory", dst);
        break;
    case cudaMemcpyDeviceToDevice:
        zf_emu_check_device_range(src, bytes, "cudaMemcpy device to device, source");
        zf_emu_check_device_range(dst, bytes, "cudaMemcpy device to device, destination");
        break;
    case cudaMemcpyDefault:
        if (dst_dev) zf_emu_check_device_range(dst, bytes, "cudaMemcpy, destination");
        if (src_dev) zf_emu_check_device_range(src, bytes, "cudaMemcpy, source");
        break;
    default: return fail(cudaErrorInvalidMemcpyDirection);
    }
    zf_emu_device_open();
    memmove(dst, src, bytes);
    zf_emu_device_close();
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind, cudaStream_t)
{
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *dev, int value, size_t bytes)
{
    std::lock_guard<std::recursive_mutex> g(emu_lock);
    zf_emu_check_device_range(dev, bytes, "cudaMemset");
    zf_emu_device_open();
    memset(dev, value, bytes);
    zf_emu_device_close();
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dev, int value, size_t bytes, cudaStream_t) { return cudaMemset(dev, value, bytes); }

struct zf_emu_stream {
    unsigned flags;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags)
{
    *stream = new zf_emu_stream{flags};
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    delete stream;
    return cudaSuccess;
}

/* Work runs as it is queued: a stream is always complete. */
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }

struct zf_emu_event {
    double t;
};

cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    *event = new zf_emu_event{0.0};
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    delete event;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t)
{
    event->t = now_seconds();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    *ms = (float)((end->t - start->t) * 1e3);
    return cudaSuccess;
}

} /* extern "C" */
