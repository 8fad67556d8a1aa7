/**
 * One error hierarchy for the whole library. Every error thrown on purpose is a
 * {@linkcode RingKernelError} with a stable, machine-readable {@linkcode ErrorCode}:
 * match on `err.code`, not on the message text, which may improve between versions.
 *
 * @example
 * ```ts
 * import { DecodeError, RingKernelError } from "@ringkernel/core";
 * try {
 *   // ...
 * } catch (err) {
 *   if (err instanceof DecodeError) console.log(err.code, err.offset);
 *   else if (err instanceof RingKernelError) console.log(err.code);
 *   else throw err;
 * }
 * ```
 * @module
 */

/** Stable error codes. New codes may be added; existing ones never change meaning. */
export const ErrorCode = {
  /** A remote HLC timestamp is further ahead of local physical time than allowed. */
  ClockSkew: "E_CLOCK_SKEW",
  /** A value passed to an API is out of range or of the wrong shape. */
  InvalidArgument: "E_INVALID_ARGUMENT",
  /** A queue capacity that is not a power of two (or out of range). */
  InvalidCapacity: "E_INVALID_CAPACITY",
  /** A memory region too small or misaligned for the layout placed on it. */
  InvalidLayout: "E_INVALID_LAYOUT",
  /** A message schema declaration that cannot be laid out. */
  InvalidSchema: "E_INVALID_SCHEMA",
  /** A value that does not fit the schema field it is written to. */
  InvalidValue: "E_INVALID_VALUE",
  /** A second message schema registered under a typeId that is already taken. */
  DuplicateType: "E_DUPLICATE_TYPE",
  /** The buffer ends before the structure being decoded. */
  DecodeTruncated: "E_DECODE_TRUNCATED",
  /** The envelope does not start with the RingKernel magic number. */
  DecodeBadMagic: "E_DECODE_BAD_MAGIC",
  /** The envelope has a version this library does not read. */
  DecodeBadVersion: "E_DECODE_BAD_VERSION",
  /** The envelope's typeId names no registered message type. */
  DecodeUnknownType: "E_DECODE_UNKNOWN_TYPE",
  /** The payload length points past the end of the buffer or disagrees with the schema. */
  DecodePayloadLength: "E_DECODE_PAYLOAD_LENGTH",
  /** The checksum stored in the envelope does not match its contents. */
  DecodeChecksum: "E_DECODE_CHECKSUM",
  /** A checksum was required but the envelope carries none. */
  DecodeChecksumMissing: "E_DECODE_CHECKSUM_MISSING",
  /** Reserved bits or bytes that must be zero are not. */
  DecodeReserved: "E_DECODE_RESERVED",
  /** A field holds a value its type does not allow (for example a bool byte of 2). */
  DecodeInvalidValue: "E_DECODE_INVALID_VALUE",
  /** A bounded queue stayed full for the whole timeout. */
  QueueFull: "E_QUEUE_FULL",
  /** A message is larger than the queue's slot. */
  MessageTooLarge: "E_MESSAGE_TOO_LARGE",
  /** A wait ran out of time. */
  Timeout: "E_TIMEOUT",
  /** An invalid topic name or topic filter. */
  InvalidTopic: "E_INVALID_TOPIC",
  /** The retained-message store is at its limit and the topic is not in it yet. */
  RetainedFull: "E_RETAINED_FULL",
  /** A subscription or broker that has been closed. */
  Closed: "E_CLOSED",
  /** An operation that the current lifecycle state does not allow. */
  InvalidState: "E_INVALID_STATE",
  /** The runtime's WebAssembly lacks a feature a module needs (SIMD, threads, shared memory). */
  WasmUnsupported: "E_WASM_UNSUPPORTED",
  /** A view that does not lie inside the memory (or region of it) the operation runs on. */
  ForeignMemory: "E_FOREIGN_MEMORY",
  /** A pointer or view not aligned as the operation requires. */
  Misaligned: "E_MISALIGNED",
  /** Two arrays an operation pairs up have different lengths. */
  LengthMismatch: "E_LENGTH_MISMATCH",
  /** Two views overlap where the operation needs them disjoint (or identical). */
  Overlap: "E_OVERLAP",
  /** An allocator (for example the SIMD core's arena) has no room left for a request. */
  OutOfMemory: "E_OUT_OF_MEMORY",
  /** A backend (CUDA, WebGPU) that is not available in this process (no device, no driver). */
  BackendUnavailable: "E_BACKEND_UNAVAILABLE",
  /** No kernel with the given id is running in the runtime. */
  KernelNotFound: "E_KERNEL_NOT_FOUND",
  /** A kernel with the given id is already running in the runtime. */
  DuplicateKernel: "E_DUPLICATE_KERNEL",
  /** A message whose type is not the one the kernel takes. */
  WrongMessageType: "E_WRONG_MESSAGE_TYPE",
  /** A kernel handler threw while handling a message. */
  HandlerFailed: "E_HANDLER_FAILED",
  /** A kernel failed: its worker died, its definition did not load, or supervision stopped it. */
  KernelFailed: "E_KERNEL_FAILED",
  /** Kernel DSL: syntax outside the supported subset (closures, allocation, recursion, ...). */
  DslUnsupported: "E_DSL_UNSUPPORTED",
  /** Kernel DSL: a type mismatch or a value used where its type is not allowed. */
  DslType: "E_DSL_TYPE",
  /** Kernel DSL: a feature the chosen target cannot express (for example f64 in WGSL). */
  DslTarget: "E_DSL_TARGET",
  /** No CUDA driver or NVRTC library could be loaded. */
  NoCuda: "E_NO_CUDA",
  /** A CUDA driver API call returned an error. */
  Cuda: "E_CUDA",
  /** NVRTC failed to compile a program. */
  NvrtcCompile: "E_NVRTC_COMPILE",
  /** A GPU kernel trapped (illegal address, assertion, ...); its context is unusable. */
  KernelFault: "E_KERNEL_FAULT",
  /** No WebGPU adapter is available. */
  NoWebGpu: "E_NO_WEBGPU",
  /** The WebGPU device was lost (destroyed, driver reset, ...); its kernels failed. */
  WebGpuDeviceLost: "E_WEBGPU_DEVICE_LOST",
} as const;

