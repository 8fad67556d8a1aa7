/**
 * The part of Dawn's `webgpu.h` that the compute subset of {@linkcode openDawnGpu} calls, for the
 * Dawn build shipped as `libwebgpu_wrapper.so` in the `bun-webgpu-<platform>-<arch>` npm packages
 * (bun-webgpu 0.1.7). That library exports the C API twice: `wgpu*` as in `webgpu.h`, and
 * `zwgpu*` wrappers that take the structs `webgpu.h` passes by value (callback infos) through a
 * pointer instead, which is what an FFI without by-value structs (bun:ffi) can call. Functions
 * without by-value structs use either name; this table uses `zwgpu*` where a wrapper exists.
 *
 * Layouts are for 64-bit System V / AArch64 (pointers and `size_t` 8 bytes, `WGPUBool` and enums
 * 4 bytes, natural alignment); the tests check them against the library where it can run.
 *
 * @module
 */

import type { SymbolTable } from "./dlopen.ts";

// ---------------------------------------------------------------------------------------------
// Functions

/** The functions bound from `libwebgpu_wrapper.so`. */
export const DAWN_SYMBOLS = {
  zwgpuCreateInstance: { parameters: ["buffer"], result: "pointer" },
  wgpuGetInstanceCapabilities: { parameters: ["buffer"], result: "u32" },
  zwgpuInstanceProcessEvents: { parameters: ["pointer"], result: "void" },
  zwgpuInstanceRequestAdapter: { parameters: ["pointer", "buffer", "buffer"], result: "u64" },
  zwgpuInstanceWaitAny: { parameters: ["pointer", "usize", "buffer", "u64"], result: "u32" },
  zwgpuInstanceRelease: { parameters: ["pointer"], result: "void" },

  zwgpuAdapterGetInfo: { parameters: ["pointer", "buffer"], result: "u32" },
  zwgpuAdapterInfoFreeMembers: { parameters: ["buffer"], result: "void" },
  zwgpuAdapterGetLimits: { parameters: ["pointer", "buffer"], result: "u32" },
  // The zwgpu wrapper of GetFeatures crashes in this build (checked under Deno); the plain entry
  // point takes the same arguments.
  wgpuAdapterGetFeatures: { parameters: ["pointer", "buffer"], result: "void" },
  zwgpuSupportedFeaturesFreeMembers: { parameters: ["buffer"], result: "void" },
  zwgpuAdapterRequestDevice: { parameters: ["pointer", "buffer", "buffer"], result: "u64" },
  zwgpuAdapterRelease: { parameters: ["pointer"], result: "void" },

  zwgpuDeviceGetQueue: { parameters: ["pointer"], result: "pointer" },
  zwgpuDeviceGetLimits: { parameters: ["pointer", "buffer"], result: "u32" },
  wgpuDeviceGetFeatures: { parameters: ["pointer", "buffer"], result: "void" },
  zwgpuDeviceCreateBuffer: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDeviceCreateShaderModule: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDeviceCreateComputePipeline: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDeviceCreateComputePipelineAsync: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "u64",
  },
  zwgpuDeviceCreateBindGroup: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDeviceCreateBindGroupLayout: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDeviceCreatePipelineLayout: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDeviceCreateCommandEncoder: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuDevicePushErrorScope: { parameters: ["pointer", "u32"], result: "void" },
  zwgpuDevicePopErrorScope: { parameters: ["pointer", "buffer"], result: "u64" },
  zwgpuDeviceDestroy: { parameters: ["pointer"], result: "void" },
  zwgpuDeviceRelease: { parameters: ["pointer"], result: "void" },

  zwgpuBufferMapAsync: {
    parameters: ["pointer", "u64", "usize", "usize", "buffer"],
    result: "u64",
  },
  wgpuBufferReadMappedRange: {
    parameters: ["pointer", "usize", "buffer", "usize"],
    result: "u32",
  },
  wgpuBufferWriteMappedRange: {
    parameters: ["pointer", "usize", "buffer", "usize"],
    result: "u32",
  },
  wgpuBufferGetMapState: { parameters: ["pointer"], result: "u32" },
  zwgpuBufferUnmap: { parameters: ["pointer"], result: "void" },
  zwgpuBufferDestroy: { parameters: ["pointer"], result: "void" },
  zwgpuBufferRelease: { parameters: ["pointer"], result: "void" },

  zwgpuShaderModuleGetCompilationInfo: { parameters: ["pointer", "buffer"], result: "u64" },
  zwgpuShaderModuleRelease: { parameters: ["pointer"], result: "void" },
  zwgpuComputePipelineGetBindGroupLayout: { parameters: ["pointer", "u32"], result: "pointer" },
  zwgpuComputePipelineRelease: { parameters: ["pointer"], result: "void" },
  zwgpuBindGroupLayoutRelease: { parameters: ["pointer"], result: "void" },
  zwgpuBindGroupRelease: { parameters: ["pointer"], result: "void" },
  zwgpuPipelineLayoutRelease: { parameters: ["pointer"], result: "void" },

  zwgpuCommandEncoderBeginComputePass: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuCommandEncoderCopyBufferToBuffer: {
    parameters: ["pointer", "pointer", "u64", "pointer", "u64", "u64"],
    result: "void",
  },
  zwgpuCommandEncoderClearBuffer: {
    parameters: ["pointer", "pointer", "u64", "u64"],
    result: "void",
  },
  zwgpuCommandEncoderFinish: { parameters: ["pointer", "buffer"], result: "pointer" },
  zwgpuCommandEncoderRelease: { parameters: ["pointer"], result: "void" },
  zwgpuComputePassEncoderSetPipeline: { parameters: ["pointer", "pointer"], result: "void" },
  zwgpuComputePassEncoderSetBindGroup: {
    parameters: ["pointer", "u32", "pointer", "usize", "buffer"],
    result: "void",
  },
  zwgpuComputePassEncoderDispatchWorkgroups: {
    parameters: ["pointer", "u32", "u32", "u32"],
    result: "void",
  },
  zwgpuComputePassEncoderEnd: { parameters: ["pointer"], result: "void" },
  zwgpuComputePassEncoderRelease: { parameters: ["pointer"], result: "void" },
  zwgpuCommandBufferRelease: { parameters: ["pointer"], result: "void" },

  zwgpuQueueSubmit: { parameters: ["pointer", "usize", "buffer"], result: "void" },
  zwgpuQueueWriteBuffer: {
    parameters: ["pointer", "pointer", "u64", "buffer", "usize"],
    result: "void",
  },
  zwgpuQueueOnSubmittedWorkDone: { parameters: ["pointer", "buffer"], result: "u64" },
  zwgpuQueueRelease: { parameters: ["pointer"], result: "void" },
} as const satisfies SymbolTable;

