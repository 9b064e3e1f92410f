// Tensor parallelism on CUDA (backend.h tp_connect / tp_disconnect / all_reduce_sum): a one-shot
// all-reduce through peer-to-peer memory (NVLink or PCIe P2P), without NCCL.
//
// Every rank's device holds a communication buffer that the peers read, a flags array that the peers
// write, and an epoch counter per block. An all-reduce of x[n] is one round per TP_CAP floats, one
// kernel per round on the rank's stream. The grid depends on n only, so every rank runs the same
// blocks on the same chunks of x; block b of every rank:
//   1. takes its next epoch (counters[b] + 1) and copies its chunk of x into its region of its own
//      buffer (region b, half epoch & 1);
//   2. posts the epoch into flags[rank][b] of every peer (a release store at system scope);
//   3. waits until flags[p][b] of its own array holds at least the epoch for every peer p;
//   4. sums the chunk over the ranks in rank order (its own x, the peers' regions), so every rank
//      gets the same bits, and writes it to x.
//
// Why a half can be rewritten two rounds of block b later: a rank rewrites half h of region b in round
// e + 2 of its block b. That kernel starts after the rank's round e + 1 kernel ended (stream order),
// which waited for every peer's round e + 1 epoch of block b; a peer posts that from a kernel that
// starts after its round e kernel, where it read half h, ended. Reads are done before the post that
// allows the rewrite. The same argument gives >= in step 3: a peer can be one round ahead (it posted
// e + 1 after seeing our e), never two.
//
// A block that waits more than TP_TIMEOUT_NS for a peer gives up: its chunk becomes NaN, the rank's
// link is marked broken on the device (every later round gives NaN at once instead of waiting again)
// and in host memory, where the next all_reduce_sum call reads it and sets the error.
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.cuh"

enum {
    TP_MAX_BLOCKS = 64,                  // resident together on any card (a block waits for its peers)
    TP_REGION = 1 << 16,                 // floats of block b's region per half (256 KiB)
    TP_CAP = TP_MAX_BLOCKS * TP_REGION,  // floats per round (4 Mi, 16 MiB; a buffer holds two halves)
    TP_THREADS = 512,
    TP_MIN_CHUNK = 1024,  // floats per block at least: a decode step's all-reduce uses a few blocks
};
static const unsigned long long TP_TIMEOUT_NS = 20ull * 1000 * 1000 * 1000;

struct tp_args {  // fixed from tp_connect on: a captured graph replays the kernel with the same
    float *comm[GLINT_MAX_TP];                // rank p's buffer [TP_MAX_BLOCKS][2][TP_REGION]
    unsigned long long *flags[GLINT_MAX_TP];  // rank p's flags [GLINT_MAX_TP][TP_MAX_BLOCKS]: [q][b] = the
                                              // last epoch block b of rank q posted to rank p
    unsigned long long *counters;             // this rank's [TP_MAX_BLOCKS]: the last epoch of each block
    int *broken;                              // this rank's device word: a wait timed out
    int *timed_out;                           // host memory: 1 + the rank waited for in vain
    int rank, n_ranks;
};

