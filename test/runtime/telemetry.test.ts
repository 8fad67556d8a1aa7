import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ControlBlock, KernelState } from "../../src/core/control_block.ts";
import { ErrorCode, ValidationError } from "../../src/core/errors.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { LatencyHistogram } from "../../src/runtime/histogram.ts";
import {
  escapeLabelValue,
  KERNEL_STATE_NAMES,
  type KernelMetrics,
  kernelStateName,
  prometheusText,
  readControlBlockMetrics,
  runtimeTotals,
  type StateChangeEvent,
  TelemetryEvents,
} from "../../src/runtime/telemetry.ts";
import type { HistogramWriterJob } from "../fixtures/histogram_writer.ts";
import { type Family, parseExposition } from "./exposition.ts";

const REL = LatencyHistogram.relativeError;
const MAX = LatencyHistogram.maxTrackableNs;

/** The exact nearest-rank percentile of `sorted` (ascending): the ⌈p/100·n⌉-th smallest. */
function exactPercentile(sorted: readonly number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/** Log-uniform latencies from 8 ns to the top of the range, where the relative bound holds. */
const arbLatency = fc.double({ min: Math.log(8), max: Math.log(MAX), noNaN: true })
  .map((x) => Math.min(MAX, Math.max(8, Math.exp(x))));
const arbPercentile = fc.oneof(
  fc.constantFrom(0, 1, 25, 50, 90, 99, 99.9, 100),
  fc.double({ min: 0, max: 100, noNaN: true }),
);

function histogramOf(values: readonly number[]): LatencyHistogram {
  const h = new LatencyHistogram();
  h.recordMany(values);
  return h;
}

function throwsCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ValidationError && err.code === code);
}

// ------------------------------------------------------------------------------ histogram

