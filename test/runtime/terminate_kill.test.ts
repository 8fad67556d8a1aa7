// A kernel killed while `terminate` waits for it, in polling mode (mapped GPU memory): once the
// kernel's end is known, waits on the output queue return at once, and a loop over them that
// only awaited such waits ran on microtasks alone, so the timers and immediates the rest of the
// exit waited on never came (the H100's "shutdown returns while a handler runs on" hung so). The
// scenario runs in a worker: a starved event loop cannot time itself out.
import { describe, it } from "node:test";
import assert from "node:assert/strict";

const LIMIT_MS = 10_000;

describe("a kill while terminate waits (polling mode)", () => {
  it("settles: terminate and the pending request reject, input is returned", {
    timeout: LIMIT_MS + 5_000,
  }, async () => {
    const worker = new Worker(new URL("./terminate_kill_worker.ts", import.meta.url), {
      type: "module",
    });
    try {
      const outcome = await new Promise<unknown>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the kernel's exit did not settle within ${LIMIT_MS} ms`)),
          LIMIT_MS,
        );
        worker.onmessage = (e: MessageEvent) => {
          clearTimeout(timer);
          resolve(e.data);
        };
        worker.onerror = (e: ErrorEvent) => {
          clearTimeout(timer);
          e.preventDefault();
          reject(new Error(`the worker failed: ${e.message}`));
        };
      });
      assert.deepEqual(outcome, {
        request: "KernelFailedError",
        terminate: "KernelFailedError",
        returned: 3,
      });
    } finally {
      worker.terminate();
    }
  });
});
