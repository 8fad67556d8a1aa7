/**
 * The foreign-function layer: the Deno/Bun `dlopen` adapter, library discovery, the CUDA driver
 * API ({@linkcode CudaDriver}, {@linkcode CudaContext}) and NVRTC ({@linkcode Nvrtc}). Nothing
 * above this folder knows which runtime it runs in.
 *
 * @module
 */

export {
  addressOf,
  cString,
  type CStringArray,
  cStringArray,
  type FfiParams,
  type FfiParamType,
  type FfiParamValue,
  type FfiResultType,
  type FfiResultValue,
  type FfiRuntime,
  ffiRuntime,
  type FfiType,
  type ForeignFunction,
  type ForeignLibrary,
  type ForeignSymbols,
  openLibrary,
  outF32,
  outI32,
  outU32,
  outU64,
  type Pointer,
  pointerFromBigInt,
  pointerToBigInt,
  readCString,
  type SymbolDef,
  type SymbolTable,
  viewForeign,
} from "./dlopen.ts";
export {
  type CandidateSource,
  type CudaLibraryKind,
  type DiscoveryOptions,
  findLibrary,
  type FindLibraryOptions,
  type FoundLibrary,
  LIBRARY_ENV,
  LIBRARY_SONAMES,
  type LibraryCandidate,
  libraryCandidates,
} from "./discovery.ts";
export {
  CU_EVENT,
  CU_MEMHOSTALLOC,
  CU_STREAM,
  CUDA_SYMBOLS,
  type CudaSymbols,
  CUdeviceAttribute,
  CUresult,
  NVRTC_SYMBOLS,
  type NvrtcSymbols,
  STICKY_CUDA_ERRORS,
} from "./cuda_symbols.ts";
export {
  CudaContext,
  type CudaContextStats,
  type CudaDeviceInfo,
  CudaDriver,
  type CudaDriverOptions,
  CudaEvent,
  type CudaFunction,
  CudaModule,
  CudaStream,
  type DevicePtr,
  type HostAllocation,
  type HostAllocOptions,
  type KernelArg,
  kernelFaultFrom,
  type LaunchDims,
} from "./cuda.ts";
export {
  archOption,
  type CompiledModule,
  type CompileOptions,
  defaultCacheDir,
  type GpuArch,
  ModuleCache,
  moduleKey,
  type ModuleKeyParts,
  Nvrtc,
  type NvrtcOpenOptions,
  type NvrtcOutput,
  parseArch,
} from "./nvrtc.ts";