describe("LatencyHistogram", () => {
  it("is empty on all-zero memory: count 0, NaN percentiles, min, max and mean", () => {
    const h = new LatencyHistogram(new SharedArrayBuffer(LatencyHistogram.byteLength));
    assert.equal(h.count, 0);
    assert.equal(h.sum, 0);
    assert.ok(Number.isNaN(h.min) && Number.isNaN(h.max) && Number.isNaN(h.mean));
    assert.ok(Number.isNaN(h.percentile(50)));
    const s = h.summary();
    assert.equal(s.count, 0);
    assert.ok(Number.isNaN(s.p50Ns) && Number.isNaN(s.p99Ns) && Number.isNaN(s.maxNs));
  });

  it("has the documented size and range: 1152 buckets in 9248 bytes, up to 2^38 ns (> 100 s)", () => {
    assert.equal(LatencyHistogram.bucketCount, 1152);
    assert.equal(LatencyHistogram.byteLength, 32 + 1152 * 8);
    assert.equal(MAX, 2 ** 38);
    assert.ok(MAX > 100e9);
    assert.equal(REL, 1 / 64);
    assert.ok(REL <= 0.03);
  });

  it("buckets tile [0, 2^38) ns contiguously, each at most 1/32 of its lower bound wide from 8 ns", () => {
    const h = new LatencyHistogram();
    let expectedLow = 0;
    for (let i = 0; i < LatencyHistogram.bucketCount; i++) {
      const [low, high] = LatencyHistogram.bucketRangeNs(i);
      assert.equal(low, expectedLow, `bucket ${i} starts where ${i - 1} ends`);
      assert.ok(high > low);
      if (low >= 8) assert.ok((high - low) / low <= 1 / 32 + 1e-15, `bucket ${i} width`);
      else assert.equal(high - low, 0.25);
      // Both ends of the bucket land in it.
      for (const v of [low, (low + high) / 2, high - 0.25]) {
        h.reset();
        h.record(v);
        assert.equal(h.bucketCountAt(i), 1, `value ${v} in bucket ${i}`);
      }
      expectedLow = high;
    }
    assert.equal(expectedLow, MAX);
  });

  it("counts, min, max, sum and mean are exact", () => {
    fc.assert(
      fc.property(fc.array(arbLatency, { minLength: 1, maxLength: 300 }), (values) => {
        const h = histogramOf(values);
        assert.equal(h.count, values.length);
        assert.equal(h.min, Math.min(...values));
        assert.equal(h.max, Math.max(...values));
        let sum = 0;
        for (const v of values) sum += v;
        assert.equal(h.sum, sum);
        assert.equal(h.mean, sum / values.length);
        let buckets = 0;
        for (let i = 0; i < LatencyHistogram.bucketCount; i++) buckets += h.bucketCountAt(i);
        assert.equal(buckets, values.length);
      }),
      { numRuns: 200 },
    );
  });

  it(`percentile is within ${REL} (1/64) of the exact nearest-rank percentile from 8 ns to 2^38 ns`, () => {
    fc.assert(
      fc.property(
        fc.array(arbLatency, { minLength: 1, maxLength: 500 }),
        fc.array(arbPercentile, { minLength: 1, maxLength: 8 }),
        (values, ps) => {
          const h = histogramOf(values);
          const sorted = [...values].sort((a, b) => a - b);
          for (const p of ps) {
            const exact = exactPercentile(sorted, p);
            const got = h.percentile(p);
            assert.ok(
              Math.abs(got - exact) <= exact * REL,
              `p${p}: got ${got}, exact ${exact}, error ${Math.abs(got - exact) / exact}`,
            );
          }
          // The ends are exact, not just within the bound.
          assert.equal(h.percentile(0), sorted[0]);
          assert.equal(h.percentile(100), sorted[sorted.length - 1]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("percentile is within 0.125 ns below 8 ns, and exact for whole and quarter nanoseconds", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 8, noNaN: true }), { minLength: 1, maxLength: 200 }),
        arbPercentile,
        (values, p) => {
          const h = histogramOf(values);
          const exact = exactPercentile([...values].sort((a, b) => a - b), p);
          assert.ok(Math.abs(h.percentile(p) - exact) <= 0.125);
        },
      ),
      { numRuns: 300 },
    );
    // Clustered integer latencies (a common shape): still within the bound everywhere.
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 8, max: 5000 }), { minLength: 1, maxLength: 400 }),
        arbPercentile,
        (values, p) => {
          const exact = exactPercentile([...values].sort((a, b) => a - b), p);
          assert.ok(Math.abs(histogramOf(values).percentile(p) - exact) <= exact * REL);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("merge equals recording the union (buckets, count, min, max, sum, percentiles)", () => {
    fc.assert(
      fc.property(
        fc.array(arbLatency, { maxLength: 200 }),
        fc.array(arbLatency, { maxLength: 200 }),
        (a, b) => {
          const merged = histogramOf(a);
          merged.merge(histogramOf(b));
          const union = histogramOf([...a, ...b]);
          assert.equal(merged.count, union.count);
          for (let i = 0; i < LatencyHistogram.bucketCount; i++) {
            assert.equal(merged.bucketCountAt(i), union.bucketCountAt(i));
          }
          if (union.count === 0) {
            assert.ok(Number.isNaN(merged.min) && Number.isNaN(merged.max));
            return;
          }
          assert.equal(merged.min, union.min);
          assert.equal(merged.max, union.max);
          // Float addition in another order: equal up to rounding.
          assert.ok(Math.abs(merged.sum - union.sum) <= union.sum * 1e-12);
          for (const p of [0, 10, 50, 90, 99, 100]) {
            assert.equal(merged.percentile(p), union.percentile(p));
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("merges across buffers, including a shared one, and merging an empty one changes nothing", () => {
    const shared = LatencyHistogram.shared();
    assert.ok(shared.buffer instanceof SharedArrayBuffer);
    shared.record(100);
    const local = new LatencyHistogram();
    local.merge(new LatencyHistogram());
    assert.equal(local.count, 0);
    local.merge(shared);
    local.merge(shared);
    assert.equal(local.count, 2);
    assert.equal(local.min, 100);
    assert.equal(local.sum, 200);
  });

  it("recordMany records a sub-range; reset empties", () => {
    const h = new LatencyHistogram();
    h.recordMany(new Float64Array([1, 2, 3, 4, 5]), 1, 4);
    assert.deepEqual([h.count, h.min, h.max, h.sum], [3, 2, 4, 9]);
    h.reset();
    assert.equal(h.count, 0);
    assert.ok(Number.isNaN(h.percentile(99)));
    h.record(7);
    assert.deepEqual([h.count, h.min, h.max, h.sum], [1, 7, 7, 7]);
  });

  it("clamps values above the range into the top bucket, keeping max and sum exact", () => {
    const h = new LatencyHistogram();
    h.record(1e13);
    h.record(0);
    assert.equal(h.bucketCountAt(LatencyHistogram.bucketCount - 1), 1);
    assert.equal(h.bucketCountAt(0), 1);
    assert.equal(h.max, 1e13);
    assert.equal(h.percentile(100), 1e13);
    assert.equal(h.sum, 1e13);
  });

  it("rejects NaN, infinities, negatives and percentiles outside [0, 100]", () => {
    const h = new LatencyHistogram();
    for (const bad of [NaN, Infinity, -Infinity, -1, -1e-9]) {
      throwsCode(() => h.record(bad), ErrorCode.InvalidArgument);
    }
    assert.equal(h.count, 0);
    for (const bad of [-1, 100.5, NaN]) {
      throwsCode(() => h.percentile(bad), ErrorCode.InvalidArgument);
    }
  });

  it("rejects a region that is misaligned or too small", () => {
    const len = LatencyHistogram.byteLength;
    throwsCode(() => new LatencyHistogram(new ArrayBuffer(len + 8), 4), ErrorCode.Misaligned);
    throwsCode(() => new LatencyHistogram(new ArrayBuffer(len - 1)), ErrorCode.InvalidLayout);
    throwsCode(() => new LatencyHistogram(new ArrayBuffer(len + 8), 16), ErrorCode.InvalidLayout);
    const h = new LatencyHistogram(new ArrayBuffer(len + 64), 64);
    h.record(5);
    assert.equal(h.byteOffset, 64);
    assert.equal(h.count, 1);
  });

  it("lives at an offset of a larger buffer with the documented layout", () => {
    const buf = new SharedArrayBuffer(64 + LatencyHistogram.byteLength);
    const h = new LatencyHistogram(buf, 64);
    h.record(1000); // 4000 units: octave 2^11, shift 6, sub 62 -> bucket 6*32 + 62 = 254
    h.record(2.5);
    const f64 = new Float64Array(buf, 64, 3);
    const u32 = new Uint32Array(buf, 64);
    assert.deepEqual([...f64], [2.5, 1000, 1002.5]);
    assert.deepEqual([u32[6], u32[7]], [2, 0]);
    assert.equal(u32[8 + 2 * 254], 1);
    assert.equal(u32[8 + 2 * 10], 1); // 2.5 ns = 10 quarter-ns units, linear region
    assert.deepEqual(LatencyHistogram.bucketRangeNs(254), [992, 1008]);
  });

  it("carries counts into the high word (64-bit counts from u32 pairs)", () => {
    const buf = new ArrayBuffer(LatencyHistogram.byteLength);
    const h = new LatencyHistogram(buf);
    const u32 = new Uint32Array(buf);
    h.record(1); // bucket 4
    u32[8 + 2 * 4] = 0xffff_ffff; // bucket 4 low word
    u32[6] = 0xffff_ffff; // count low word
    h.record(1);
    assert.equal(h.bucketCountAt(4), 2 ** 32);
    assert.equal(h.count, 2 ** 32);
    const big = new LatencyHistogram();
    big.merge(h);
    big.merge(h);
    assert.equal(big.bucketCountAt(4), 2 ** 33);
    assert.equal(big.count, 2 ** 33);
  });

  it("two workers record into one SharedArrayBuffer while the host reads: no count is lost", async () => {
    const sab = new SharedArrayBuffer(LatencyHistogram.byteLength);
    const start = new SharedArrayBuffer(8);
    const flag = new Int32Array(start);
    const reader = new LatencyHistogram(sab);
    const count = 200_000;
    const jobs: HistogramWriterJob[] = [
      { histogram: sab, start, count, base: 10, period: 977, step: 131.5 },
      { histogram: sab, start, count, base: 50_000, period: 13, step: 7 },
    ];
    const workers: Worker[] = [];
    try {
      const done = jobs.map((job) => {
        const w = new Worker(new URL("../fixtures/histogram_writer.ts", import.meta.url), {
          type: "module",
        });
        workers.push(w);
        return new Promise<void>((resolve, reject) => {
          w.onmessage = () => resolve();
          w.onerror = (e: ErrorEvent) => {
            e.preventDefault();
            reject(new Error(e.message));
          };
          w.postMessage(job);
        });
      });
      while (Atomics.load(flag, 1) < jobs.length) await new Promise((r) => setTimeout(r, 1));
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      // Read while they write: counts never go backwards and percentiles stay in range.
      let last = 0;
      let finished = false;
      const all = Promise.all(done).then(() => (finished = true));
      while (!finished) {
        const n = reader.count;
        assert.ok(n >= last);
        last = n;
        const p = reader.percentile(99);
        if (n > 0) assert.ok(p >= 10 && p <= (10 + 976 * 131.5) * (1 + REL), `p99 ${p}`);
        await new Promise((r) => setTimeout(r, 0));
      }
      await all;
    } finally {
      for (const w of workers) w.terminate();
    }
    const expected = new LatencyHistogram();
    for (const job of jobs) {
      for (let i = 0; i < job.count; i++) expected.record(job.base + (i % job.period) * job.step);
    }
    assert.equal(reader.count, 2 * count);
    for (let i = 0; i < LatencyHistogram.bucketCount; i++) {
      assert.equal(reader.bucketCountAt(i), expected.bucketCountAt(i), `bucket ${i}`);
    }
    // Percentiles come from the buckets, so they agree wherever min/max do not clamp them.
    for (const p of [10, 50, 90, 99]) assert.equal(reader.percentile(p), expected.percentile(p));
  });
});

// ------------------------------------------------------------------------------ metrics

function kernel(id: string, over: Partial<KernelMetrics> = {}): KernelMetrics {
  const h = new LatencyHistogram();
  h.recordMany([1000, 2000, 3000, 1_000_000]);
  return {
    kernelId: id,
    state: "active",
    processed: 4,
    dropped: 1,
    errors: 0,
    inputDepth: 3,
    outputDepth: 0,
    inputCapacity: 1024,
    outputCapacity: 512,
    latency: h.summary(),
    uptimeMs: 1500,
    restarts: 0,
    lateReplies: 2,
    ...over,
  };
}

describe("metrics", () => {
  it("names every control-block state and rejects unknown numbers", () => {
    for (const [key, value] of Object.entries(KernelState)) {
      assert.equal(kernelStateName(value), key.toLowerCase());
    }
    assert.equal(KERNEL_STATE_NAMES.length, Object.keys(KernelState).length);
    throwsCode(() => kernelStateName(99 as KernelState), ErrorCode.InvalidArgument);
  });

  it("runtimeTotals sums kernels by state, counters and retired totals", () => {
    const t = runtimeTotals(
      [kernel("a"), kernel("b", { state: "failed", errors: 3, processed: 10 })],
      { sent: 5, delivered: 4, queueFull: 1, notFound: 0 },
      { processed: 100, dropped: 0, errors: 1 },
    );
    assert.equal(t.processed, 114);
    assert.equal(t.dropped, 2);
    assert.equal(t.errors, 4);
    assert.equal(t.kernels.active, 1);
    assert.equal(t.kernels.failed, 1);
    assert.equal(t.kernels.created, 0);
    assert.deepEqual(Object.keys(t.kernels), [...KERNEL_STATE_NAMES]);
    assert.equal(t.k2k.delivered, 4);
    assert.deepEqual(runtimeTotals([]).k2k, { sent: 0, delivered: 0, queueFull: 0, notFound: 0 });
  });

  it("reads state, counters and wrapped queue depths from a control block", () => {
    const cb = ControlBlock.create({ inputCapacity: 16, outputCapacity: 8 });
    cb.state = KernelState.Active;
    cb.addCounters(7, 2);
    cb.recordError(4);
    cb.snapshotQueues(
      { enqueued: 3, dequeued: 0xffff_fffe }, // tail wrapped past head: depth 5
      { enqueued: 10, dequeued: 10 },
    );
    assert.deepEqual(readControlBlockMetrics(cb), {
      state: "active",
      processed: 7,
      dropped: 2,
      errors: 1,
      inputDepth: 5,
      outputDepth: 0,
      inputCapacity: 16,
      outputCapacity: 8,
    });
  });
});

// ------------------------------------------------------------------------------ events

function manualClock(t: number) {
  return () => t++;
}

describe("TelemetryEvents", () => {
  it("calls listeners in order with seq and at, until unsubscribed", () => {
    const events = new TelemetryEvents({ now: manualClock(1000) });
    const seen: StateChangeEvent[] = [];
    const off = events.on((e) => seen.push(e));
    const hlc = new HlcTimestamp(5, 1, 2);
    events.emit({ kernelId: "k", from: "created", to: "launched" });
    events.emit({ kernelId: "k", from: "launched", to: "failed", reason: "boom", hlc, at: 7 });
    off();
    off();
    events.emit({ kernelId: "k", from: "failed", to: "terminated" });
    assert.deepEqual(seen.map((e) => [e.seq, e.at, e.to, e.reason]), [
      [1, 1000, "launched", undefined],
      [2, 7, "failed", "boom"],
    ]);
    assert.equal(seen[1].hlc, hlc);
    assert.ok(Object.isFrozen(seen[0]));
    assert.equal(events.emitted, 3);
  });

  it("a throwing listener neither reaches emit's caller nor stops the others", () => {
    const reported: unknown[] = [];
    const events = new TelemetryEvents({ onListenerError: (err) => reported.push(err) });
    let calls = 0;
    events.on(() => {
      throw new Error("bad dashboard");
    });
    events.on(() => calls++);
    events.emit({ kernelId: "k", from: "launched", to: "active" });
    assert.equal(calls, 1);
    assert.equal(events.listenerErrors, 1);
    assert.equal((reported[0] as Error).message, "bad dashboard");
  });

  it("the same function subscribed twice is called twice and unsubscribed independently", () => {
    const events = new TelemetryEvents();
    let calls = 0;
    const f = () => calls++;
    const off1 = events.on(f);
    events.on(f);
    events.emit({ kernelId: "k", from: "launched", to: "active" });
    off1();
    events.emit({ kernelId: "k", from: "active", to: "deactivated" });
    assert.equal(calls, 3);
  });

  it("events() yields in order, buffered events survive close, then the iteration ends", async () => {
    const events = new TelemetryEvents();
    const stream = events.events();
    events.emit({ kernelId: "a", from: "created", to: "launched" });
    events.emit({ kernelId: "a", from: "launched", to: "active" });
    events.close();
    events.emit({ kernelId: "a", from: "active", to: "terminated" }); // after close: no-op
    const got: string[] = [];
    for await (const e of stream) got.push(`${e.seq}:${e.to}`);
    assert.deepEqual(got, ["1:launched", "2:active"]);
    assert.equal(stream.dropped, 0);
    assert.ok(events.closed);
  });

  it("a pending next() is resolved by emit, and by close with done", async () => {
    const events = new TelemetryEvents();
    const stream = events.events();
    const first = stream.next();
    const second = stream.next();
    events.emit({ kernelId: "a", from: "launched", to: "active" });
    assert.equal((await first).value?.to, "active");
    events.close();
    assert.deepEqual(await second, { done: true, value: undefined });
    assert.deepEqual(await stream.next(), { done: true, value: undefined });
  });

  it("a slow reader keeps the newest bufferSize events and counts the dropped ones", async () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 60 }), (size, n) => {
        const events = new TelemetryEvents();
        const stream = events.events({ bufferSize: size });
        for (let i = 0; i < n; i++) {
          events.emit({ kernelId: `k${i}`, from: "active", to: "active" });
        }
        assert.equal(stream.dropped, Math.max(0, n - size));
        assert.equal(stream.pending, Math.min(n, size));
        events.close();
      }),
    );
    const events = new TelemetryEvents();
    const stream = events.events({ bufferSize: 3 });
    for (let i = 0; i < 10; i++) events.emit({ kernelId: `k${i}`, from: "active", to: "active" });
    events.close();
    const seqs: number[] = [];
    for await (const e of stream) seqs.push(e.seq);
    assert.deepEqual(seqs, [8, 9, 10]);
    assert.equal(stream.dropped, 7);
  });

  it("break out of for-await detaches the stream; other streams keep receiving", async () => {
    const events = new TelemetryEvents();
    const a = events.events();
    const b = events.events();
    events.emit({ kernelId: "x", from: "created", to: "launched" });
    for await (const _ of a) break;
    events.emit({ kernelId: "x", from: "launched", to: "active" });
    assert.equal(a.pending, 0);
    assert.equal(b.pending, 2);
    assert.deepEqual(await a.next(), { done: true, value: undefined });
    events.close();
  });

  it("an abort signal ends the stream; an aborted one starts ended", async () => {
    const events = new TelemetryEvents();
    const ac = new AbortController();
    const stream = events.events({ signal: ac.signal });
    const waiting = stream.next();
    ac.abort();
    assert.deepEqual(await waiting, { done: true, value: undefined });
    events.emit({ kernelId: "x", from: "created", to: "launched" });
    assert.equal(stream.pending, 0);
    const dead = events.events({ signal: AbortSignal.abort() });
    assert.deepEqual(await dead.next(), { done: true, value: undefined });
    events.close();
  });

  it("after close: events() is empty, on() never calls, close() again is harmless", async () => {
    const events = new TelemetryEvents();
    events.close();
    events.close();
    let calls = 0;
    events.on(() => calls++)();
    events.emit({ kernelId: "x", from: "created", to: "launched" });
    assert.equal(calls, 0);
    assert.deepEqual(await events.events().next(), { done: true, value: undefined });
  });

  it("rejects a bufferSize that is not a positive integer", () => {
    const events = new TelemetryEvents();
    for (const bad of [0, -1, 1.5, NaN]) {
      throwsCode(() => events.events({ bufferSize: bad }), ErrorCode.InvalidArgument);
    }
  });
});

// ------------------------------------------------------------------------------ Prometheus

/** Every sample as `name{k="v",...}` (labels in order of appearance) → value. */
function sampleMap(families: Map<string, Family>): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of families.values()) {
    for (const s of f.samples) {
      out.set(s.name + JSON.stringify([...s.labels]), s.value);
    }
  }
  return out;
}

