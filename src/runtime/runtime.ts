/**
 * The entry point: `RingKernel.builder().backend(Backend.Auto).build()` returns a runtime.
 *
 * `Backend.Cuda` runs kernels as persistent CUDA kernels (a device that opens, with NVRTC; else
 * `BackendUnavailableError`). `Auto` stays on the CPU for now — the CUDA backend does not yet run
 * everything the CPU runs (K2K from GPU handlers) — and `runtime.backendNotes` says so. The
 * WebGPU backend is not implemented yet: naming `Backend.WebGpu` throws.
 * @module
 */

import { BackendUnavailableError, ErrorCode, ValidationError } from "../core/errors.ts";
import { CpuRuntime } from "../backends/cpu/cpu_runtime.ts";
import { CudaRuntime, type CudaRuntimeOptions } from "../backends/cuda/cuda_runtime.ts";
import { Backend, type KernelRuntime } from "./backend.ts";

const WEBGPU_NOT_IMPLEMENTED = "the WebGPU backend is not implemented in this version";
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
        throw new BackendUnavailableError(this.#backend, WEBGPU_NOT_IMPLEMENTED);
      case Backend.Auto:
        // Auto stays on the CPU until the CUDA backend runs every definition the CPU runs
        // (K2K from GPU handlers is missing): a program that works must not break on a machine
        // that happens to have a GPU. Ask for Backend.Cuda to use it.
        return await CpuRuntime.create({
          backendNotes: [`cuda: ${CUDA_NOT_AUTO}`, `webgpu: ${WEBGPU_NOT_IMPLEMENTED}`],
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
