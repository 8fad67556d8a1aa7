/**
 * What `Backend.Auto` runs on. In order:
 *
 * 1. `RINGKERNEL_BACKEND` (`cpu`, `cuda`, `webgpu`, or `auto` for what follows), for running a
 *    program written with `Backend.Auto` elsewhere without changing it; the backend it names
 *    must open (`BackendUnavailableError` otherwise, as when named in code). A backend named in
 *    code is never overridden.
 * 2. CUDA, when a usable device exists: libcuda loads, `cuInit` succeeds and the device ordinal
 *    of `builder.cuda({ ordinal })` exists (`probeCuda`; a probe, not a runtime, so it is cheap
 *    and never throws). A device that is found but whose runtime does not open (no NVRTC, a
 *    process whose context faulted) falls back to the CPU, saying why.
 * 3. The CPU.
 *
 * WebGPU is never the automatic choice: a round trip waits for a buffer map (milliseconds), and
 * the adapter a machine without a GPU offers is often a software one.
 * @module
 */

import { ErrorCode, ValidationError } from "../core/errors.ts";
import { type CudaProbe, type CudaProbeOptions, probeCuda } from "../../ffi/cuda_probe.ts";
import { envVar } from "../../ffi/discovery.ts";
import type { ConcreteBackend } from "./backend.ts";

/** The environment variable that picks the backend of `Backend.Auto`. */
export const BACKEND_ENV = "RINGKERNEL_BACKEND";

/** Why `Backend.Auto` does not pick WebGPU (a `backendNotes` entry after `webgpu: `). */
export const WEBGPU_NOT_AUTO: string =
  "not chosen automatically (a WebGPU round trip takes milliseconds, and adapters are often " +
  "software ones such as lavapipe); ask for Backend.WebGpu";

/** How `Backend.Auto` looks at the machine; `RuntimeBuilder.autoProbes` replaces parts (tests). */
export interface AutoProbes {
  /** Whether a usable CUDA device exists (default: {@linkcode probeCuda}). */
  cuda(options: CudaProbeOptions): CudaProbe;
  /** Reads an environment variable (default: `envVar`, which never prompts under Deno). */
  env(name: string): string | undefined;
}

/** The probes of the real machine. */
export const DEFAULT_AUTO_PROBES: AutoProbes = Object.freeze({
  cuda: (options: CudaProbeOptions) => probeCuda(options),
  env: (name: string) => envVar(name),
});

/** What `Backend.Auto` chose. */
export interface AutoChoice {
  /** The backend to build. */
  readonly backend: ConcreteBackend;
  /** Why the others were not chosen, each `"<backend>: <why>"` (the runtime's `backendNotes`). */
  readonly notes: readonly string[];
  /**
   * True when `RINGKERNEL_BACKEND` named it: a backend that does not open is then an error, not
   * a reason to fall back.
   */
  readonly forced: boolean;
}

const NAMED: readonly ConcreteBackend[] = ["cpu", "cuda", "webgpu"];

/**
 * Chooses the backend of `Backend.Auto` (see the module's note). Throws `ValidationError`
 * (`E_INVALID_ARGUMENT`) when `RINGKERNEL_BACKEND` holds something else than `cpu`, `cuda`,
 * `webgpu` or `auto`.
 */
export function chooseAutoBackend(
  probes: AutoProbes,
  cuda: CudaProbeOptions = {},
): AutoChoice {
  const raw = probes.env(BACKEND_ENV);
  const named = raw?.trim().toLowerCase();
  if (named !== undefined && named !== "" && named !== "auto") {
    const backend = NAMED.find((b) => b === named);
    if (backend === undefined) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `${BACKEND_ENV} must be one of cpu, cuda, webgpu or auto, got ${JSON.stringify(raw)}`,
      );
    }
    const why = `not tried (${BACKEND_ENV}=${backend})`;
    return {
      backend,
      notes: NAMED.filter((b) => b !== backend && b !== "cpu").map((b) => `${b}: ${why}`),
      forced: true,
    };
  }
  const webgpu = `webgpu: ${WEBGPU_NOT_AUTO}`;
  const probe = probes.cuda(cuda);
  if (probe.usable) return { backend: "cuda", notes: [webgpu], forced: false };
  return {
    backend: "cpu",
    notes: [`cuda: no usable CUDA device: ${probe.reason}`, webgpu],
    forced: false,
  };
}