function key(name: string, labels: [string, string][] = []): string {
  return name + JSON.stringify(labels);
}

/** What prometheusText must emit for `rt` and `ks`: every sample, exactly. */
function expectedSamples(
  rt: ReturnType<typeof runtimeTotals>,
  ks: readonly KernelMetrics[],
): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of KERNEL_STATE_NAMES) {
    m.set(key("ringkernel_kernels", [["state", s]]), rt.kernels[s]);
  }
  m.set(key("ringkernel_runtime_messages_processed_total"), rt.processed);
  m.set(key("ringkernel_runtime_messages_dropped_total"), rt.dropped);
  m.set(key("ringkernel_runtime_errors_total"), rt.errors);
  m.set(key("ringkernel_k2k_sent_total"), rt.k2k.sent);
  m.set(key("ringkernel_k2k_delivered_total"), rt.k2k.delivered);
  m.set(key("ringkernel_k2k_queue_full_total"), rt.k2k.queueFull);
  m.set(key("ringkernel_k2k_not_found_total"), rt.k2k.notFound);
  for (const k of ks) {
    const id = k.kernelId.toWellFormed();
    const kl: [string, string] = ["kernel", id];
    m.set(key("ringkernel_kernel_state", [kl, ["state", k.state]]), 1);
    m.set(key("ringkernel_messages_processed_total", [kl]), k.processed);
    m.set(key("ringkernel_messages_dropped_total", [kl]), k.dropped);
    m.set(key("ringkernel_errors_total", [kl]), k.errors);
    m.set(key("ringkernel_queue_depth", [kl, ["queue", "input"]]), k.inputDepth);
    m.set(key("ringkernel_queue_depth", [kl, ["queue", "output"]]), k.outputDepth);
    m.set(key("ringkernel_queue_capacity", [kl, ["queue", "input"]]), k.inputCapacity);
    m.set(key("ringkernel_queue_capacity", [kl, ["queue", "output"]]), k.outputCapacity);
    m.set(key("ringkernel_latency_seconds", [kl, ["quantile", "0.5"]]), k.latency.p50Ns / 1e9);
    m.set(key("ringkernel_latency_seconds", [kl, ["quantile", "0.99"]]), k.latency.p99Ns / 1e9);
    m.set(key("ringkernel_latency_seconds_sum", [kl]), k.latency.sumNs / 1e9);
    m.set(key("ringkernel_latency_seconds_count", [kl]), k.latency.count);
    m.set(key("ringkernel_latency_max_seconds", [kl]), k.latency.maxNs / 1e9);
    m.set(key("ringkernel_kernel_uptime_seconds", [kl]), k.uptimeMs / 1e3);
    m.set(key("ringkernel_kernel_restarts_total", [kl]), k.restarts);
    m.set(key("ringkernel_late_replies_total", [kl]), k.lateReplies);
  }
  return m;
}

