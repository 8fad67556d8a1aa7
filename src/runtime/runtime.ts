/**
 * The entry point: `RingKernel.builder().backend(Backend.Auto).build()` returns a runtime.
 *
 * `Backend.Cuda` runs kernels as persistent CUDA kernels (a device that opens, with NVRTC; else
 * `BackendUnavailableError`). `Backend.WebGpu` runs them in WGSL with emulated persistence on a
 * WebGPU device (`BackendUnavailableError` when no adapter is found). `Auto` stays on the CPU for
 * now — the CUDA backend does not yet run everything the CPU runs (K2K from GPU handlers), and a
 * WebGPU round trip takes milliseconds on adapters that are often software ones — and
 * `runtime.backendNotes` says so.
 * @module
 */

import {
  BackendUnavailableError,
  ErrorCode,
  NoWebGpuError,
  ValidationError,
} from "../core/errors.ts";
import { CpuRuntime } from "../backends/cpu/cpu_runtime.ts";
import { CudaRuntime, type CudaRuntimeOptions } from "../backends/cuda/cuda_runtime.ts";
import { WebGpuRuntime, type WebGpuRuntimeOptions } from "../backends/webgpu/webgpu_runtime.ts";
import { Backend, type KernelRuntime } from "./backend.ts";

const WEBGPU_NOT_AUTO =
  "not chosen automatically (a WebGPU round trip takes milliseconds, and adapters are often " +
  "software ones such as lavapipe); ask for Backend.WebGpu";
const CUDA_NOT_AUTO =
  "not chosen automatically yet (GPU handlers cannot send K2K messages yet); ask for Backend.Cuda";

/** Why no CUDA runtime could be made: the error's first line, kept short. */
function cudaReason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const line = text.split("\n")[0].replace(/^backend cuda is unavailable: /, "")
    .replace(/[;:,]?\s*tried:?\s*$/, "");
  return `no CUDA device: ${line.length > 160 ? `${line.slice(0, 157)}...` : line}`;
}

/** Configures and builds a runtime. Get one from {@linkcode RingKernel.builder}. */
export class RuntimeBuilder {
  #backend: Backend = Backend.Auto;
  #cuda: CudaRuntimeOptions = {};
  #webgpu: WebGpuRuntimeOptions = {};

  /** Chooses the backend (default `Backend.Auto`). */
  backend(backend: Backend): this {
    if (!Object.values(Backend).includes(backend)) {
      throw new ValidationError(ErrorCode.InvalidArgument, `unknown backend ${backend}`);
    }
    this.#backend = backend;
    return this;
  }

  /** Options of the CUDA backend (device ordinal, library paths, module cache folder). */
  cuda(options: CudaRuntimeOptions): this {
    this.#cuda = { ...options };
    return this;
  }

  /**
   * Options of the WebGPU backend: which implementation (`"navigator"`, `"bun-webgpu"`,
   * `"dawn"`; default: what the runtime has), `powerPreference`, the Dawn library path.
   */
  webgpu(options: WebGpuRuntimeOptions): this {
    this.#webgpu = { ...options };
    return this;
  }

  /**
   * Builds the runtime. Throws `BackendUnavailableError` (`E_BACKEND_UNAVAILABLE`) when the
   * named backend cannot run here.
   */
  async build(): Promise<KernelRuntime> {
    switch (this.#backend) {
      case Backend.Cpu:
        return await CpuRuntime.create();
      case Backend.Cuda:
        try {
          return await CudaRuntime.create(this.#cuda);
        } catch (e) {
          if (e instanceof BackendUnavailableError) throw e;
          throw new BackendUnavailableError("cuda", cudaReason(e));
        }
      case Backend.WebGpu:
        try {
          return await WebGpuRuntime.create(this.#webgpu);
        } catch (e) {
          if (e instanceof NoWebGpuError) {
            throw new BackendUnavailableError("webgpu", e.message);
          }
          throw e;
        }
      case Backend.Auto:
        // Auto stays on the CPU until the CUDA backend runs every definition the CPU runs
        // (K2K from GPU handlers is missing): a program that works must not break on a machine
        // that happens to have a GPU. WebGPU is never the automatic choice: each round trip
        // waits for a buffer map (milliseconds), and the adapter a machine without a GPU offers
        // is a software one. Ask for Backend.Cuda or Backend.WebGpu to use them.
        return await CpuRuntime.create({
          backendNotes: [`cuda: ${CUDA_NOT_AUTO}`, `webgpu: ${WEBGPU_NOT_AUTO}`],
        });
    }
  }
}

/**
 * The RingKernel entry point.
 *
 * @example
 * ```ts
 * import { Backend, LaunchOptions, RingKernel } from "@ringkernel/core";
 * const rt = await RingKernel.builder().backend(Backend.Auto).build();
 * console.log(rt.backend); // "cpu" (Auto does not pick CUDA yet; ask for Backend.Cuda)
 * const k = await rt.launch("processor", LaunchOptions.default());
 * await rt.shutdown();
 * ```
 */
export const RingKernel: { readonly builder: () => RuntimeBuilder } = {
  /** A new builder. */
  builder(): RuntimeBuilder {
    return new RuntimeBuilder();
  },
} as const;
