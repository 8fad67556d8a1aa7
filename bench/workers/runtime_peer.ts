/**
 * The postMessage baselines of bench/runtime.ts: a plain Worker that runs the same arithmetic as
 * the benchmark's kernels (bench/kernels.ts), fed and answered by structured-clone postMessage.
 *
 * A job message `{ mode }` picks what the following messages are; the worker answers it with
 * `{ ready: true }`.
 * - `acc`: each message is `{ value }`, answered with `{ total }` (the accumulator).
 * - `sum`: each message is a 16-float `Float32Array`, answered with `{ total, count }`.
 * - `sum-batch`: each message is a `Float32Array` of n × 16 floats, answered with one
 *   `Float32Array` of n × [total, count], transferred (the cheapest answer postMessage offers).
 * @module
 */

/** A job for the peer worker. */
export interface PeerMode {
  mode: "acc" | "sum" | "sum-batch";
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<unknown>) => void) | null;
  postMessage(msg: unknown, transfer?: Transferable[]): void;
};

let mode: PeerMode["mode"] = "acc";
// Kept as an f32 like the kernel's state, so the replies are the same numbers.
const total = new Float32Array(1);
let count = 0;

scope.onmessage = (e: MessageEvent<unknown>) => {
  const data = e.data;
  if (mode === "acc" && typeof data === "object" && data !== null && "value" in data) {
    total[0] += (data as { value: number }).value;
    scope.postMessage({ total: total[0] });
    return;
  }
  if (data instanceof Float32Array) {
    if (mode === "sum") {
      let t = 0;
      for (let i = 0; i < 16; i++) t += data[i];
      count++;
      scope.postMessage({ total: t, count });
      return;
    }
    const n = data.length >> 4;
    const out = new Float32Array(n * 2);
    for (let m = 0; m < n; m++) {
      let t = 0;
      for (let i = 0; i < 16; i++) t += data[m * 16 + i];
      out[m * 2] = t;
      out[m * 2 + 1] = ++count;
    }
    scope.postMessage(out, [out.buffer]);
    return;
  }
  mode = (data as PeerMode).mode;
  total[0] = 0;
  count = 0;
  scope.postMessage({ ready: true });
};