/** The bound functions' table type. */
export type DawnSymbols = typeof DAWN_SYMBOLS;

// ---------------------------------------------------------------------------------------------
// Callback signatures. A `WGPUStringView` argument (16 bytes: data, length) travels in two
// integer registers, so it is declared as a pointer and a usize.

/** `WGPURequestAdapterCallback` and `WGPURequestDeviceCallback`, and the pipeline-async one:
 * (status, handle, message, userdata1, userdata2). */
export const CALLBACK_STATUS_HANDLE_MESSAGE = {
  parameters: ["u32", "pointer", "pointer", "usize", "pointer", "pointer"],
  result: "void",
} as const;

/** `WGPUBufferMapCallback` and `WGPUQueueWorkDoneCallback`: (status, message, userdata1,
 * userdata2). (bun-webgpu 0.1.7 declares the work-done one without the message, which only works
 * because it ignores the userdata; the arguments observed from this build carry it.) */
export const CALLBACK_STATUS_MESSAGE = {
  parameters: ["u32", "pointer", "usize", "pointer", "pointer"],
  result: "void",
} as const;

/** `WGPUCompilationInfoCallback`: (status, const WGPUCompilationInfo*, userdata1, userdata2). */
export const CALLBACK_COMPILATION_INFO = {
  parameters: ["u32", "pointer", "pointer", "pointer"],
  result: "void",
} as const;

/** `WGPUPopErrorScopeCallback`: (status, errorType, message, userdata1, userdata2). */
export const CALLBACK_POP_ERROR_SCOPE = {
  parameters: ["u32", "u32", "pointer", "usize", "pointer", "pointer"],
  result: "void",
} as const;

/** `WGPUDeviceLostCallback` and `WGPUUncapturedErrorCallback`:
 * (const WGPUDevice*, reason or errorType, message, userdata1, userdata2). */
export const CALLBACK_DEVICE_EVENT = {
  parameters: ["pointer", "u32", "pointer", "usize", "pointer", "pointer"],
  result: "void",
} as const;

// ---------------------------------------------------------------------------------------------
// Enums and flags (values of this Dawn's webgpu.h)

/** `WGPUSType` values used here. */
export const SType = { ShaderSourceWGSL: 2 } as const;

