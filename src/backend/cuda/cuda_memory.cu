// Device memory of the calling thread's CUDA device, for the server's KV pool plan
// (--mem-fraction-static).
#include "backend/cuda/cuda_internal.cuh"

extern "C" int glint_cuda_memory_info(size_t *free_bytes, size_t *total_bytes) {
    glint_cuda_device();  // a thread that never made a backend asks about the first backend's device
    cudaError_t err = cudaMemGetInfo(free_bytes, total_bytes);
    if (err != cudaSuccess) {
        glint_set_error("cudaMemGetInfo: %s", cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

extern "C" int glint_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {  // no driver or no device: not an error here
        cudaGetLastError();
        return 0;
    }
    return n;
}
