// The 128-byte control block: documented offsets, typed accessors, commands, the seqlock-guarded
// 64-bit counters (including a torn-read test across two workers), the HLC word, and the C and
// WGSL struct texts (the C text is compiled with nvcc when it is installed).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CONTROL_BLOCK_BYTES,
  CONTROL_BLOCK_FIELDS,
  CONTROL_BLOCK_MAGIC,
  ControlBlock,
  ControlBlockOffset,
  KernelCommand,
  KernelErrorCode,
  KernelState,
} from "../../src/core/control_block.ts";
import { ErrorCode, TimeoutError, ValidationError } from "../../src/core/errors.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";
import type { SeqlockReaderJob, SeqlockReaderReport } from "../fixtures/seqlock_reader.ts";
import type { SeqlockWriterJob } from "../fixtures/seqlock_writer.ts";

// The offsets as docs/control-block.md states them, written out independently of the source.
const DOCUMENTED: Record<string, number> = {
  magic: 0,
  version: 4,
  state: 8,
  commands: 12,
  kernel_id: 16,
  last_error: 20,
  error_count: 24,
  in_flight: 28,
  seq: 32,
  processed: 40,
  dropped: 48,
  hlc: 64,
  hlc_node_id: 72,
  input_head: 80,
  input_tail: 84,
  output_head: 88,
  output_tail: 92,
  input_capacity: 96,
  output_capacity: 100,
  input_mask: 104,
  output_mask: 108,
  heartbeat: 112,
};

function nvccVersion(): string | undefined {
  try {
    const r = spawnSync("nvcc", ["--version"], { encoding: "utf8" });
    return r.status === 0 ? r.stdout.trim().split("\n").at(-1) : undefined;
  } catch {
    return undefined;
  }
}

