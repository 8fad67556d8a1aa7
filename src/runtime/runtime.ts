/**
 * The entry point: `RingKernel.builder().backend(Backend.Auto).build()` returns a runtime.
 *
 * `Auto` tries CUDA, then WebGPU, then the CPU. Only the CPU backend is implemented so far, so
 * `Auto` always lands on it today (`runtime.backendNotes` says why the others were skipped), and
 * naming `Backend.Cuda` or `Backend.WebGpu` explicitly throws `BackendUnavailableError` rather than
 * pretending.
 * @module
 */

import { BackendUnavailableError, ErrorCode, ValidationError } from "../core/errors.ts";
import { CpuRuntime } from "../backends/cpu/cpu_runtime.ts";
import { Backend, type KernelRuntime } from "./backend.ts";

const NOT_IMPLEMENTED: Readonly<Record<"cuda" | "webgpu", string>> = {
  cuda: "the CUDA backend is not implemented in this version",
  webgpu: "the WebGPU backend is not implemented in this version",
};

/** Configures and builds a runtime. Get one from {@linkcode RingKernel.builder}. */
export class RuntimeBuilder {
  #backend: Backend = Backend.Auto;

  /** Chooses the backend (default `Backend.Auto`). */
  backend(backend: Backend): this {
    if (!Object.values(Backend).includes(backend)) {
      throw new ValidationError(ErrorCode.InvalidArgument, `unknown backend ${backend}`);
    }
    this.#backend = backend;
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
      case Backend.WebGpu:
        throw new BackendUnavailableError(this.#backend, NOT_IMPLEMENTED[this.#backend]);
      case Backend.Auto:
        return await CpuRuntime.create({
          backendNotes: [`cuda: ${NOT_IMPLEMENTED.cuda}`, `webgpu: ${NOT_IMPLEMENTED.webgpu}`],
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
 * console.log(rt.backend); // "cpu" (until the CUDA and WebGPU backends land)
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
