// Whether the WebGPU tests can run here, or why not (they then skip by this explicit check and
// print it). Deno has navigator.gpu (lavapipe on a machine without a GPU); Bun's bun-webgpu
// package finds only Dawn's null backend on such a machine, which the adapter refuses.
import { requestWebGpuDevice } from "../../src/backends/webgpu/adapter.ts";

/** False when a usable WebGPU adapter exists, else the reason there is none. */
export async function webGpuSkip(file: string): Promise<string | false> {
  try {
    const { device } = await requestWebGpuDevice();
    device.destroy();
    return false;
  } catch (e) {
    const reason = `no WebGPU adapter: ${(e as Error).message}`;
    console.log(`${file}: skipping: ${reason}`);
    return reason;
  }
}

/** Waits until `ok()` holds (polling every 5 ms), failing after `ms`. */
export async function until(ok: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`${what} did not hold within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