/** `WGPUCallbackMode`. */
export const CallbackMode = { WaitAnyOnly: 1, AllowProcessEvents: 2, AllowSpontaneous: 3 } as const;

/** `WGPUStatus`. */
export const Status = { Success: 1, Error: 2 } as const;

/** `WGPUWaitStatus`. */
export const WaitStatus = { Success: 1, TimedOut: 2, Error: 3 } as const;

/** `WGPURequestAdapterStatus`. */
export const RequestAdapterStatus = {
  Success: 1,
  CallbackCancelled: 2,
  Unavailable: 3,
  Error: 4,
} as const;

/** `WGPURequestDeviceStatus`. */
export const RequestDeviceStatus = { Success: 1, CallbackCancelled: 2, Error: 3 } as const;

/** `WGPUMapAsyncStatus`. */
export const MapAsyncStatus = { Success: 1, CallbackCancelled: 2, Error: 3, Aborted: 4 } as const;

/** `WGPUQueueWorkDoneStatus`. */
export const QueueWorkDoneStatus = { Success: 1, CallbackCancelled: 2, Error: 3 } as const;

/** `WGPUCreatePipelineAsyncStatus`. */
export const CreatePipelineAsyncStatus = {
  Success: 1,
  CallbackCancelled: 2,
  ValidationError: 3,
  InternalError: 4,
} as const;

/** `WGPUCompilationInfoRequestStatus`. */
export const CompilationInfoRequestStatus = { Success: 1, CallbackCancelled: 2 } as const;

/** `WGPUPopErrorScopeStatus`. */
export const PopErrorScopeStatus = { Success: 1, CallbackCancelled: 2, Error: 3 } as const;

/** `WGPUErrorType`, by value. */
export const ERROR_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "no-error",
  2: "validation",
  3: "out-of-memory",
  4: "internal",
  5: "unknown",
};

/** `WGPUErrorFilter`, by the WebGPU name. */
export const ErrorFilter = { validation: 1, "out-of-memory": 2, internal: 3 } as const;

/** `WGPUCompilationMessageType`, by value. */
export const COMPILATION_MESSAGE_TYPES: Readonly<Record<number, GPUCompilationMessageType>> = {
  1: "error",
  2: "warning",
  3: "info",
};

/** `WGPUDeviceLostReason`, by value. */
export const DEVICE_LOST_REASONS: Readonly<Record<number, string>> = {
  1: "unknown",
  2: "destroyed",
  3: "callback-cancelled",
  4: "failed-creation",
};

/** `WGPUBackendType`, by value. */
export const BACKEND_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: "undefined",
  1: "null",
  2: "webgpu",
  3: "d3d11",
  4: "d3d12",
  5: "metal",
  6: "vulkan",
  7: "opengl",
  8: "opengles",
};

/** `WGPUBackendType`, by name. */
export const BackendType = {
  null: 1,
  webgpu: 2,
  d3d11: 3,
  d3d12: 4,
  metal: 5,
  vulkan: 6,
  opengl: 7,
  opengles: 8,
} as const;

/** `WGPUFeatureLevel`, by name. */
export const FeatureLevel = { compatibility: 1, core: 2 } as const;

/** `WGPUBackendType_Null`: Dawn's adapter that validates work and never executes it. */
export const BACKEND_NULL = 1;

/** `WGPUAdapterType`, by value. */
export const ADAPTER_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "discrete-gpu",
  2: "integrated-gpu",
  3: "cpu",
  4: "unknown",
};

/** `WGPUPowerPreference`, by the WebGPU name. */
export const PowerPreference = { "low-power": 1, "high-performance": 2 } as const;

/** `WGPUFeatureName` values of the standard features, by value. */
export const FEATURE_NAMES: Readonly<Record<number, GPUFeatureName>> = {
  1: "depth-clip-control",
  2: "depth32float-stencil8",
  3: "timestamp-query",
  4: "texture-compression-bc",
  5: "texture-compression-bc-sliced-3d",
  6: "texture-compression-etc2",
  7: "texture-compression-astc",
  8: "texture-compression-astc-sliced-3d",
  9: "indirect-first-instance",
  10: "shader-f16",
  11: "rg11b10ufloat-renderable",
  12: "bgra8unorm-storage",
  13: "float32-filterable",
  14: "float32-blendable",
  15: "clip-distances",
  16: "dual-source-blending",
  17: "subgroups",
  18: "core-features-and-limits",
} as unknown as Readonly<Record<number, GPUFeatureName>>;

