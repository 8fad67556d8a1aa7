/**
 * The entry point: `RingKernel.builder().backend(Backend.Auto).build()` returns a runtime.
 *
 * `Backend.Cuda` runs kernels as persistent CUDA kernels (a device that opens, with NVRTC; else
 * `BackendUnavailableError`). `Backend.WebGpu` runs them in WGSL with emulated persistence on a
 * WebGPU device (`BackendUnavailableError` when no adapter is found). `Backend.Auto` (the
 * default) picks CUDA when a usable CUDA device exists and the CPU otherwise, never WebGPU;
 * `RINGKERNEL_BACKEND=cpu|cuda|webgpu` overrides it (see `auto_backend.ts`), and
 * `runtime.backendNotes` says why the others were not chosen.
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
import { type AutoProbes, chooseAutoBackend, DEFAULT_AUTO_PROBES } from "./auto_backend.ts";
import { Backend, type KernelRuntime } from "./backend.ts";

/** The first line of why a CUDA runtime could not be made, kept short. */
function cudaReason(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const line = text.split("\n")[0].replace(/^backend cuda is unavailable: /, "")
    .replace(/[;:,]?\s*tried:?\s*$/, "");
  return line.length > 160 ? `${line.slice(0, 157)}...` : line;
}

/** Configures and builds a runtime. Get one from {@linkcode RingKernel.builder}. */
export class RuntimeBuilder {
  #backend: Backend = Backend.Auto;
  #cuda: CudaRuntimeOptions = {};
  #webgpu: WebGpuRuntimeOptions = {};
  #probes: AutoProbes = DEFAULT_AUTO_PROBES;

  /**
   * Chooses the backend (default `Backend.Auto`: CUDA when a usable device exists, else the
   * CPU; `RINGKERNEL_BACKEND` overrides it). A backend named here is used as named.
   */
  backend(backend: Backend): this {
    if (!Object.values(Backend).includes(backend)) {
      throw new ValidationError(ErrorCode.InvalidArgument, `unknown backend ${backend}`);
    }
    this.#backend = backend;
    return this;
  }

  /**
   * Options of the CUDA backend (device ordinal, library paths, module cache folder); `Auto`
   * probes the device and libcuda they name.
   */
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
   * Replaces how `Backend.Auto` looks at the machine: the CUDA probe and the environment it
   * reads `RINGKERNEL_BACKEND` from (parts left out keep the real ones). For tests, and for
   * programs that know better than a probe.
   */
  autoProbes(probes: Partial<AutoProbes>): this {
    this.#probes = { ...DEFAULT_AUTO_PROBES, ...probes };
    return this;
  }

  /**
   * Builds the runtime. Throws `BackendUnavailableError` (`E_BACKEND_UNAVAILABLE`) when the
   * named backend (in code, or by `RINGKERNEL_BACKEND` under `Auto`) cannot run here, and
   * `ValidationError` (`E_INVALID_ARGUMENT`) when `RINGKERNEL_BACKEND` names no backend.
   */
  async build(): Promise<KernelRuntime> {
    switch (this.#backend) {
      case Backend.Cpu:
        return await CpuRuntime.create();
      case Backend.Cuda:
        return await this.#buildCuda();
      case Backend.WebGpu:
        return await this.#buildWebGpu();
      case Backend.Auto:
        return await this.#buildAuto();
    }
  }

  /** The CUDA runtime, with `Auto`'s notes when it chose it. */
  async #buildCuda(backendNotes?: readonly string[]): Promise<KernelRuntime> {
    try {
      return await CudaRuntime.create(
        backendNotes === undefined ? this.#cuda : { ...this.#cuda, backendNotes },
      );
    } catch (e) {
      if (e instanceof BackendUnavailableError) throw e;
      throw new BackendUnavailableError("cuda", `no CUDA device: ${cudaReason(e)}`);
    }
  }

  /** The WebGPU runtime, with `Auto`'s notes when it chose it. */
  async #buildWebGpu(backendNotes?: readonly string[]): Promise<KernelRuntime> {
    try {
      return await WebGpuRuntime.create(
        backendNotes === undefined ? this.#webgpu : { ...this.#webgpu, backendNotes },
      );
    } catch (e) {
      if (e instanceof NoWebGpuError) {
        throw new BackendUnavailableError("webgpu", e.message);
      }
      throw e;
    }
  }

  /** `Backend.Auto`: see `auto_backend.ts`. */
  async #buildAuto(): Promise<KernelRuntime> {
    const choice = chooseAutoBackend(this.#probes, {
      ...(this.#cuda.libcuda === undefined ? {} : { libcuda: this.#cuda.libcuda }),
      ...(this.#cuda.ordinal === undefined ? {} : { ordinal: this.#cuda.ordinal }),
    });
    if (choice.backend === "webgpu") return await this.#buildWebGpu(choice.notes);
    if (choice.backend === "cpu") return await CpuRuntime.create({ backendNotes: choice.notes });
    if (choice.forced) return await this.#buildCuda(choice.notes);
    try {
      return await CudaRuntime.create({ ...this.#cuda, backendNotes: choice.notes });
    } catch (e) {
      // A device, but no runtime on it (no NVRTC, a process whose context faulted, a device
      // that cannot map host memory): a program that runs on the CPU must not fail for that.
      return await CpuRuntime.create({
        backendNotes: [
          `cuda: a CUDA device was found but its runtime did not open: ${cudaReason(e)}`,
          ...choice.notes,
        ],
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
 * console.log(rt.backend); // "cuda" where a CUDA device opens, else "cpu"
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
