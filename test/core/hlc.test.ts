import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  HLC_BYTES,
  HLC_LOGICAL_MAX,
  HlcClock,
  HlcTimestamp,
  SharedHlcClock,
} from "../../src/core/hlc.ts";
import { ClockSkewError, ErrorCode, ValidationError } from "../../src/core/errors.ts";

/** A controllable physical clock. */
function manualClock(start: number) {
  let t = start;
  return { now: () => t, set: (v: number) => (t = v), advance: (d: number) => (t += d) };
}

const arbTs = fc.record({
  physical: fc.integer({ min: 0, max: 2 ** 48 - 1 }),
  logical: fc.integer({ min: 0, max: HLC_LOGICAL_MAX }),
  nodeId: fc.integer({ min: 0, max: 0xffff_ffff }),
}).map(({ physical, logical, nodeId }) => new HlcTimestamp(physical, logical, nodeId));

describe("HlcTimestamp", () => {
  it("orders by physical, then logical, then node id — with <, compare and equals", () => {
    const a = new HlcTimestamp(100, 5, 9);
    const b = new HlcTimestamp(100, 6, 1);
    const c = new HlcTimestamp(101, 0, 0);
    const d = new HlcTimestamp(101, 0, 1);
    assert.ok(a < b && b < c && c < d);
    assert.ok(d > a && !(a > a) && a <= a);
    assert.ok(a.compare(b) < 0 && c.compare(b) > 0 && a.compare(a) === 0);
    assert.ok(a.equals(new HlcTimestamp(100, 5, 9)) && !a.equals(b));
  });

  it("valueOf and compare agree on random pairs", () => {
    fc.assert(
      fc.property(arbTs, arbTs, (x, y) => {
        const c = Math.sign(x.compare(y));
        assert.equal(x < y, c < 0);
        assert.equal(x > y, c > 0);
        assert.equal(x.equals(y), c === 0);
      }),
      { numRuns: 2000 },
    );
  });

  it("packs to bytes, to two u32 words and to a 64-bit word and back", () => {
    fc.assert(
      fc.property(arbTs, (ts) => {
        const bytes = ts.toBytes();
        assert.equal(bytes.byteLength, HLC_BYTES);
        assert.ok(HlcTimestamp.fromBytes(bytes).equals(ts));
        const [lo, hi] = ts.toWords();
        assert.ok(HlcTimestamp.fromWords(lo, hi, ts.nodeId).equals(ts));
        assert.equal((BigInt(hi) << 32n) | BigInt(lo), ts.toWord());
        assert.ok(HlcTimestamp.fromWord(ts.toWord(), ts.nodeId).equals(ts));
      }),
      { numRuns: 2000 },
    );
  });

  it("two u32 words compare as (hi, lo), the way WGSL must compare them", () => {
    fc.assert(
      fc.property(arbTs, arbTs, (x, y) => {
        const [xl, xh] = x.toWords();
        const [yl, yh] = y.toWords();
        const words = xh !== yh ? Math.sign(xh - yh) : Math.sign(xl - yl);
        const parts = Math.sign((x.physical - y.physical) || (x.logical - y.logical));
        assert.equal(words, parts);
      }),
      { numRuns: 2000 },
    );
  });

  it("rejects out-of-range parts with a typed error", () => {
    for (
      const [p, l, n] of [[-1, 0, 0], [2 ** 48, 0, 0], [0, 65536, 0], [0, 0, 2 ** 32], [1.5, 0, 0]]
    ) {
      assert.throws(
        () => new HlcTimestamp(p, l, n),
        (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.InvalidArgument,
      );
    }
    assert.throws(() => HlcTimestamp.fromBytes(new Uint8Array(11)), ValidationError);
  });
});

describe("HlcClock (Kulkarni et al. 2014)", () => {
  it("tick takes physical time when it advances, else counts", () => {
    const t = manualClock(1000);
    const clock = new HlcClock(1, { now: t.now });
    assert.equal(clock.tick().toString(), "1000.0@1");
    assert.equal(clock.tick().toString(), "1000.1@1");
    t.set(1005);
    assert.equal(clock.tick().toString(), "1005.0@1");
  });

  it("stays monotonic when the wall clock steps backwards", () => {
    const t = manualClock(5000);
    const clock = new HlcClock(1, { now: t.now });
    const a = clock.tick();
    t.set(10);
    const b = clock.tick();
    assert.ok(a < b);
    assert.equal(b.toString(), "5000.1@1");
  });

  it("carries a full logical counter into the physical part", () => {
    const t = manualClock(7);
    const clock = new HlcClock(3, { now: t.now });
    let last = clock.tick();
    for (let i = 0; i < HLC_LOGICAL_MAX + 3; i++) {
      const next = clock.tick();
      assert.ok(last < next);
      last = next;
    }
    assert.equal(last.toString(), "8.2@3");
  });

  it("update: all four receive cases", () => {
    const t = manualClock(100);
    // l == l' == l_m: max(c, c_m) + 1
    let c = new HlcClock(1, { now: t.now });
    c.tick();
    c.tick(); // 100.1
    assert.equal(c.update(new HlcTimestamp(100, 7, 2)).toString(), "100.8@1");
    assert.equal(c.update(new HlcTimestamp(100, 2, 2)).toString(), "100.9@1");
    // l == l' > l_m, pt: c + 1
    t.set(50);
    assert.equal(c.update(new HlcTimestamp(90, 30, 2)).toString(), "100.10@1");
    // l == l_m > l', pt: c_m + 1
    c = new HlcClock(1, { now: t.now });
    assert.equal(c.update(new HlcTimestamp(200, 4, 2)).toString(), "200.5@1");
    // pt > l', l_m: c = 0
    t.set(300);
    assert.equal(c.update(new HlcTimestamp(250, 9, 2)).toString(), "300.0@1");
  });

  it("update rejects a remote timestamp too far ahead and leaves the clock unchanged", () => {
    const t = manualClock(1000);
    const c = new HlcClock(1, { now: t.now, maxDriftMs: 50 });
    const before = c.tick();
    assert.throws(
      () => c.update(new HlcTimestamp(1051, 0, 2)),
      (e: unknown) =>
        e instanceof ClockSkewError && e.code === ErrorCode.ClockSkew && e.driftMs === 51 &&
        e.maxDriftMs === 50,
    );
    assert.ok(c.current().equals(before));
    assert.equal(c.update(new HlcTimestamp(1050, 0, 2)).toString(), "1050.1@1");
  });

  it("property: tick strictly increases under any wall clock, including backwards steps", () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 2 ** 44 }),
      fc.array(fc.integer({ min: -1000, max: 1000 }), { minLength: 1, maxLength: 300 }),
      (start, steps) => {
        const t = manualClock(start);
        const clock = new HlcClock(1, { now: t.now });
        let last = clock.tick();
        for (const s of steps) {
          t.set(Math.max(0, t.now() + s));
          const next = clock.tick();
          assert.ok(last.compare(next) < 0, `${last} !< ${next}`);
          assert.ok(next.physical >= t.now());
          last = next;
        }
      },
    ));
  });

  it("property: update is greater than the local clock's last timestamp and the remote one", () => {
    fc.assert(fc.property(
      fc.integer({ min: 1000, max: 2 ** 40 }),
      fc.array(
        fc.record({
          dt: fc.integer({ min: -50, max: 50 }),
          remoteOffset: fc.integer({ min: -100, max: 100 }),
          remoteLogical: fc.integer({ min: 0, max: 20 }),
          local: fc.boolean(),
        }),
        { maxLength: 200 },
      ),
      (start, events) => {
        const t = manualClock(start);
        const clock = new HlcClock(1, { now: t.now, maxDriftMs: 1000 });
        let last = clock.tick();
        for (const e of events) {
          t.set(t.now() + e.dt);
          if (e.local) {
            const next = clock.tick();
            assert.ok(last < next);
            last = next;
          } else {
            const remote = new HlcTimestamp(t.now() + e.remoteOffset, e.remoteLogical, 2);
            const next = clock.update(remote);
            assert.ok(last < next && remote.compare(next) < 0);
            last = next;
          }
        }
      },
    ));
  });

  it("property: causality holds across a simulated exchange between nodes with skewed clocks", () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: -200, max: 200 }), { minLength: 2, maxLength: 6 }),
      fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 5 })), { maxLength: 300 }),
      (skews, script) => {
        let realTime = 1_000_000;
        const nodes = skews.map((skew, i) =>
          new HlcClock(i, { now: () => realTime + skew, maxDriftMs: 10_000 })
        );
        // Each node's latest event; a message carries the sender's send event.
        const lastEvent = nodes.map((n) => n.tick());
        for (const [from, to, advance] of script) {
          realTime += advance;
          const a = from % nodes.length, b = to % nodes.length;
          const send = nodes[a].tick();
          assert.ok(lastEvent[a] < send, "program order on the sender");
          lastEvent[a] = send;
          if (a === b) continue;
          const recv = nodes[b].update(send);
          assert.ok(send < recv, "send happens before receive");
          assert.ok(lastEvent[b] < recv, "program order on the receiver");
          lastEvent[b] = recv;
          // HLC bound: the logical part never runs ahead of the fastest physical clock.
          assert.ok(recv.physical <= realTime + Math.max(...skews));
        }
      },
    ));
  });
});