/** `WGPU_WHOLE_SIZE` / `WGPU_STRLEN`: all ones. */
export const WHOLE_SIZE = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------------------------
// Struct layouts: byte offsets of the fields written or read, and sizes

/** `WGPUStringView { const char* data; size_t length; }`. */
export const StringView = { size: 16, data: 0, length: 8 } as const;

/** `WGPUChainedStruct { next; WGPUSType sType; }`. */
export const ChainedStruct = { size: 16, next: 0, sType: 8 } as const;

/** Every `WGPU*CallbackInfo` but the uncaptured-error one:
 * `{ nextInChain; WGPUCallbackMode mode; callback; userdata1; userdata2; }`. */
export const CallbackInfo = {
  size: 40,
  nextInChain: 0,
  mode: 8,
  callback: 16,
  userdata1: 24,
  userdata2: 32,
} as const;

/** `WGPUUncapturedErrorCallbackInfo { nextInChain; callback; userdata1; userdata2; }`. */
export const UncapturedErrorCallbackInfo = {
  size: 32,
  nextInChain: 0,
  callback: 8,
  userdata1: 16,
  userdata2: 24,
} as const;

/** `WGPUFutureWaitInfo { WGPUFuture future; WGPUBool completed; }`. */
export const FutureWaitInfo = { size: 16, future: 0, completed: 8 } as const;

/** `WGPUInstanceCapabilities { nextInChain; WGPUBool timedWaitAnyEnable; size_t
 * timedWaitAnyMaxCount; }`. */
export const InstanceCapabilities = {
  size: 24,
  nextInChain: 0,
  timedWaitAnyEnable: 8,
  timedWaitAnyMaxCount: 16,
} as const;

/** `WGPUInstanceDescriptor { nextInChain; WGPUInstanceCapabilities features; }`. */
export const InstanceDescriptor = { size: 32, nextInChain: 0, features: 8 } as const;

/** `WGPURequestAdapterOptions`. */
export const RequestAdapterOptions = {
  size: 32,
  nextInChain: 0,
  featureLevel: 8,
  powerPreference: 12,
  forceFallbackAdapter: 16,
  backendType: 20,
  compatibleSurface: 24,
} as const;

/** `WGPUAdapterInfo`: four string views, then six 32-bit fields. */
export const AdapterInfo = {
  size: 96,
  nextInChain: 0,
  vendor: 8,
  architecture: 24,
  device: 40,
  description: 56,
  backendType: 72,
  adapterType: 76,
  vendorID: 80,
  deviceID: 84,
  subgroupMinSize: 88,
  subgroupMaxSize: 92,
} as const;

/** `WGPUSupportedFeatures { size_t featureCount; const WGPUFeatureName* features; }`. */
export const SupportedFeatures = { size: 16, featureCount: 0, features: 8 } as const;

/** `WGPULimits`: the offsets of the limits this library reports, by WebGPU name. */
export const Limits = {
  size: 168,
  u32: {
    maxTextureDimension1D: 8,
    maxTextureDimension2D: 12,
    maxTextureDimension3D: 16,
    maxTextureArrayLayers: 20,
    maxBindGroups: 24,
    maxBindGroupsPlusVertexBuffers: 28,
    maxBindingsPerBindGroup: 32,
    maxDynamicUniformBuffersPerPipelineLayout: 36,
    maxDynamicStorageBuffersPerPipelineLayout: 40,
    maxSampledTexturesPerShaderStage: 44,
    maxSamplersPerShaderStage: 48,
    maxStorageBuffersPerShaderStage: 52,
    maxStorageTexturesPerShaderStage: 56,
    maxUniformBuffersPerShaderStage: 60,
    minUniformBufferOffsetAlignment: 80,
    minStorageBufferOffsetAlignment: 84,
    maxVertexBuffers: 88,
    maxVertexAttributes: 104,
    maxVertexBufferArrayStride: 108,
    maxInterStageShaderVariables: 112,
    maxColorAttachments: 116,
    maxColorAttachmentBytesPerSample: 120,
    maxComputeWorkgroupStorageSize: 124,
    maxComputeInvocationsPerWorkgroup: 128,
    maxComputeWorkgroupSizeX: 132,
    maxComputeWorkgroupSizeY: 136,
    maxComputeWorkgroupSizeZ: 140,
    maxComputeWorkgroupsPerDimension: 144,
  },
  u64: {
    maxUniformBufferBindingSize: 64,
    maxStorageBufferBindingSize: 72,
    maxBufferSize: 96,
  },
} as const;

/** `WGPUQueueDescriptor { nextInChain; WGPUStringView label; }`. */
export const QueueDescriptor = { size: 24, nextInChain: 0, label: 8 } as const;

