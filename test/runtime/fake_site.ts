// A `KernelHandle` over a fake backend site whose "device" is the test itself: a kernel region in
// plain memory (as mapped GPU memory is: the handle polls), stepped by hand, that may keep taking
// input after its exit settled (a CUDA kernel killed while its handler still spins on the GPU).
import assert from "node:assert/strict";
import { KernelState } from "../../src/core/control_block.ts";
import { decodeEnvelope, writeEnvelope, writeMessage } from "../../src/core/envelope.ts";
import { HlcClock } from "../../src/core/hlc.ts";
import { defineMessage } from "../../src/core/schema.ts";
import { passthroughKernel } from "../../src/runtime/kernel.ts";
import {
  type FailureCause,
  type KernelExit,
  KernelHandle,
  type KernelSite,
} from "../../src/runtime/kernel_handle.ts";
import { kernelLayout, KernelMemory } from "../../src/runtime/kernel_memory.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";

/** The fake kernel's message: a tag. */
export const Tag = defineMessage({ typeId: 4301, name: "Tag", fields: { n: "u32" } });
const NUMERIC_ID = 7;
const KILLED: KernelExit = {
  kind: "died",
  error: { name: "Killed", message: "did not stop within 200 ms of shutdown" },
  cause: "killed",
};

/** The tag of an envelope (input or output). */
export function tagOf(envelope: Uint8Array): number {
  return Tag.decode(decodeEnvelope(envelope).payload).n;
}

/** A K2K leftover the fake backend hands back (an envelope outside the region). */
function leftover(n: number): Uint8Array {
  const buf = new Uint8Array(256);
  return buf.slice(0, writeMessage(buf, 0, Tag.of({ n }), { destKernel: NUMERIC_ID }));
}

/**
 * A kernel region in plain memory (as mapped GPU memory is: the handle polls), a backend site
 * over it, and a "device" that handles input while `running` (one message per `step`: an output
 * with the same tag, and the processed counter).
 */
export function fakeKernel(options: { hook: "defer" | "stopped" | "none"; leftovers?: number[] }) {
  const layout = kernelLayout(0, 16, 16, 256);
  const mem = KernelMemory.format(new ArrayBuffer(layout.byteLength), layout, NUMERIC_ID);
  mem.cb.state = KernelState.Active;
  let running = true;
  let settle!: (exit: KernelExit) => void;
  const exit = new Promise<KernelExit>((r) => (settle = r));
  const collectors: (() => void)[] = [];
  const log: string[] = [];
  const failures: FailureCause[] = [];
  const handled: number[] = [];
  const scratch = new Uint8Array(layout.slotSize);
  /** The device takes one message (high lane first), if it runs and one is queued. */
  const step = (): boolean => {
    if (!running) return false;
    const input = mem.high.tryDequeue() ?? mem.normal.tryDequeue();
    if (input === undefined) return false;
    const { payload } = decodeEnvelope(input);
    const n = writeEnvelope(scratch, 0, { typeId: Tag.typeId, sourceKernel: NUMERIC_ID }, payload);
    assert.ok(mem.output.tryEnqueue(scratch.subarray(0, n)), "output queue full");
    mem.cb.addProcessed(1);
    handled.push(Tag.decode(payload).n);
    return true;
  };
  let detachSteps = 0;
  const site: KernelSite = {
    mem,
    route: {
      id: "late",
      numericId: NUMERIC_ID,
      inputTypeId: 0,
      buffer: mem.buffer,
      layout,
    },
    exit,
    dispose: () => log.push("dispose"),
    onFailure: (_error, cause) => failures.push(cause),
    detach: () => {
      // The device runs concurrently: it may take a message right before the copy is made.
      for (let i = 0; i < detachSteps; i++) step();
      log.push(running ? "detach while running" : "detach");
      const copy = new ArrayBuffer(layout.byteLength);
      new Uint8Array(copy).set(new Uint8Array(mem.buffer, 0, layout.byteLength));
      return KernelMemory.attach(copy, layout);
    },
    leftovers: () => {
      log.push(running ? "leftovers while running" : "leftovers");
      return (options.leftovers ?? []).map(leftover);
    },
  };
  if (options.hook !== "none") {
    site.whenStopped = (collect) => {
      log.push("whenStopped");
      if (options.hook === "stopped") return false;
      collectors.push(collect);
      return true;
    };
  }
  const handle = new KernelHandle(
    passthroughKernel("late"),
    LaunchOptions.default(),
    site,
    new HlcClock(NUMERIC_ID),
  );
  return {
    handle,
    mem,
    log,
    failures,
    handled,
    step,
    /** Settles the exit (the backend gave up on the kernel; the device may still run). */
    kill: () => settle(KILLED),
    /** Settles the exit as the kernel's own return after a terminate. */
    terminated: () => settle({ kind: "terminated" }),
    /** Messages the device takes inside `detach` (before the copy). */
    set detachSteps(n: number) {
      detachSteps = n;
    },
    /** The device stopped: the backend runs what the handle left for then. */
    stop: () => {
      running = false;
      for (const c of collectors.splice(0)) c();
    },
    get pendingCollectors(): number {
      return collectors.length;
    },
  };
}
