// The WebGPU device the GPU tests run on, or the reason there is none (the tests then skip by
// this explicit check and print it). Deno provides navigator.gpu (lavapipe in CI); Bun does not.

type NavigatorWithGpu = Navigator & { gpu?: GPU };

/** A device, or why there is none. */
export type GpuProbe = { device: GPUDevice; skip: false } | { device: undefined; skip: string };

/** Requests an adapter and a device once per test file. */
export async function probeWebGpu(): Promise<GpuProbe> {
  const nav = globalThis.navigator as NavigatorWithGpu | undefined;
  if (nav?.gpu === undefined) {
    return {
      device: undefined,
      skip: "navigator.gpu is absent in this runtime (Bun ships no WebGPU; Deno provides it)",
    };
  }
  const adapter = await nav.gpu.requestAdapter();
  if (adapter === null) {
    return {
      device: undefined,
      skip: "navigator.gpu found no adapter (install Mesa lavapipe for a software one)",
    };
  }
  return { device: await adapter.requestDevice(), skip: false };
}