/** `WGPUDeviceDescriptor`. */
export const DeviceDescriptor = {
  size: 144,
  nextInChain: 0,
  label: 8,
  requiredFeatureCount: 24,
  requiredFeatures: 32,
  requiredLimits: 40,
  defaultQueue: 48,
  deviceLostCallbackInfo: 72,
  uncapturedErrorCallbackInfo: 112,
} as const;

/** `WGPUBufferDescriptor`. */
export const BufferDescriptor = {
  size: 48,
  nextInChain: 0,
  label: 8,
  usage: 24,
  bufferSize: 32,
  mappedAtCreation: 40,
} as const;

/** `WGPUShaderModuleDescriptor { nextInChain; WGPUStringView label; }`. */
export const ShaderModuleDescriptor = { size: 24, nextInChain: 0, label: 8 } as const;

/** `WGPUShaderSourceWGSL { WGPUChainedStruct chain; WGPUStringView code; }`. */
export const ShaderSourceWGSL = { size: 32, chain: 0, code: 16 } as const;

/** `WGPUCompilationInfo { nextInChain; size_t messageCount; const WGPUCompilationMessage*
 * messages; }`. */
export const CompilationInfo = { size: 24, nextInChain: 0, messageCount: 8, messages: 16 } as const;

/** `WGPUCompilationMessage` (the UTF-16 positions live in a chained struct in this Dawn). */
export const CompilationMessage = {
  size: 64,
  nextInChain: 0,
  message: 8,
  type: 24,
  lineNum: 32,
  linePos: 40,
  offset: 48,
  length: 56,
} as const;

/** `WGPUConstantEntry { nextInChain; WGPUStringView key; double value; }`. */
export const ConstantEntry = { size: 32, nextInChain: 0, key: 8, value: 24 } as const;

/** `WGPUComputeState`. */
export const ComputeState = {
  size: 48,
  nextInChain: 0,
  module: 8,
  entryPoint: 16,
  constantCount: 32,
  constants: 40,
} as const;

/** `WGPUComputePipelineDescriptor`. */
export const ComputePipelineDescriptor = {
  size: 80,
  nextInChain: 0,
  label: 8,
  layout: 24,
  compute: 32,
} as const;

/** `WGPUBufferBindingType`, by the WebGPU name. */
export const BufferBindingType = { uniform: 2, storage: 3, "read-only-storage": 4 } as const;

/** `WGPUBindGroupLayoutEntry`: binding, visibility, then the four binding layouts, of which
 * only `buffer` (`{ nextInChain; type; hasDynamicOffset; minBindingSize; }`) is written; the
 * others stay zero, which is their "binding not used". */
export const BindGroupLayoutEntry = {
  size: 120,
  nextInChain: 0,
  binding: 8,
  visibility: 16,
  bindingArraySize: 24,
  buffer: 32,
  bufferType: 32 + 8,
  hasDynamicOffset: 32 + 12,
  minBindingSize: 32 + 16,
} as const;

/** `WGPUBindGroupLayoutDescriptor`. */
export const BindGroupLayoutDescriptor = {
  size: 40,
  nextInChain: 0,
  label: 8,
  entryCount: 24,
  entries: 32,
} as const;

/** `WGPUPipelineLayoutDescriptor`. */
export const PipelineLayoutDescriptor = {
  size: 48,
  nextInChain: 0,
  label: 8,
  bindGroupLayoutCount: 24,
  bindGroupLayouts: 32,
  immediateSize: 40,
} as const;

/** `WGPUBindGroupEntry`. */
export const BindGroupEntry = {
  size: 56,
  nextInChain: 0,
  binding: 8,
  buffer: 16,
  offset: 24,
  bufferSize: 32,
  sampler: 40,
  textureView: 48,
} as const;

/** `WGPUBindGroupDescriptor`. */
export const BindGroupDescriptor = {
  size: 48,
  nextInChain: 0,
  label: 8,
  layout: 24,
  entryCount: 32,
  entries: 40,
} as const;

/** `WGPUCommandEncoderDescriptor` and `WGPUCommandBufferDescriptor`: `{ nextInChain; label; }`. */
export const LabelOnlyDescriptor = { size: 24, nextInChain: 0, label: 8 } as const;

/** `WGPUComputePassDescriptor { nextInChain; WGPUStringView label; timestampWrites*; }`. */
export const ComputePassDescriptor = {
  size: 32,
  nextInChain: 0,
  label: 8,
  timestampWrites: 24,
} as const;