/** The union of all stable error code strings. */
export type ErrorCode = typeof ErrorCode[keyof typeof ErrorCode];

/** Base class of every error this library throws on purpose. */
export class RingKernelError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;

  /** Creates an error with a stable code and a human-readable message. */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A remote clock is further ahead than `maxDriftMs` allows; the local clock is left unchanged. */
export class ClockSkewError extends RingKernelError {
  /** How far ahead of local physical time the remote timestamp is, in milliseconds. */
  readonly driftMs: number;
  /** The configured maximum drift in milliseconds. */
  readonly maxDriftMs: number;

  /** Creates the error from the measured and allowed drift. */
  constructor(driftMs: number, maxDriftMs: number) {
    super(
      ErrorCode.ClockSkew,
      `remote timestamp is ${driftMs} ms ahead of local physical time (max drift ${maxDriftMs} ms)`,
    );
    this.driftMs = driftMs;
    this.maxDriftMs = maxDriftMs;
  }
}

/** A bad argument: a value out of range, the wrong shape, or a layout that cannot hold. */
export class ValidationError extends RingKernelError {}

/** A message schema declaration that cannot be laid out, or a value that does not fit a field. */
export class SchemaError extends RingKernelError {}

/** Bytes that are not a valid message. `offset` is where in the buffer the problem was found. */
export class DecodeError extends RingKernelError {
  /** Byte offset (from the start of the decoded buffer) of the offending data. */
  readonly offset: number;

  /** Creates a decode error for the given code and byte offset. */
  constructor(code: ErrorCode, offset: number, message: string) {
    super(code, `${message} (at byte ${offset})`);
    this.offset = offset;
  }
}

/** A queue capacity that is not a power of two, or a region too small for it. */
export class CapacityError extends RingKernelError {}

/** A bounded queue stayed full for the whole timeout; the message was not enqueued. */
export class QueueFullError extends RingKernelError {}

/** A wait ran out of time. */
export class TimeoutError extends RingKernelError {}

/** An invalid topic name or topic filter (MQTT 3.1.1 §4.7 rules). */
export class TopicError extends RingKernelError {}

/** An operation the current lifecycle state does not allow, or on something already closed. */
export class InvalidStateError extends RingKernelError {}

/** The runtime's WebAssembly cannot run a module: SIMD, threads or shared memory is missing. */
export class WasmUnsupportedError extends RingKernelError {}

/** A view outside the memory an operation runs on, misaligned, or overlapping another view. */
export class MemoryViewError extends RingKernelError {}