describe("SharedHlcClock", () => {
  it("follows the same rules as HlcClock on a single thread", () => {
    fc.assert(fc.property(
      fc.array(
        fc.record({
          dt: fc.integer({ min: -20, max: 20 }),
          remote: fc.option(
            fc.tuple(fc.integer({ min: -30, max: 30 }), fc.integer({ min: 0, max: 5 })),
          ),
        }),
        { maxLength: 200 },
      ),
      (events) => {
        const t = manualClock(10_000);
        const local = new HlcClock(4, { now: t.now });
        const shared = new SharedHlcClock(new SharedArrayBuffer(8), 0, 4, { now: t.now });
        for (const e of events) {
          t.set(t.now() + e.dt);
          if (e.remote === null) {
            assert.ok(local.tick().equals(shared.tick()));
          } else {
            const r = new HlcTimestamp(t.now() + e.remote[0], e.remote[1], 9);
            assert.ok(local.update(r).equals(shared.update(r)));
          }
        }
      },
    ));
  });

  it("rejects a misaligned or short region, and excessive drift", () => {
    const sab = new SharedArrayBuffer(16);
    assert.throws(() => new SharedHlcClock(sab, 4, 1), ValidationError);
    assert.throws(() => new SharedHlcClock(sab, 16, 1), ValidationError);
    const c = new SharedHlcClock(sab, 8, 1, { now: () => 0, maxDriftMs: 5 });
    assert.throws(() => c.update(new HlcTimestamp(6, 0, 2)), ClockSkewError);
  });

  it("N workers × M concurrent ticks give N×M distinct timestamps", async () => {
    const workers = 4, ticks = 50_000;
    const clock = new SharedArrayBuffer(8);
    const start = new SharedArrayBuffer(8);
    const results = new SharedArrayBuffer(workers * ticks * 8);
    const pool = Array.from(
      { length: workers },
      () => new Worker(new URL("../fixtures/hlc_ticker.ts", import.meta.url), { type: "module" }),
    );
    try {
      const done = pool.map((w) =>
        new Promise<void>((resolve, reject) => {
          w.onmessage = () => resolve();
          w.onerror = (e) => reject(e);
        })
      );
      pool.forEach((w, index) =>
        w.postMessage({ clock, start, results, nodeId: index + 1, index, ticks })
      );
      const flag = new Int32Array(start);
      while (Atomics.load(flag, 1) < workers) await new Promise((r) => setTimeout(r, 1));
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      await Promise.all(done);
    } finally {
      pool.forEach((w) => w.terminate());
    }
    const words = new BigUint64Array(results);
    assert.ok(!words.includes(0n), "every tick recorded");
    assert.equal(new Set(words).size, workers * ticks);
    // Each worker's own sequence is strictly increasing.
    for (let w = 0; w < workers; w++) {
      for (let i = w * ticks + 1; i < (w + 1) * ticks; i++) assert.ok(words[i - 1] < words[i]);
    }
  });
});
