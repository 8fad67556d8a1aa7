/**
 * The binding tables of the CUDA driver API (libcuda) and NVRTC (libnvrtc) entry points this
 * library calls, in the vocabulary of {@linkcode openLibrary}. Signatures follow `cuda.h` and
 * `nvrtc.h` of CUDA 13.0; the versioned names (`_v2`) are the ones those headers map the plain
 * names to, because the plain exports are the old ABI kept for binaries built against it.
 *
 * Type choices:
 * - `CUresult` / `nvrtcResult` are C enums: `i32`.
 * - `CUdevice` is `int`: `i32`.
 * - Opaque handles (`CUcontext`, `CUstream`, `CUevent`, `CUmodule`, `CUfunction`,
 *   `nvrtcProgram`) and `CUdeviceptr` are bound as `u64`, so they are plain `bigint` values in
 *   JS under both runtimes. On the supported 64-bit ABIs (x86-64 System V, AArch64) a pointer
 *   and a 64-bit integer travel in the same registers.
 * - Out-parameters and host memory are `buffer` (a typed array, see `outU64` and friends).
 *
 * @module
 */

import type { SymbolTable } from "./dlopen.ts";

/** The CUDA driver API symbols used by {@linkcode CudaDriver}. */
export const CUDA_SYMBOLS = {
  // Initialization, version, errors
  /** CUresult cuInit(unsigned int Flags) */
  cuInit: { parameters: ["u32"], result: "i32" },
  /** CUresult cuDriverGetVersion(int* driverVersion) */
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  /** CUresult cuGetErrorName(CUresult error, const char** pStr) */
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32" },
  /** CUresult cuGetErrorString(CUresult error, const char** pStr) */
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32" },

  // Devices
  /** CUresult cuDeviceGet(CUdevice* device, int ordinal) */
  cuDeviceGet: { parameters: ["buffer", "i32"], result: "i32" },
  /** CUresult cuDeviceGetCount(int* count) */
  cuDeviceGetCount: { parameters: ["buffer"], result: "i32" },
  /** CUresult cuDeviceGetName(char* name, int len, CUdevice dev) */
  cuDeviceGetName: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  /** CUresult cuDeviceGetAttribute(int* pi, CUdevice_attribute attrib, CUdevice dev) */
  cuDeviceGetAttribute: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  /** CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) */
  cuDeviceTotalMem_v2: { parameters: ["buffer", "i32"], result: "i32" },

  // Contexts
  /** CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) */
  cuDevicePrimaryCtxRetain: { parameters: ["buffer", "i32"], result: "i32" },
  /** CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) */
  cuDevicePrimaryCtxRelease_v2: { parameters: ["i32"], result: "i32" },
  /** CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev): a faulted primary context is reset */
  cuDevicePrimaryCtxReset_v2: { parameters: ["i32"], result: "i32", optional: true },
  /** CUresult cuCtxSetCurrent(CUcontext ctx) */
  cuCtxSetCurrent: { parameters: ["u64"], result: "i32" },
  /** CUresult cuCtxGetCurrent(CUcontext* pctx) */
  cuCtxGetCurrent: { parameters: ["buffer"], result: "i32" },
  /** CUresult cuCtxSynchronize(void) */
  cuCtxSynchronize: { parameters: [], result: "i32" },
  /** CUresult cuCtxGetLimit(size_t* pvalue, CUlimit limit) */
  cuCtxGetLimit: { parameters: ["buffer", "i32"], result: "i32" },
  /** CUresult cuCtxSetLimit(CUlimit limit, size_t value): waits for the device to go idle */
  cuCtxSetLimit: { parameters: ["i32", "usize"], result: "i32" },

  // Streams
  /** CUresult cuStreamCreate(CUstream* phStream, unsigned int Flags) */
  cuStreamCreate: { parameters: ["buffer", "u32"], result: "i32" },
  /** CUresult cuStreamDestroy_v2(CUstream hStream) */
  cuStreamDestroy_v2: { parameters: ["u64"], result: "i32" },
  /** CUresult cuStreamSynchronize(CUstream hStream) */
  cuStreamSynchronize: { parameters: ["u64"], result: "i32" },
  /** CUresult cuStreamQuery(CUstream hStream): CUDA_SUCCESS or CUDA_ERROR_NOT_READY */
  cuStreamQuery: { parameters: ["u64"], result: "i32" },

  // Events
  /** CUresult cuEventCreate(CUevent* phEvent, unsigned int Flags) */
  cuEventCreate: { parameters: ["buffer", "u32"], result: "i32" },
  /** CUresult cuEventRecord(CUevent hEvent, CUstream hStream) */
  cuEventRecord: { parameters: ["u64", "u64"], result: "i32" },
  /** CUresult cuEventSynchronize(CUevent hEvent) */
  cuEventSynchronize: { parameters: ["u64"], result: "i32" },
  /** CUresult cuEventElapsedTime_v2(float* pMilliseconds, CUevent hStart, CUevent hEnd); 12.8+ */
  cuEventElapsedTime_v2: { parameters: ["buffer", "u64", "u64"], result: "i32", optional: true },
  /** CUresult cuEventElapsedTime(float*, CUevent, CUevent): the pre-12.8 export */
  cuEventElapsedTime: { parameters: ["buffer", "u64", "u64"], result: "i32", optional: true },
  /** CUresult cuEventDestroy_v2(CUevent hEvent) */
  cuEventDestroy_v2: { parameters: ["u64"], result: "i32" },

  // Memory
  /** CUresult cuMemGetInfo_v2(size_t* free, size_t* total) */
  cuMemGetInfo_v2: { parameters: ["buffer", "buffer"], result: "i32" },
  /** CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) */
  cuMemAlloc_v2: { parameters: ["buffer", "usize"], result: "i32" },
  /** CUresult cuMemFree_v2(CUdeviceptr dptr) */
  cuMemFree_v2: { parameters: ["u64"], result: "i32" },
  /** CUresult cuMemHostAlloc(void** pp, size_t bytesize, unsigned int Flags) */
  cuMemHostAlloc: { parameters: ["buffer", "usize", "u32"], result: "i32" },
  /** CUresult cuMemFreeHost(void* p) */
  cuMemFreeHost: { parameters: ["u64"], result: "i32" },
  /** CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* pdptr, void* p, unsigned int Flags) */
  cuMemHostGetDevicePointer_v2: { parameters: ["buffer", "u64", "u32"], result: "i32" },
  /** CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void* srcHost, size_t ByteCount) */
  cuMemcpyHtoD_v2: { parameters: ["u64", "buffer", "usize"], result: "i32" },
  /** CUresult cuMemcpyDtoH_v2(void* dstHost, CUdeviceptr srcDevice, size_t ByteCount) */
  cuMemcpyDtoH_v2: { parameters: ["buffer", "u64", "usize"], result: "i32" },
  /** CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount) */
  cuMemcpyDtoD_v2: { parameters: ["u64", "u64", "usize"], result: "i32" },
  /** CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) */
  cuMemcpyHtoDAsync_v2: { parameters: ["u64", "buffer", "usize", "u64"], result: "i32" },
  /** CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) */
  cuMemcpyDtoHAsync_v2: { parameters: ["buffer", "u64", "usize", "u64"], result: "i32" },
  /** CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N) */
  cuMemsetD8_v2: { parameters: ["u64", "u8", "usize"], result: "i32" },
  /** CUresult cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream s) */
  cuMemsetD32Async: { parameters: ["u64", "u32", "usize", "u64"], result: "i32" },

  // Modules and launch
  /** CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode* mode): 1 eager, 2 lazy (CUDA 11.7+) */
  cuModuleGetLoadingMode: { parameters: ["buffer"], result: "i32", optional: true },
  /** CUresult cuModuleLoadData(CUmodule* module, const void* image) */
  cuModuleLoadData: { parameters: ["buffer", "buffer"], result: "i32" },
  /** CUresult cuModuleUnload(CUmodule hmod) */
  cuModuleUnload: { parameters: ["u64"], result: "i32" },
  /** CUresult cuModuleGetFunction(CUfunction* hfunc, CUmodule hmod, const char* name) */
  cuModuleGetFunction: { parameters: ["buffer", "u64", "buffer"], result: "i32" },
  /** CUresult cuFuncGetAttribute(int* pi, CUfunction_attribute attrib, CUfunction hfunc) */
  cuFuncGetAttribute: { parameters: ["buffer", "i32", "u64"], result: "i32" },
  /** CUresult cuModuleGetGlobal_v2(CUdeviceptr* dptr, size_t* bytes, CUmodule, const char*) */
  cuModuleGetGlobal_v2: { parameters: ["buffer", "buffer", "u64", "buffer"], result: "i32" },
  /**
   * CUresult cuLaunchKernel(CUfunction f, unsigned gridDimX, gridDimY, gridDimZ,
   * unsigned blockDimX, blockDimY, blockDimZ, unsigned sharedMemBytes, CUstream hStream,
   * void** kernelParams, void** extra)
   */
  cuLaunchKernel: {
    parameters: [
      "u64",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u32",
      "u64",
      "buffer",
      "pointer",
    ],
    result: "i32",
  },
} as const satisfies SymbolTable;

