// Prints one JSON line describing this machine's CUDA device, driver and runtime, read through
// the library's own FFI layer (`CudaDriver`, `Nvrtc`) under whichever runtime runs it (Deno or
// Bun). `scripts/test_gpu.mjs` heads each GPU test log with it. Where there is no GPU it still
// prints the runtime and says why no device was read (`error`); it never exits non-zero for that.
import { readFileSync, realpathSync } from "node:fs";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { CudaDriver } from "../ffi/cuda.ts";
import { Nvrtc } from "../ffi/nvrtc.ts";

/** What this script prints. */
interface GpuInfo {
  runtime: "deno" | "bun";
  runtimeVersion: string;
  date: string;
  device?: {
    name: string;
    arch: string;
    smCount: number;
    totalMemory: number;
  };
  /** The kernel driver's version, e.g. "580.65.06" (where it could be read). */
  driverVersion?: string;
  /** The CUDA version the driver implements (`cuDriverGetVersion`), e.g. "13.0". */
  cudaVersion?: string;
  /** NVRTC's version, e.g. "13.0". */
  nvrtcVersion?: string;
  /** Where libcuda was loaded from. */
  libcuda?: string;
  error?: string;
}

/** The NVIDIA kernel driver's version: /proc, else nvidia-smi, else libcuda's file name. */
function driverVersion(libcuda: string | undefined): string | undefined {
  try {
    const m = /Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]+)/.exec(
      readFileSync("/proc/driver/nvidia/version", "utf8"),
    );
    if (m) return m[1];
  } catch {
    // No /proc entry (not Linux, or not mounted in this container): try the next source.
  }
  const smi = spawnSync("nvidia-smi", ["--query-gpu=driver_version", "--format=csv,noheader"], {
    encoding: "utf8",
  });
  if (smi.status === 0 && smi.stdout.trim() !== "") return smi.stdout.trim().split("\n")[0];
  if (libcuda !== undefined) {
    try {
      const m = /libcuda\.so\.([0-9][0-9.]+)$/.exec(realpathSync(libcuda));
      if (m) return m[1];
    } catch {
      // A bare soname: the loader found it, but it has no path to resolve here.
    }
  }
  return undefined;
}

/** An error's message on one line (the discovery errors list every place tried, a line each). */
function oneLine(err: unknown): string {
  return (err as Error).message.replace(/:\s*\n\s*/g, ": ").replace(/\s*\n\s*/g, "; ")
    .slice(0, 400);
}

function runtimeInfo(): { runtime: "deno" | "bun"; runtimeVersion: string } {
  const g = globalThis as {
    Deno?: { version: { deno: string; v8: string; typescript: string } };
    Bun?: { version: string; revision: string };
  };
  if (g.Deno !== undefined) {
    const v = g.Deno.version;
    return {
      runtime: "deno",
      runtimeVersion: `${v.deno} (v8 ${v.v8}, typescript ${v.typescript})`,
    };
  }
  if (g.Bun !== undefined) {
    return { runtime: "bun", runtimeVersion: `${g.Bun.version} (${g.Bun.revision.slice(0, 9)})` };
  }
  throw new Error("gpu_info.ts runs under Deno or Bun");
}

const info: GpuInfo = { ...runtimeInfo(), date: new Date().toISOString() };
try {
  const driver = CudaDriver.open();
  try {
    info.libcuda = driver.source.path;
    info.cudaVersion = `${Math.floor(driver.version / 1000)}.${(driver.version % 1000) / 10}`;
    if (driver.deviceCount() === 0) throw new Error("libcuda reports no CUDA device");
    const d = driver.deviceInfo(0);
    info.device = { name: d.name, arch: d.arch, smCount: d.smCount, totalMemory: d.totalMemory };
  } finally {
    driver.close();
  }
} catch (err) {
  info.error = oneLine(err);
}
const dv = driverVersion(info.libcuda);
if (dv !== undefined) info.driverVersion = dv;
try {
  const nvrtc = Nvrtc.open({ cache: false });
  info.nvrtcVersion = `${nvrtc.version.major}.${nvrtc.version.minor}`;
  nvrtc.close();
} catch (err) {
  info.error ??= `no NVRTC: ${oneLine(err)}`;
}
process.stdout.write(`${JSON.stringify(info)}\n`);
