/**
 * Every GPU buffer the WebGPU runtime creates goes through one {@linkcode TrackedBuffers}, which
 * counts the live ones and their bytes: a leak (a kernel whose buffers outlive it) shows up as a
 * count that grows over launch/terminate cycles, which the tests check.
 * @module
 */

/** Live GPU buffers of a runtime. */
export interface GpuBufferStats {
  /** Buffers created and not yet destroyed. */
  readonly live: number;
  /** Their total size in bytes. */
  readonly bytes: number;
}

/** Creates and destroys a device's buffers, counting the live ones. */
export class TrackedBuffers {
  readonly #device: GPUDevice;
  readonly #live = new Map<GPUBuffer, number>();
  #bytes = 0;

  /** Tracks buffers of `device`. */
  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** A new buffer (`label` names it in validation messages). */
  create(label: string, size: number, usage: number): GPUBuffer {
    const buffer = this.#device.createBuffer({ label, size, usage });
    this.#live.set(buffer, size);
    this.#bytes += size;
    return buffer;
  }

  /** Destroys `buffer` (once; later calls do nothing). */
  destroy(buffer: GPUBuffer): void {
    const size = this.#live.get(buffer);
    if (size === undefined) return;
    this.#live.delete(buffer);
    this.#bytes -= size;
    buffer.destroy();
  }

  /** Destroys every live buffer (shutdown, device loss). */
  destroyAll(): void {
    for (const b of [...this.#live.keys()]) this.destroy(b);
  }

  /** The live count and bytes. */
  stats(): GpuBufferStats {
    return { live: this.#live.size, bytes: this.#bytes };
  }
}