describe("control block layout", () => {
  it("the field table covers 128 bytes without gaps or overlaps and matches the docs", () => {
    let next = 0;
    for (const f of CONTROL_BLOCK_FIELDS) {
      assert.equal(f.offset, next, `${f.name} starts where the previous field ends`);
      const size = f.type === "u32" ? 4 : f.type === "u64" ? 8 : 4 * (f.words ?? 0);
      if (f.type === "u64") assert.equal(f.offset % 8, 0, `${f.name} is 8-aligned`);
      next += size;
    }
    assert.equal(next, CONTROL_BLOCK_BYTES);
    const named = CONTROL_BLOCK_FIELDS.filter((f) => f.type !== "reserved");
    assert.deepEqual(Object.fromEntries(named.map((f) => [f.name, f.offset])), DOCUMENTED);
    const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    assert.deepEqual(
      Object.fromEntries(Object.entries(DOCUMENTED).map(([k, v]) => [camel(k), v])),
      { ...ControlBlockOffset },
    );
  });

  it("init writes the header and the accessors read the documented offsets", () => {
    const sab = new SharedArrayBuffer(256 + 128);
    const cb = ControlBlock.init(sab, 128, {
      kernelId: 77,
      hlcNodeId: 5,
      inputCapacity: 1024,
      outputCapacity: 256,
    });
    const v = new DataView(sab, 128);
    assert.equal(v.getUint32(0, true), CONTROL_BLOCK_MAGIC);
    assert.equal(new TextDecoder().decode(new Uint8Array(sab, 128, 4)), "RKCB");
    assert.equal(v.getUint32(4, true), 1);
    assert.equal(v.getUint32(16, true), 77);
    assert.equal(v.getUint32(72, true), 5);
    assert.deepEqual([96, 100, 104, 108].map((o) => v.getUint32(o, true)), [1024, 256, 1023, 255]);
    assert.equal(cb.kernelId, 77);
    assert.equal(cb.hlcNodeId, 5);
    assert.equal(cb.state, KernelState.Created);
    cb.state = KernelState.Failed;
    assert.equal(v.getUint32(8, true), 6);
    cb.recordError(KernelErrorCode.HandlerFailed);
    cb.recordError(KernelErrorCode.OutputQueueFull);
    assert.equal(v.getUint32(20, true), 1);
    assert.equal(v.getUint32(24, true), 2);
    assert.equal(cb.addInFlight(3), 3);
    assert.equal(cb.addInFlight(-1), 2);
    assert.equal(v.getUint32(28, true), 2);
    cb.addCounters(5, 2);
    assert.deepEqual([40, 44, 48, 52].map((o) => v.getUint32(o, true)), [5, 0, 2, 0]);
    assert.equal(v.getUint32(32, true) % 2, 0);
    assert.equal(cb.beat(), 1);
    assert.equal(v.getUint32(112, true), 1);
    // The bytes around the block are untouched.
    assert.ok(new Uint8Array(sab, 0, 128).every((b) => b === 0));
    assert.ok(new Uint8Array(sab, 256).every((b) => b === 0));
  });

  it("attaching validates offset, size, magic and version", () => {
    const sab = new SharedArrayBuffer(256);
    const code = (fn: () => unknown) =>
      assert.throws(
        fn,
        (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.InvalidLayout,
      );
    code(() => new ControlBlock(sab, 0));
    code(() => ControlBlock.init(sab, 4));
    code(() => ControlBlock.init(sab, 136));
    code(() => ControlBlock.init(new ArrayBuffer(64), 0));
    ControlBlock.init(sab, 8);
    assert.equal(ControlBlock.open(sab, 8).state, KernelState.Created);
    new Uint32Array(sab, 8)[1] = 9;
    code(() => ControlBlock.open(sab, 8));
    assert.throws(() => ControlBlock.create({ inputCapacity: 1000 }), ValidationError);
    assert.throws(() => ControlBlock.create({ kernelId: -1 }), ValidationError);
  });

  it("works over a plain ArrayBuffer too", () => {
    const cb = ControlBlock.init(new ArrayBuffer(128), 0, { kernelId: 1 });
    cb.requestTerminate();
    assert.equal(cb.takeCommands(), KernelCommand.Terminate);
    cb.addProcessed(10);
    assert.equal(cb.processed, 10);
  });
});

describe("control block commands and state", () => {
  it("takeCommands clears exactly the bits it returns", () => {
    const cb = ControlBlock.create();
    cb.requestActivate();
    cb.requestTerminate();
    assert.equal(cb.pendingCommands, KernelCommand.Activate | KernelCommand.Terminate);
    assert.equal(cb.takeCommands(KernelCommand.Activate), KernelCommand.Activate);
    assert.equal(cb.pendingCommands, KernelCommand.Terminate);
    cb.requestDeactivate();
    assert.equal(cb.takeCommands(), KernelCommand.Deactivate | KernelCommand.Terminate);
    assert.equal(cb.pendingCommands, 0);
    assert.equal(cb.takeCommands(), 0);
  });

  it("waitForCommands blocks until a command or the timeout", () => {
    const cb = ControlBlock.create();
    assert.equal(cb.waitForCommands(5), 0);
    cb.requestActivate();
    assert.equal(cb.waitForCommands(5), KernelCommand.Activate);
  });

  it("compareExchangeState moves only from the expected state", () => {
    const cb = ControlBlock.create();
    assert.ok(cb.compareExchangeState(KernelState.Created, KernelState.Launched));
    assert.ok(!cb.compareExchangeState(KernelState.Created, KernelState.Active));
    assert.equal(cb.state, KernelState.Launched);
  });

  it("waitForState resolves on a change and times out otherwise", async () => {
    const cb = ControlBlock.create();
    setTimeout(() => (cb.state = KernelState.Active), 10);
    assert.equal(
      await cb.waitForState([KernelState.Active, KernelState.Failed], { timeoutMs: 5000 }),
      2,
    );
    // A write without notify (as a GPU does it) is still seen, by polling.
    setTimeout(() => Atomics.store(new Uint32Array(cb.buffer), 2, KernelState.Terminated), 10);
    assert.equal(await cb.waitForState(KernelState.Terminated, { timeoutMs: 5000 }), 5);
    await assert.rejects(
      cb.waitForState(KernelState.Launched, { timeoutMs: 20 }),
      (e: unknown) => e instanceof TimeoutError && e.code === ErrorCode.Timeout,
    );
  });

  it("snapshots queue counters and keeps masks in step with capacities", () => {
    const cb = ControlBlock.create();
    const input = SpscQueue.create({ capacity: 8, slotSize: 16, initialCounter: 100 });
    const output = SpscQueue.create({ capacity: 4, slotSize: 16 });
    input.enqueueMany([new Uint8Array(1), new Uint8Array(2), new Uint8Array(3)]);
    input.tryDequeue();
    output.tryEnqueue(new Uint8Array(1));
    cb.snapshotQueues(input.stats(), output.stats());
    assert.deepEqual([cb.inputHead, cb.inputTail, cb.outputHead, cb.outputTail], [101, 103, 0, 1]);
    cb.inputCapacity = input.capacity;
    cb.outputCapacity = output.capacity;
    assert.deepEqual([cb.inputMask, cb.outputMask], [7, 3]);
    assert.throws(() => (cb.inputCapacity = 6), ValidationError);
  });
});

describe("control block counters and clock", () => {
  it("64-bit counters carry across 2^32 and read back as numbers and bigints", () => {
    const cb = ControlBlock.create();
    cb.setCounters(2n ** 32n - 2n, 7n);
    cb.addProcessed(5);
    assert.equal(cb.processed, 2 ** 32 + 3);
    assert.equal(cb.processedBigInt, 2n ** 32n + 3n);
    cb.addProcessed(2 ** 40 + 1);
    assert.equal(cb.processedBigInt, 2n ** 40n + 2n ** 32n + 4n);
    cb.addDropped(3);
    assert.equal(cb.dropped, 10);
    assert.deepEqual(cb.readCounters(), { processed: 2n ** 40n + 2n ** 32n + 4n, dropped: 10n });
    cb.setCounters(2n ** 64n - 1n);
    cb.addProcessed(2);
    assert.equal(cb.processedBigInt, 1n, "wraps at 2^64");
    assert.equal(cb.seq % 2, 0);
    assert.throws(() => cb.addProcessed(-1), ValidationError);
    assert.throws(() => cb.addProcessed(0.5), ValidationError);
  });

  it("a reader in one worker never sees a torn value while another worker writes", async () => {
    const cb = ControlBlock.create();
    const flags = new SharedArrayBuffer(12);
    const start = 2n ** 33n - 1000n;
    const difference = 2n ** 32n + 12345n;
    const sections = 2_000_000;
    cb.setCounters(start, start - difference);
    const workers: Worker[] = [];
    const run = <T>(file: string, job: unknown): Promise<T> => {
      const w = new Worker(new URL(`../fixtures/${file}`, import.meta.url), { type: "module" });
      workers.push(w);
      return new Promise<T>((resolve, reject) => {
        w.onmessage = (e: MessageEvent<T>) => resolve(e.data);
        w.onerror = (e: ErrorEvent) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        w.postMessage(job);
      });
    };
    try {
      const writer = run<{ added: bigint }>(
        "seqlock_writer.ts",
        {
          buffer: cb.buffer as SharedArrayBuffer,
          byteOffset: 0,
          flags,
          sections,
        } satisfies SeqlockWriterJob,
      );
      const reader = run<SeqlockReaderReport>(
        "seqlock_reader.ts",
        {
          buffer: cb.buffer as SharedArrayBuffer,
          byteOffset: 0,
          flags,
          start,
          end: 2n ** 63n,
          difference,
          enoughReads: 20_000,
          enoughHighWords: 500,
        } satisfies SeqlockReaderJob,
      );
      const [{ added }, report] = await Promise.all([writer, reader]);
      assert.deepEqual(report.errors, []);
      assert.ok(report.reads >= 20_000, `only ${report.reads} reads`);
      assert.ok(report.highWords >= 500, `saw only ${report.highWords} high words`);
      assert.equal(cb.processedBigInt, start + added);
      assert.equal(cb.droppedBigInt, start + added - difference);
      console.log(
        `seqlock: ${report.reads} consistent reads across ${report.highWords} high words`,
      );
    } finally {
      for (const w of workers) w.terminate();
    }
  });

  it("exposes a SharedHlcClock over the HLC word at offset 64", () => {
    let t = 1_700_000_000_000;
    const cb = ControlBlock.create({ hlcNodeId: 9 });
    const host = cb.hlcClock({ now: () => t });
    const kernel = cb.hlcClock({ now: () => t, nodeId: 10 });
    const a = host.tick();
    const b = kernel.tick();
    assert.equal(a.nodeId, 9);
    assert.equal(b.nodeId, 10);
    assert.ok(b.compare(a) > 0);
    t++;
    const c = host.tick();
    // The word reads as two u32 words (lo @64, hi @68), as WGSL sees it.
    const u = new Uint32Array(cb.buffer);
    assert.ok(HlcTimestamp.fromWords(u[16], u[17], 9).equals(c));
  });
});

describe("control block struct texts", () => {
  it("the WGSL struct declares 32 u32 words in offset order", () => {
    const text = ControlBlock.wgslStruct();
    const body = text.slice(text.indexOf("struct RkControlBlock {"));
    let words = 0;
    for (const m of body.matchAll(/^\s+(\w+): (atomic<u32>|u32|array<u32, (\d+)>),/gm)) {
      words += m[3] ? Number(m[3]) : 1;
    }
    assert.equal(words, 32);
    assert.match(body, /state: atomic<u32>, \/\/ @8:/);
    assert.match(body, /processed_lo: atomic<u32>, \/\/ @40:/);
    assert.match(body, /processed_hi: atomic<u32>, \/\/ @44:/);
    assert.match(body, /hlc_hi: atomic<u32>, \/\/ @68:/);
    assert.match(body, /heartbeat: atomic<u32>, \/\/ @112:/);
    assert.match(text, /const RK_STATE_TERMINATED: u32 = 5u;/);
    assert.match(text, /const RK_CMD_TERMINATE: u32 = 4u;/);
  });

  const nvcc = nvccVersion();
  it(
    "the C struct compiles with nvcc and static_asserts hold for every documented offset",
    { skip: nvcc === undefined ? "nvcc is not on PATH (install the CUDA toolkit to run)" : false },
    () => {
      const asserts = Object.entries(DOCUMENTED).map(([name, offset]) =>
        `static_assert(__builtin_offsetof(RkControlBlock, ${name}) == ${offset}, "${name}");`
      );
      const source = [
        ControlBlock.cStruct({ asserts: true }),
        ...asserts,
        `static_assert(sizeof(RkControlBlock) == 128, "size");`,
        `static_assert(RK_CB_MAGIC == 0x${CONTROL_BLOCK_MAGIC.toString(16)}u, "magic");`,
        // The device side uses the fields the way the docs describe.
        "__global__ void touch(RkControlBlock* cb) {",
        "  unsigned int cmd = atomicAnd(&cb->commands, ~(unsigned int)RK_CMD_ACTIVATE);",
        "  if (cmd & RK_CMD_ACTIVATE) atomicExch(&cb->state, RK_STATE_ACTIVE);",
        "  atomicCAS(&cb->hlc, 0ull, 1ull);",
        "  atomicAdd(&cb->heartbeat, 1u);",
        "}",
      ].join("\n");
      const dir = mkdtempSync(join(tmpdir(), "rk-cb-"));
      try {
        const file = join(dir, "control_block.cu");
        writeFileSync(file, source);
        const r = spawnSync(
          "nvcc",
          ["-std=c++17", "-x", "cu", "-c", "-arch=sm_90", "-o", join(dir, "cb.o"), file],
          { encoding: "utf8" },
        );
        assert.equal(r.status, 0, `nvcc (${nvcc}) failed:\n${r.stderr}\n${source}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