__device__ __forceinline__ unsigned long long tp_load_acquire(const unsigned long long *p) {
    unsigned long long v;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void tp_store_release(unsigned long long *p, unsigned long long v) {
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

__device__ __forceinline__ float4 tp_add(float4 a, float4 b) {
    return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

__global__ void __launch_bounds__(TP_THREADS) tp_all_reduce_kernel(float *x, int n, tp_args a) {
    __shared__ unsigned long long block_epoch;
    __shared__ int failed;
    const int b = blockIdx.x, N = a.n_ranks, me = a.rank;
    // block b's chunk [begin, begin + len): a multiple of 4 floats from x, so float4 where x allows
    const int per = ((n + (int)gridDim.x - 1) / (int)gridDim.x + 3) & ~3;
    const int begin = min(n, b * per), len = min(n, begin + per) - begin;
    float *chunk = x + begin;
    const int n4 = (uintptr_t)x % 16 == 0 ? len / 4 : 0;
    if (threadIdx.x == 0) block_epoch = a.counters[b] + 1, failed = *(volatile int *)a.broken;
    __syncthreads();
    if (!failed) {
        const unsigned long long epoch = block_epoch;
        const size_t region = ((size_t)b * 2 + (epoch & 1)) * TP_REGION;
        // 1. the chunk into this rank's region, for the peers
        float *mine = a.comm[me] + region;
        for (int i = threadIdx.x; i < n4; i += blockDim.x) ((float4 *)mine)[i] = ((const float4 *)chunk)[i];
        for (int i = 4 * n4 + threadIdx.x; i < len; i += blockDim.x) mine[i] = chunk[i];
        __syncthreads();
        // 2. the epoch to every peer, after the copies (the barrier orders the block's copies before
        // this thread's fence, which makes them visible to the system before the flags)
        if (threadIdx.x == 0) {
            __threadfence_system();
            for (int p = 0; p < N; p++)
                if (p != me) tp_store_release(&a.flags[p][me * TP_MAX_BLOCKS + b], epoch);
            a.counters[b] = epoch;  // read by this block's next round, a later kernel
        }
        // 3. thread p waits for rank p (>=: a faster peer may have posted the next round already)
        if (threadIdx.x < N && (int)threadIdx.x != me) {
            const unsigned long long *flag = &a.flags[me][threadIdx.x * TP_MAX_BLOCKS + b];
            const unsigned long long start = global_now_ns();
            while (tp_load_acquire(flag) < epoch)
                if (global_now_ns() - start > TP_TIMEOUT_NS) {
                    failed = 1;
                    *(volatile int *)a.broken = 1;
                    *(volatile int *)a.timed_out = 1 + (int)threadIdx.x;
                    break;
                }
        }
        // the acquire above and this barrier order the peers' copies before every thread's reads
        __syncthreads();
    }
    if (failed) {  // no partial sums: NaN
        for (int i = threadIdx.x; i < len; i += blockDim.x) chunk[i] = __int_as_float(0x7fc00000);
        return;
    }
    // 4. the sum in rank order; peers' halves read uncached (.cv: never a stale line of an earlier round)
    const size_t region = ((size_t)b * 2 + (block_epoch & 1)) * TP_REGION;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        float4 v[GLINT_MAX_TP];  // every load first: one round trip to the peers, not one per rank
#pragma unroll
        for (int p = 0; p < GLINT_MAX_TP; p++)
            v[p] = p >= N    ? make_float4(0.0f, 0.0f, 0.0f, 0.0f)
                   : p == me ? ((const float4 *)chunk)[i]
                             : __ldcv((const float4 *)(a.comm[p] + region) + i);
        float4 sum = v[0];
#pragma unroll
        for (int p = 1; p < GLINT_MAX_TP; p++)
            if (p < N) sum = tp_add(sum, v[p]);
        ((float4 *)chunk)[i] = sum;
    }
    for (int i = 4 * n4 + threadIdx.x; i < len; i += blockDim.x) {
        float v[GLINT_MAX_TP];
#pragma unroll
        for (int p = 0; p < GLINT_MAX_TP; p++)
            v[p] = p >= N ? 0.0f : p == me ? chunk[i] : __ldcv(a.comm[p] + region + i);
        float sum = v[0];
#pragma unroll
        for (int p = 1; p < GLINT_MAX_TP; p++)
            if (p < N) sum += v[p];
        chunk[i] = sum;
    }
}

// What a rank shows the others through link->slots[rank].
struct tp_slot {
    int device;
    float *comm;
    unsigned long long *flags;
};

// A device's rank state (a device is at most one rank of one link).
static struct tp_rank {
    glint_tp_link *link;  // set by tp_connect, also when it failed: tp_disconnect still passes its wait
    int rank, connected;
    tp_slot slot;
    void *device_memory;  // comm, flags, counters and the broken word, one allocation
    int *timed_out;       // mapped host memory
    tp_args args;
} tp_ranks[GLINT_CUDA_MAX_DEVICES];

static void tp_release(tp_rank &t) {
    cudaFree(t.device_memory);
    if (t.timed_out) cudaFreeHost(t.timed_out);
    t.device_memory = NULL, t.timed_out = NULL, t.connected = 0;
}

// This rank's buffers, zeroed on the device before the peers may write into them. 0 or -1 (error set).
static int tp_allocate(tp_rank &t, int device) {
    const size_t comm_bytes = sizeof(float) * 2 * (size_t)TP_CAP;
    const size_t flags_bytes = sizeof(unsigned long long) * GLINT_MAX_TP * TP_MAX_BLOCKS;
    const size_t counters_bytes = sizeof(unsigned long long) * TP_MAX_BLOCKS;
    const size_t state_bytes = flags_bytes + counters_bytes + 16;
    char *base = NULL;
    if (cudaMalloc(&t.device_memory, comm_bytes + state_bytes) != cudaSuccess ||
        cudaHostAlloc(&t.timed_out, sizeof(int), cudaHostAllocMapped) != cudaSuccess) {
        cudaGetLastError();
        glint_set_error("CUDA device %d: out of memory for the all-reduce buffers (%zu MiB)", device,
                        (comm_bytes + state_bytes) >> 20);
        return -1;
    }
    *t.timed_out = 0;
    base = (char *)t.device_memory;
    t.slot.comm = (float *)base;
    t.slot.flags = (unsigned long long *)(base + comm_bytes);
    t.args.counters = (unsigned long long *)(base + comm_bytes + flags_bytes);
    t.args.broken = (int *)(base + comm_bytes + flags_bytes + counters_bytes);
    int *timed_out_on_device = NULL;
    if (cudaHostGetDevicePointer((void **)&timed_out_on_device, t.timed_out, 0) != cudaSuccess ||
        cudaMemsetAsync(base + comm_bytes, 0, state_bytes, glint_cuda_stream()) != cudaSuccess ||
        cudaStreamSynchronize(glint_cuda_stream()) != cudaSuccess) {
        glint_set_error("CUDA device %d: setting up the all-reduce buffers: %s", device,
                        cudaGetErrorString(cudaGetLastError()));
        return -1;
    }
    t.args.timed_out = timed_out_on_device;
    return 0;
}

// Peer access from this rank's device to every peer's. 0 or -1 (error set, naming both devices).
static int tp_reach_peers(const glint_tp_link *link, int rank, int device) {
    for (int p = 0; p < link->n_ranks; p++) {
        if (p == rank) continue;
        const int peer = ((const tp_slot *)link->slots[p])->device;
        if (peer == device) {
            glint_set_error("tensor-parallel ranks %d and %d are both on CUDA device %d", rank, p, device);
            return -1;
        }
        int can = 0;
        if (cudaDeviceCanAccessPeer(&can, device, peer) != cudaSuccess || !can) {
            cudaGetLastError();
            glint_set_error("CUDA device %d (rank %d) cannot access the memory of device %d (rank %d): tensor "
                            "parallelism needs peer-to-peer access (NVLink or PCIe P2P) between every pair of GPUs",
                            device, rank, peer, p);
            return -1;
        }
        const cudaError_t err = cudaDeviceEnablePeerAccess(peer, 0);
        if (err == cudaErrorPeerAccessAlreadyEnabled) {
            cudaGetLastError();  // enabled by an earlier link: fine
        } else if (err != cudaSuccess) {
            cudaGetLastError();
            glint_set_error("CUDA device %d (rank %d): enabling peer access to device %d (rank %d): %s", device, rank,
                            peer, p, cudaGetErrorString(err));
            return -1;
        }
    }
    return 0;
}

extern "C" int glint_cuda_tp_connect(glint_backend *be, glint_tp_link *link, int rank) {
    const int device = glint_cuda_device_of(be), N = link->n_ranks;
    tp_rank &t = tp_ranks[device];
    memset(&t, 0, sizeof t);
    t.link = link, t.rank = rank, t.slot.device = device;
    int failed = 0;  // this rank's own failure (its error set)
    if (glint_cuda_device() != device) {
        glint_set_error("tensor-parallel rank %d: the backend of CUDA device %d is used from a thread bound to device "
                        "%d (each rank's thread calls glint_backend_cuda for its device)",
                        rank, device, glint_cuda_device());
        failed = 1;
    } else if (N < 1 || N > GLINT_MAX_TP || rank < 0 || rank >= N) {
        glint_set_error("tensor-parallel rank %d of %d: out of range", rank, N);
        failed = 1;
    } else if (N > 1) {
        failed = tp_allocate(t, device) != 0;
    }
    link->slots[rank] = &t.slot;
    if (failed) link->failed = 1;
    glint_tp_link_wait(link);  // every rank's device and buffers are published
    if (!failed && N > 1 && tp_reach_peers(link, rank, device)) failed = 1, link->failed = 1;
    glint_tp_link_wait(link);  // every rank knows whether every rank could connect
    if (link->failed) {
        if (!failed) glint_set_error("tensor-parallel rank %d (CUDA device %d): another rank could not connect", rank,
                                     device);
        tp_release(t);
        return -1;
    }
    for (int p = 0; p < N && N > 1; p++) {
        const tp_slot *s = (const tp_slot *)link->slots[p];
        t.args.comm[p] = s->comm, t.args.flags[p] = s->flags;
    }
    t.args.rank = rank, t.args.n_ranks = N;
    t.connected = 1;
    return 0;
}

extern "C" void glint_cuda_tp_disconnect(glint_backend *be) {
    const int device = glint_cuda_device_of(be);
    tp_rank &t = tp_ranks[device];
    if (!t.link) return;
    // No kernel of this rank touches a peer's memory after this, and after the wait none of any rank's
    // touches this rank's: its buffers can go.
    cudaStreamSynchronize(glint_cuda_devices[device].stream);
    cudaGetLastError();
    glint_tp_link_wait(t.link);
    tp_release(t);
    memset(&t, 0, sizeof t);
}

extern "C" void glint_cuda_all_reduce_sum(glint_backend *be, float *x, size_t n) {
    const int device = glint_cuda_device_of(be);
    tp_rank &t = tp_ranks[device];
    if (!t.link || t.link->n_ranks == 1 || n == 0) return;  // one rank: x is the sum
    if (!t.connected || glint_cuda_device() != device) {
        glint_set_error("CUDA all_reduce_sum on device %d: %s", device,
                        !t.connected ? "the rank is not connected" : "called from a thread bound to another device");
        glint_cuda_fail();
        return;
    }
    const int waited_for = *(volatile int *)t.timed_out;
    if (waited_for) {  // the kernel fills NaN from then on; say why
        glint_set_error("CUDA all_reduce_sum: rank %d (device %d) waited more than %llu s for rank %d; the ranks "
                        "are out of step",
                        t.rank, device, TP_TIMEOUT_NS / 1000000000ull, waited_for - 1);
        glint_cuda_fail();
    }
    for (size_t done = 0; done < n; done += TP_CAP) {
        const int len = (int)(n - done < (size_t)TP_CAP ? n - done : (size_t)TP_CAP);
        int blocks = (len + TP_MIN_CHUNK - 1) / TP_MIN_CHUNK;  // from n alone: the same grid on every rank
        if (blocks > TP_MAX_BLOCKS) blocks = TP_MAX_BLOCKS;
        tp_all_reduce_kernel<<<blocks, TP_THREADS, 0, glint_cuda_stream()>>>(x + done, len, t.args);
    }
    glint_cuda_check("all_reduce_sum");
}