function assertSamples(actual: Map<string, number>, expected: Map<string, number>): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [k, v] of expected) {
    const a = actual.get(k) as number;
    assert.ok(Object.is(a, v) || a === v, `${k}: got ${a}, want ${v}`);
  }
}

const TYPES: Record<string, string> = {
  ringkernel_kernels: "gauge",
  ringkernel_runtime_messages_processed_total: "counter",
  ringkernel_runtime_messages_dropped_total: "counter",
  ringkernel_runtime_errors_total: "counter",
  ringkernel_k2k_sent_total: "counter",
  ringkernel_k2k_delivered_total: "counter",
  ringkernel_k2k_queue_full_total: "counter",
  ringkernel_k2k_not_found_total: "counter",
  ringkernel_kernel_state: "gauge",
  ringkernel_messages_processed_total: "counter",
  ringkernel_messages_dropped_total: "counter",
  ringkernel_errors_total: "counter",
  ringkernel_queue_depth: "gauge",
  ringkernel_queue_capacity: "gauge",
  ringkernel_latency_seconds: "summary",
  ringkernel_latency_max_seconds: "gauge",
  ringkernel_kernel_uptime_seconds: "gauge",
  ringkernel_kernel_restarts_total: "counter",
  ringkernel_late_replies_total: "counter",
};