/** An allocator has no room left for a request. */
export class OutOfMemoryError extends RingKernelError {}

/** A backend that is not available here (no device, no driver); nothing was started. */
export class BackendUnavailableError extends RingKernelError {
  /** The backend that was asked for. */
  readonly backend: string;

  /** Creates the error for `backend` with the reason it is unavailable. */
  constructor(backend: string, reason: string) {
    super(ErrorCode.BackendUnavailable, `backend ${backend} is unavailable: ${reason}`);
    this.backend = backend;
  }
}

/** No kernel with the given id is running. */
export class KernelNotFoundError extends RingKernelError {
  /** The id that was looked up. */
  readonly kernelId: string;

  /** Creates the error for `kernelId`. */
  constructor(kernelId: string) {
    super(ErrorCode.KernelNotFound, `no kernel ${JSON.stringify(kernelId)} is running`);
    this.kernelId = kernelId;
  }
}

/** A kernel with the given id is already running; ids are unique within a runtime. */
export class DuplicateKernelError extends RingKernelError {
  /** The id that is taken. */
  readonly kernelId: string;

  /** Creates the error for `kernelId`. */
  constructor(kernelId: string) {
    super(ErrorCode.DuplicateKernel, `a kernel ${JSON.stringify(kernelId)} is already running`);
    this.kernelId = kernelId;
  }
}

/**
 * A kernel handler threw while handling a request. The kernel itself may keep running (see the
 * supervision launch option); `remoteName` and `remoteMessage` are what the handler threw.
 */
export class HandlerError extends RingKernelError {
  /** The kernel whose handler threw. */
  readonly kernelId: string;
  /** `name` of the thrown value (`"Error"`, `"RangeError"`, ...). */
  readonly remoteName: string;
  /** `message` of the thrown value. */
  readonly remoteMessage: string;

  /** Creates the error from what the handler threw. */
  constructor(kernelId: string, remoteName: string, remoteMessage: string) {
    super(
      ErrorCode.HandlerFailed,
      `kernel ${JSON.stringify(kernelId)} handler threw ${remoteName}: ${remoteMessage}`,
    );
    this.kernelId = kernelId;
    this.remoteName = remoteName;
    this.remoteMessage = remoteMessage;
  }
}

/** A kernel failed: its worker died, its definition did not load, or supervision stopped it. */
export class KernelFailedError extends RingKernelError {
  /** The kernel that failed. */
  readonly kernelId: string;

  /** Creates the error for `kernelId`; `cause` is the underlying error, when there is one. */
  constructor(kernelId: string, message: string, options?: ErrorOptions) {
    super(ErrorCode.KernelFailed, `kernel ${JSON.stringify(kernelId)} failed: ${message}`, options);
    this.kernelId = kernelId;
  }
}

/** Where in a kernel's source a {@linkcode DslError} points. */
export interface DslLocation {
  /** The kernel or device function being compiled. */
  readonly kernel: string;
  /** 1-based line within the function's source text. */
  readonly line: number;
  /** 1-based column. */
  readonly column: number;
  /** The offending source line with a caret under the column. */
  readonly snippet: string;
}

/**
 * The kernel DSL rejected a function: unsupported syntax (`E_DSL_UNSUPPORTED`), a type error
 * (`E_DSL_TYPE`) or a feature the target lacks (`E_DSL_TARGET`). The message names the kernel,
 * the line and column within the function's source, and shows the line.
 */
export class DslError extends RingKernelError {
  /** The kernel or device function. */
  readonly kernel: string;
  /** 1-based line within the function source (0 when the error concerns the whole kernel). */
  readonly line: number;
  /** 1-based column (0 when the error concerns the whole kernel). */
  readonly column: number;
  /** The offending line with a caret, or "" when there is none. */
  readonly snippet: string;
  /** The bare reason, without the location. */
  readonly reason: string;

  /** Creates the error; `where` is undefined when it concerns the whole kernel. */
  constructor(
    code: typeof ErrorCode.DslUnsupported | typeof ErrorCode.DslType | typeof ErrorCode.DslTarget,
    kernel: string,
    reason: string,
    where?: { line: number; column: number; snippet: string },
  ) {
    const at = where === undefined ? "" : ` at line ${where.line}, column ${where.column}`;
    const show = where === undefined || where.snippet === "" ? "" : `\n${where.snippet}`;
    super(code, `kernel ${kernel}${at}: ${reason}${show}`);
    this.kernel = kernel;
    this.line = where?.line ?? 0;
    this.column = where?.column ?? 0;
    this.snippet = where?.snippet ?? "";
    this.reason = reason;
  }
}

