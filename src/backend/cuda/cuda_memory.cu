// Device memory of the current CUDA device, for the server's KV pool plan (--mem-fraction-static).
#include <cuda_runtime.h>

extern "C" {
#include "backend/backend.h"
#include "common/util.h"
}

extern "C" int glint_cuda_memory_info(size_t *free_bytes, size_t *total_bytes) {
    cudaError_t err = cudaMemGetInfo(free_bytes, total_bytes);
    if (err != cudaSuccess) {
        glint_set_error("cudaMemGetInfo: %s", cudaGetErrorString(err));
        return -1;
    }
    return 0;
}
