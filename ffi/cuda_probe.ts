/**
 * Whether this process can use a CUDA device, asked cheaply and without throwing (for
 * `Backend.Auto`): libcuda loads, `cuInit` succeeds, and the device ordinal exists. It goes
 * through {@linkcode CudaDriver.open}, so it also asks for eager module loading before `cuInit`
 * reads it (see `ffi/cuda.ts`), as a runtime built afterwards needs.
 *
 * Under Deno it first queries the permissions it needs (FFI, and reading the file system for the
 * library search) and reports "no" when they were not granted, rather than make an interactive
 * Deno prompt for them on a machine that may have no GPU at all.
 * @module
 */

import { CudaDriver } from "./cuda.ts";
import { ffiRuntime } from "./dlopen.ts";

/** What {@linkcode probeCuda} found. */
export type CudaProbe =
  | {
    /** A device opens. */
    readonly usable: true;
    /** How many CUDA devices the driver reports. */
    readonly devices: number;
  }
  | {
    /** No device can be used here. */
    readonly usable: false;
    /** Why, in one line (the driver's or the library search's first line). */
    readonly reason: string;
  };

/** Options of {@linkcode probeCuda}. */
export interface CudaProbeOptions {
  /** Path of libcuda (default: discovery, `RINGKERNEL_LIBCUDA`, ...). */
  readonly libcuda?: string;
  /** The device that must exist (default 0). */
  readonly ordinal?: number;
}

interface DenoPermissionQuery {
  querySync?(descriptor: { name: "ffi" | "read" }): { state: string };
}

/** Why Deno may not load libcuda without asking, or undefined when it may. */
function denoDenies(): string | undefined {
  if (ffiRuntime !== "deno") return undefined;
  const permissions = (globalThis as { Deno?: { permissions?: DenoPermissionQuery } }).Deno
    ?.permissions;
  const missing = (["ffi", "read"] as const).filter((name) =>
    permissions?.querySync?.({ name }).state !== "granted"
  );
  return missing.length === 0
    ? undefined
    : `Deno was not given ${
      missing.map((m) => `--allow-${m}`).join(" and ")
    } (needed to load libcuda)`;
}

/** The first line of an error's message. */
function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0].replace(/[;:,]?\s*tried:?\s*$/, "");
}

/**
 * Whether a CUDA device can be used here (see the module's note). Never throws: a missing
 * library, a failed `cuInit` (`CUDA_ERROR_NO_DEVICE`, a driver/library mismatch), no FFI or no
 * permission all come back as `{ usable: false, reason }`.
 */
export function probeCuda(options: CudaProbeOptions = {}): CudaProbe {
  if (ffiRuntime === "none") return { usable: false, reason: "this runtime has no FFI" };
  let denied: string | undefined;
  try {
    denied = denoDenies();
  } catch (e) {
    denied = firstLine(e);
  }
  if (denied !== undefined) return { usable: false, reason: denied };
  let driver: CudaDriver;
  try {
    driver = CudaDriver.open(options.libcuda === undefined ? {} : { path: options.libcuda });
  } catch (e) {
    return { usable: false, reason: firstLine(e) };
  }
  try {
    const devices = driver.deviceCount();
    const ordinal = options.ordinal ?? 0;
    if (devices === 0) return { usable: false, reason: "libcuda reports no CUDA device" };
    if (ordinal >= devices) {
      return {
        usable: false,
        reason: `no CUDA device ${ordinal} (${devices} device${devices === 1 ? "" : "s"})`,
      };
    }
    return { usable: true, devices };
  } catch (e) {
    return { usable: false, reason: firstLine(e) };
  } finally {
    try {
      driver.close();
    } catch {
      // Nothing was opened on it.
    }
  }
}
