// Kernel timeline for performance work: with GLINT_CUDA_KERNEL_TRACE=FILE, every kernel the process
// runs (replayed CUDA graphs and side streams included) is written to FILE as CSV when the process
// exits: name, stream, start and end on the GPU clock (ns), grid, graph and graph node. Nsight Compute
// times kernels one at a time, so it cannot show what overlaps in a decode step; this can
// (tools/cuda/trace_summary.py reads it). FILE.host.csv gets, on the same clock, every CUDA runtime
// call (its time on the host thread) and every copy and memset (on the GPU): what runs between the
// replayed graphs of decode steps. The records come from CUPTI's activity API, loaded with
// dlopen only when the variable is set: glint neither links CUPTI nor needs it otherwise.
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_internal.cuh"

#if __has_include(<cupti.h>)
#include <cupti.h>

namespace {

struct cupti_api {
    decltype(&cuptiActivityRegisterCallbacks) register_callbacks;
    decltype(&cuptiActivityEnable) enable;
    decltype(&cuptiActivityGetNextRecord) next_record;
    decltype(&cuptiActivityFlushAll) flush_all;
    decltype(&cuptiGetCallbackName) callback_name;
};
cupti_api api;
FILE *trace_file, *host_file;
pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
enum { TRACE_BUFFER_BYTES = 8 << 20 };

void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = (uint8_t *)aligned_alloc(8, TRACE_BUFFER_BYTES);
    *size = *buffer ? TRACE_BUFFER_BYTES : 0;
    *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t *buffer, size_t, size_t valid_bytes) {
    CUpti_Activity *record = NULL;
    pthread_mutex_lock(&trace_lock);
    while (trace_file && api.next_record(buffer, valid_bytes, &record) == CUPTI_SUCCESS) {
        if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) {
            const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)record;
            // the name is mangled C++; quoted, since template arguments hold commas
            fprintf(trace_file, "\"%s\",%u,%llu,%llu,%d,%d,%d,%d,%u,%llu\n", k->name ? k->name : "?", k->streamId,
                    (unsigned long long)k->start, (unsigned long long)k->end, k->gridX, k->gridY, k->gridZ,
                    k->blockX, k->graphId, (unsigned long long)k->graphNodeId);
        } else if (record->kind == CUPTI_ACTIVITY_KIND_RUNTIME && host_file) {
            const CUpti_ActivityAPI *a = (const CUpti_ActivityAPI *)record;
            const char *name = NULL;
            if (api.callback_name(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name) != CUPTI_SUCCESS) name = NULL;
            fprintf(host_file, "api,%s,%llu,%llu,%u,0\n", name ? name : "?", (unsigned long long)a->start,
                    (unsigned long long)a->end, a->threadId);
        } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMCPY && host_file) {
            const CUpti_ActivityMemcpy6 *c = (const CUpti_ActivityMemcpy6 *)record;
            fprintf(host_file, "memcpy,kind%u,%llu,%llu,%u,%llu\n", (unsigned)c->copyKind,
                    (unsigned long long)c->start, (unsigned long long)c->end, c->streamId,
                    (unsigned long long)c->bytes);
        } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMSET && host_file) {
            const CUpti_ActivityMemset4 *c = (const CUpti_ActivityMemset4 *)record;
            fprintf(host_file, "memset,-,%llu,%llu,%u,%llu\n", (unsigned long long)c->start,
                    (unsigned long long)c->end, c->streamId, (unsigned long long)c->bytes);
        }
    }
    pthread_mutex_unlock(&trace_lock);
    free(buffer);
}

void trace_at_exit(void) {
    api.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    pthread_mutex_lock(&trace_lock);
    fclose(trace_file);
    trace_file = NULL;
    if (host_file) fclose(host_file);
    host_file = NULL;
    pthread_mutex_unlock(&trace_lock);
}

// libcupti from GLINT_CUPTI_LIB, the loader's path, or where CUDA 12 and 13 toolkits put it.
void *open_cupti(void) {
    const char *given = getenv("GLINT_CUPTI_LIB");
    const char *paths[] = {given, "libcupti.so", "libcupti.so.13", "libcupti.so.12",
                           "/usr/local/cuda/lib64/libcupti.so", "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so",
                           "/usr/local/cuda/lib/libcupti.so"};
    for (const char *p : paths)
        if (p && *p) {
            void *lib = dlopen(p, RTLD_NOW | RTLD_GLOBAL);
            if (lib) return lib;
        }
    return NULL;
}

}  // namespace

void glint_cuda_trace_start(void) {
    static int started;
    if (started) return;
    started = 1;
    const char *path = getenv("GLINT_CUDA_KERNEL_TRACE");
    if (!path || !*path) return;
    void *lib = open_cupti();
    if (!lib) {
        fprintf(stderr, "glint: GLINT_CUDA_KERNEL_TRACE: cannot load libcupti (%s); set GLINT_CUPTI_LIB\n", dlerror());
        return;
    }
    api.register_callbacks = (decltype(api.register_callbacks))dlsym(lib, "cuptiActivityRegisterCallbacks");
    api.enable = (decltype(api.enable))dlsym(lib, "cuptiActivityEnable");
    api.next_record = (decltype(api.next_record))dlsym(lib, "cuptiActivityGetNextRecord");
    api.flush_all = (decltype(api.flush_all))dlsym(lib, "cuptiActivityFlushAll");
    api.callback_name = (decltype(api.callback_name))dlsym(lib, "cuptiGetCallbackName");
    if (!api.register_callbacks || !api.enable || !api.next_record || !api.flush_all || !api.callback_name) {
        fprintf(stderr, "glint: GLINT_CUDA_KERNEL_TRACE: libcupti lacks the activity API\n");
        return;
    }
    trace_file = fopen(path, "w");
    if (!trace_file) {
        fprintf(stderr, "glint: GLINT_CUDA_KERNEL_TRACE: cannot write %s\n", path);
        return;
    }
    fprintf(trace_file, "name,stream,start_ns,end_ns,grid_x,grid_y,grid_z,block_x,graph,graph_node\n");
    if (api.register_callbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
        api.enable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "glint: GLINT_CUDA_KERNEL_TRACE: CUPTI refused the kernel activity records\n");
        fclose(trace_file);
        trace_file = NULL;
        return;
    }
    // The host side, best effort: the kernels' file is written without it.
    char host_path[4096];
    snprintf(host_path, sizeof host_path, "%s.host.csv", path);
    host_file = fopen(host_path, "w");
    if (host_file) {
        fprintf(host_file, "kind,name,start_ns,end_ns,thread_or_stream,bytes\n");
        if (api.enable(CUPTI_ACTIVITY_KIND_RUNTIME) != CUPTI_SUCCESS ||
            api.enable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS ||
            api.enable(CUPTI_ACTIVITY_KIND_MEMSET) != CUPTI_SUCCESS)
            fprintf(stderr, "glint: GLINT_CUDA_KERNEL_TRACE: CUPTI refused runtime or copy records; %s is partial\n",
                    host_path);
    }
    atexit(trace_at_exit);  // after the CUDA runtime's own: runs before its teardown
    fprintf(stderr, "glint: recording every kernel into %s (CUPTI), runtime calls and copies into %s\n", path,
            host_path);
}

#else

void glint_cuda_trace_start(void) {
    const char *path = getenv("GLINT_CUDA_KERNEL_TRACE");
    if (path && *path) fprintf(stderr, "glint: GLINT_CUDA_KERNEL_TRACE: this build had no cupti.h; nothing recorded\n");
}

#endif