/** The NVRTC symbols used by {@linkcode Nvrtc}. */
export const NVRTC_SYMBOLS = {
  /** nvrtcResult nvrtcVersion(int* major, int* minor) */
  nvrtcVersion: { parameters: ["buffer", "buffer"], result: "i32" },
  /** const char* nvrtcGetErrorString(nvrtcResult result) */
  nvrtcGetErrorString: { parameters: ["i32"], result: "pointer" },
  /**
   * nvrtcResult nvrtcCreateProgram(nvrtcProgram* prog, const char* src, const char* name,
   * int numHeaders, const char* const* headers, const char* const* includeNames)
   */
  nvrtcCreateProgram: {
    parameters: ["buffer", "buffer", "buffer", "i32", "pointer", "pointer"],
    result: "i32",
  },
  /** nvrtcResult nvrtcCompileProgram(nvrtcProgram prog, int numOptions, const char* const* options) */
  nvrtcCompileProgram: { parameters: ["u64", "i32", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram prog, size_t* logSizeRet) */
  nvrtcGetProgramLogSize: { parameters: ["u64", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetProgramLog(nvrtcProgram prog, char* log) */
  nvrtcGetProgramLog: { parameters: ["u64", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetPTXSize(nvrtcProgram prog, size_t* ptxSizeRet) */
  nvrtcGetPTXSize: { parameters: ["u64", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetPTX(nvrtcProgram prog, char* ptx) */
  nvrtcGetPTX: { parameters: ["u64", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetCUBINSize(nvrtcProgram prog, size_t* cubinSizeRet) */
  nvrtcGetCUBINSize: { parameters: ["u64", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetCUBIN(nvrtcProgram prog, char* cubin) */
  nvrtcGetCUBIN: { parameters: ["u64", "buffer"], result: "i32" },
  /** nvrtcResult nvrtcDestroyProgram(nvrtcProgram* prog) */
  nvrtcDestroyProgram: { parameters: ["buffer"], result: "i32" },
  /** nvrtcResult nvrtcGetNumSupportedArchs(int* numArchs); NVRTC 11.2+ */
  nvrtcGetNumSupportedArchs: { parameters: ["buffer"], result: "i32", optional: true },
  /** nvrtcResult nvrtcGetSupportedArchs(int* supportedArchs); NVRTC 11.2+ */
  nvrtcGetSupportedArchs: { parameters: ["buffer"], result: "i32", optional: true },
} as const satisfies SymbolTable;

/** The CUDA driver symbol table's type. */
export type CudaSymbols = typeof CUDA_SYMBOLS;
/** The NVRTC symbol table's type. */
export type NvrtcSymbols = typeof NVRTC_SYMBOLS;

/** CUresult values this library looks at by number. */
export const CUresult = {
  /** No error. */
  SUCCESS: 0,
  /** cuInit was not called, or failed. */
  NOT_INITIALIZED: 3,
  /** Asynchronous work has not completed yet (cuStreamQuery, cuEventQuery). */
  NOT_READY: 600,
  /** No CUDA-capable device is available. */
  NO_DEVICE: 100,
  /** The library is a stub (the toolkit's lib64/stubs/libcuda.so), not the driver. */
  STUB_LIBRARY: 34,
} as const;

/**
 * CUresults after which the context is unusable (a kernel trapped); every later call in the
 * context fails with the same error. The backend turns these into `KernelFaultError`.
 */
export const STICKY_CUDA_ERRORS: ReadonlySet<number> = new Set([
  700, // CUDA_ERROR_ILLEGAL_ADDRESS
  702, // CUDA_ERROR_LAUNCH_TIMEOUT
  710, // CUDA_ERROR_ASSERT
  714, // CUDA_ERROR_HARDWARE_STACK_ERROR
  715, // CUDA_ERROR_ILLEGAL_INSTRUCTION
  716, // CUDA_ERROR_MISALIGNED_ADDRESS
  717, // CUDA_ERROR_INVALID_ADDRESS_SPACE
  718, // CUDA_ERROR_INVALID_PC
  719, // CUDA_ERROR_LAUNCH_FAILED
]);

/** CUdevice_attribute values read by {@linkcode CudaDriver.deviceInfo}. */
export const CUdeviceAttribute = {
  /** Maximum threads per block. */
  MAX_THREADS_PER_BLOCK: 1,
  /** Maximum shared memory per block, bytes. */
  MAX_SHARED_MEMORY_PER_BLOCK: 8,
  /** Warp size, threads. */
  WARP_SIZE: 10,
  /** Number of streaming multiprocessors. */
  MULTIPROCESSOR_COUNT: 16,
  /** 1 when the device shares physical memory with the host. */
  INTEGRATED: 18,
  /** 1 when host memory can be mapped into the device's address space. */
  CAN_MAP_HOST_MEMORY: 19,
  /** PCI bus id. */
  PCI_BUS_ID: 33,
  /** 1 when host and device share one virtual address space. */
  UNIFIED_ADDRESSING: 41,
  /** Compute capability, major. */
  COMPUTE_CAPABILITY_MAJOR: 75,
  /** Compute capability, minor. */
  COMPUTE_CAPABILITY_MINOR: 76,
  /** 1 when cooperative launches are supported. */
  COOPERATIVE_LAUNCH: 95,
} as const;

/** `CUlimit` values. */
export const CU_LIMIT = {
  /** Stack bytes of each GPU thread; the context's local memory is sized for it. */
  STACK_SIZE: 0,
} as const;

/** `CUfunction_attribute` values. */
export const CU_FUNC_ATTRIBUTE = {
  /** Local memory (stack frame included) each thread of the function uses, bytes. */
  LOCAL_SIZE_BYTES: 3,
} as const;

/** `cuMemHostAlloc` flags. */
export const CU_MEMHOSTALLOC = {
  /** Pinned for every context, not only the current one. */
  PORTABLE: 0x01,
  /** Mapped into the device address space (`cuMemHostGetDevicePointer`). */
  DEVICEMAP: 0x02,
  /** Write-combined: fast host writes and PCIe reads, very slow host reads. */
  WRITECOMBINED: 0x04,
} as const;

/** `cuStreamCreate` flags. */
export const CU_STREAM = {
  /** Synchronizes with the legacy default stream. */
  DEFAULT: 0x0,
  /** Does not synchronize with the legacy default stream. */
  NON_BLOCKING: 0x1,
} as const;

/** `cuEventCreate` flags. */
export const CU_EVENT = {
  /** Timing enabled, spin-wait on synchronize. */
  DEFAULT: 0x0,
  /** Blocking synchronize (yields the CPU). */
  BLOCKING_SYNC: 0x1,
  /** No timing data: cheaper when only ordering is needed. */
  DISABLE_TIMING: 0x2,
} as const;