/** Neither an explicit path nor any searched location gave a loadable CUDA library. */
export class NoCudaError extends RingKernelError {
  /** The library that was looked for (`libcuda` or `libnvrtc`). */
  readonly library: string;
  /** Every path or name that was tried, in order, with why it failed. */
  readonly searched: readonly string[];

  /** Creates the error for `library` with the list of what was tried. */
  constructor(library: string, searched: readonly string[]) {
    super(
      ErrorCode.NoCuda,
      `no ${library} could be loaded; tried:\n  ${searched.join("\n  ")}\n` +
        `set RINGKERNEL_LIBCUDA / RINGKERNEL_LIBNVRTC or CUDA_HOME to point at the libraries`,
    );
    this.library = library;
    this.searched = searched;
  }
}

/** A CUDA driver API call failed; `name` is what `cuGetErrorName` says (`CUDA_ERROR_...`). */
export class CudaError extends RingKernelError {
  /** The driver function that failed, e.g. `cuMemAlloc_v2`. */
  readonly call: string;
  /** The numeric CUresult. */
  readonly result: number;
  /** The CUresult's name, e.g. `CUDA_ERROR_OUT_OF_MEMORY`. */
  readonly resultName: string;

  /** Creates the error for `call` failing with `result` (named `resultName`). */
  constructor(call: string, result: number, resultName: string, description = "") {
    super(
      ErrorCode.Cuda,
      `${call} failed: ${resultName} (${result})${description ? `: ${description}` : ""}`,
    );
    this.call = call;
    this.result = result;
    this.resultName = resultName;
  }
}

/** NVRTC could not compile a program; `log` is NVRTC's program log. */
export class NvrtcError extends RingKernelError {
  /** The program log (compiler diagnostics). */
  readonly log: string;
  /** The nvrtcResult name, e.g. `NVRTC_ERROR_COMPILATION`. */
  readonly resultName: string;

  /** Creates the error; `context` says which program (kernel name, source location). */
  constructor(resultName: string, log: string, context: string) {
    super(ErrorCode.NvrtcCompile, `NVRTC ${resultName} compiling ${context}\n${log}`);
    this.log = log;
    this.resultName = resultName;
  }
}

/** A GPU kernel trapped; the CUDA context it ran in is lost (rebuild the runtime). */
export class KernelFaultError extends RingKernelError {
  /** The kernel that faulted. */
  readonly kernelId: string;
  /** The CUDA error name, e.g. `CUDA_ERROR_ILLEGAL_ADDRESS`. */
  readonly cudaError: string;

  /** Creates the error for `kernelId` faulting with `cudaError`. */
  constructor(kernelId: string, cudaError: string) {
    super(ErrorCode.KernelFault, `kernel ${JSON.stringify(kernelId)} faulted: ${cudaError}`);
    this.kernelId = kernelId;
    this.cudaError = cudaError;
  }
}

/** No WebGPU adapter is available in this runtime (or none that can run compute). */
export class NoWebGpuError extends RingKernelError {
  /** Creates the error with why no adapter was found. */
  constructor(reason: string) {
    super(ErrorCode.NoWebGpu, `no WebGPU adapter: ${reason}`);
  }
}

/**
 * The WebGPU device of a runtime was lost (`device.lost` resolved: destroyed, driver reset, out of
 * memory, ...). Every kernel of that runtime ended `Failed` with a `KernelFailedError` whose
 * `cause` is this error; the runtime refuses new launches with it. Build a new runtime.
 */
export class WebGpuDeviceLostError extends RingKernelError {
  /** `GPUDeviceLostInfo.reason`: `"destroyed"` or `"unknown"`. */
  readonly reason: string;
  /** `GPUDeviceLostInfo.message`: the implementation's words. */
  readonly deviceMessage: string;

  /** Creates the error from the device's lost info. */
  constructor(reason: string, deviceMessage: string) {
    super(
      ErrorCode.WebGpuDeviceLost,
      `the WebGPU device was lost (${reason})${
        deviceMessage === "" ? "" : `: ${deviceMessage}`
      }; build a new runtime`,
    );
    this.reason = reason;
    this.deviceMessage = deviceMessage;
  }
}