describe("prometheusText", () => {
  it("emits every sample with HELP and TYPE, parsed back by a strict 0.0.4 parser", () => {
    const empty = new LatencyHistogram().summary();
    const ks = [
      kernel("accumulator"),
      kernel("idle", { state: "deactivated", latency: empty, processed: 0, uptimeMs: 0 }),
    ];
    const rt = runtimeTotals(ks, { sent: 9, delivered: 7, queueFull: 1, notFound: 1 });
    const text = prometheusText(rt, ks);
    const families = parseExposition(text);
    assert.deepEqual(
      Object.fromEntries([...families.values()].map((f) => [f.name, f.type])),
      TYPES,
    );
    for (const f of families.values()) assert.ok(f.help.length > 0, `${f.name} has HELP`);
    assertSamples(sampleMap(families), expectedSamples(rt, ks));
    // The empty summary reports NaN quantiles, as client libraries do.
    assert.ok(text.includes('ringkernel_latency_seconds{kernel="idle",quantile="0.5"} NaN\n'));
    assert.ok(text.includes('ringkernel_latency_seconds_count{kernel="idle"} 0\n'));
    assert.ok(
      text.startsWith(
        "# HELP ringkernel_kernels Kernels in each lifecycle state.\n" +
          "# TYPE ringkernel_kernels gauge\n" +
          'ringkernel_kernels{state="created"} 0\n',
      ),
    );
  });

  it("escapes tricky kernel ids (quotes, backslashes, newlines, unicode) so they round-trip", () => {
    const ids = [
      'say "hi"',
      "back\\slash",
      "two\nlines",
      "trailing\\",
      '\\"',
      "\\n not a newline",
      "ünïcødé ⚙️ 核",
      "emoji 🦀",
      "tab\there",
      "}{,=",
      "",
    ];
    const ks = ids.map((id) => kernel(id));
    const text = prometheusText(runtimeTotals(ks), ks);
    const families = parseExposition(text);
    const got = families.get("ringkernel_messages_processed_total")?.samples.map((s) =>
      s.labels.get("kernel")
    );
    assert.deepEqual(got, ids);
    assertSamples(sampleMap(families), expectedSamples(runtimeTotals(ks), ks));
    assert.ok(text.includes('kernel="say \\"hi\\""'));
    assert.ok(text.includes('kernel="two\\nlines"'));
    assert.ok(text.includes('kernel="back\\\\slash"'));
  });

  it("round-trips arbitrary strings as kernel ids (lone surrogates become U+FFFD)", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ unit: "binary", maxLength: 12 }), {
          minLength: 1,
          maxLength: 5,
          selector: (s) => s.toWellFormed(),
        }),
        (ids) => {
          const ks = ids.map((id) => kernel(id));
          const families = parseExposition(prometheusText(runtimeTotals(ks), ks));
          assert.deepEqual(
            families.get("ringkernel_errors_total")?.samples.map((s) => s.labels.get("kernel")),
            ids.map((id) => id.toWellFormed()),
          );
        },
      ),
      { numRuns: 200 },
    );
    assert.equal(escapeLabelValue("a\ud800b"), "a\ufffdb");
  });

  it("with no kernels emits only runtime families, still valid", () => {
    const text = prometheusText(runtimeTotals([]), []);
    const families = parseExposition(text);
    assert.equal(families.size, 8);
    assertSamples(sampleMap(families), expectedSamples(runtimeTotals([]), []));
  });

  it("formats large, small and infinite values as Go's ParseFloat reads them", () => {
    const h = new LatencyHistogram();
    h.record(3);
    const k = kernel("k", { processed: 2 ** 53, latency: h.summary(), uptimeMs: Infinity });
    const text = prometheusText(runtimeTotals([k]), [k]);
    parseExposition(text);
    assert.ok(text.includes('ringkernel_messages_processed_total{kernel="k"} 9007199254740992\n'));
    assert.ok(text.includes('ringkernel_latency_seconds{kernel="k",quantile="0.5"} 3e-9\n'));
    assert.ok(text.includes('ringkernel_kernel_uptime_seconds{kernel="k"} +Inf\n'));
  });

  it("rejects duplicate kernel ids, whose series would collide", () => {
    const ks = [kernel("same"), kernel("same")];
    throwsCode(() => prometheusText(runtimeTotals(ks), ks), ErrorCode.InvalidArgument);
  });

  it("the parser itself rejects malformed exposition", () => {
    const ok = "# HELP m x\n# TYPE m gauge\nm 1\n";
    parseExposition(ok);
    for (
      const bad of [
        "# TYPE m gauge\nm 1", // no final line feed
        '# TYPE m gauge\nm{a="x\\t"} 1\n', // illegal escape
        '# TYPE m gauge\nm{a="x""} 1\n', // bare quote
        "# TYPE m gauge\nm  1\n", // two spaces
        '# TYPE m gauge\nm{a="1",a="2"} 1\n', // duplicate label
        "# TYPE m gauge\nm 1\nm 2\n", // duplicate series
        "# TYPE m gauge\nn 1\n", // sample outside its family
        "# TYPE m counter\nm -1\n", // negative counter
        "# TYPE m summary\nm 1\n", // quantile missing
        "# TYPE m gauge\nm one\n", // not a float
        "m 1\n", // no TYPE
        "# TYPE m gauge\n\nm 1\n", // blank line
      ]
    ) {
      assert.throws(() => parseExposition(bad), `accepted ${JSON.stringify(bad)}`);
    }
  });
});
