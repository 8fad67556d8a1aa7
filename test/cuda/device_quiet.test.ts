/**
 * Quiet sections (src/backends/cuda/device_quiet.ts) with stand-in kernels: no GPU needed. The
 * GPU side (a kernel parking and going on where it was) is tested on the device by
 * concurrent_load_gpu.test.ts.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DeviceQuiet,
  type Parkable,
  type ParkState,
} from "../../src/backends/cuda/device_quiet.ts";
import { TimeoutError } from "../../src/core/errors.ts";

let nextHandle = 1n;
const context = () => ({ handle: nextHandle++ });

/** A kernel that parks `parkAfter` polls after being asked (never, for Infinity). */
class FakeKernel implements Parkable {
  state: ParkState = "running";
  asked = false;
  polls = 0;
  resumes = 0;
  constructor(readonly id: string, readonly parkAfter = 1, readonly log: string[] = []) {}
  requestPark(): void {
    this.asked = true;
    this.log.push(`park ${this.id}`);
  }
  cancelPark(): void {
    this.asked = false;
    this.log.push(`cancel ${this.id}`);
  }
  parkState(): ParkState {
    if (this.asked && this.state === "running" && ++this.polls >= this.parkAfter) {
      this.state = "parked";
    }
    return this.state;
  }
  resume(): void {
    assert.equal(this.state, "parked", `${this.id} resumed while ${this.state}`);
    this.state = "running";
    this.asked = false;
    this.polls = 0;
    this.resumes++;
    this.log.push(`resume ${this.id}`);
  }
}

describe("DeviceQuiet", () => {
  it("runs the call only once every running kernel parked, then resumes each once", async () => {
    const log: string[] = [];
    const q = DeviceQuiet.acquire(context());
    const a = new FakeKernel("a", 1, log);
    const b = new FakeKernel("b", 4, log);
    const ended = new FakeKernel("gone", 1, log);
    ended.state = "ended";
    for (const k of [a, b, ended]) q.add(k);
    const out = await q.exclusive(() =>
      q.quietly("load", () => {
        assert.equal(q.isQuiet, true);
        assert.equal(a.state, "parked");
        assert.equal(b.state, "parked");
        log.push("call");
        return 42;
      })
    );
    assert.equal(out, 42);
    assert.equal(q.isQuiet, false);
    assert.deepEqual(log, ["park a", "park b", "call", "resume a", "resume b"]);
    assert.equal(ended.resumes, 0);
    q.release();
  });

  it("with no running kernel the call runs at once", async () => {
    const q = DeviceQuiet.acquire(context());
    let ran = false;
    await q.exclusive(() => q.quietly("free", () => void (ran = true)));
    assert.equal(ran, true);
    q.release();
  });

  it("gives up with TimeoutError when a kernel does not park; the call does not run", async () => {
    const log: string[] = [];
    const q = DeviceQuiet.acquire(context());
    const quick = new FakeKernel("quick", 1, log);
    const busy = new FakeKernel("busy", Infinity, log);
    q.add(quick);
    q.add(busy);
    let ran = false;
    await assert.rejects(
      q.exclusive(() => q.quietly("load", () => void (ran = true), 20)),
      (e: unknown) => e instanceof TimeoutError && /busy/.test(e.message) && /load/.test(e.message),
    );
    assert.equal(ran, false);
    assert.equal(busy.asked, false, "the Park command was taken back");
    assert.equal(quick.state, "running", "the parked one was resumed");
    assert.equal(quick.resumes, 1);
    q.release();
  });

  it("a failing call still resumes the kernels", async () => {
    const q = DeviceQuiet.acquire(context());
    const k = new FakeKernel("k");
    q.add(k);
    await assert.rejects(
      q.exclusive(() =>
        q.quietly("load", () => {
          throw new Error("driver said no");
        })
      ),
      /driver said no/,
    );
    assert.equal(k.state, "running");
    assert.equal(k.resumes, 1);
    q.release();
  });

  it("exclusive runs one section at a time, in call order, past failures", async () => {
    const q = DeviceQuiet.acquire(context());
    const order: string[] = [];
    const slow = q.exclusive(async () => {
      order.push("a start");
      await new Promise((r) => setTimeout(r, 10));
      order.push("a end");
    });
    const failing = q.exclusive(() => {
      order.push("b");
      throw new Error("b failed");
    });
    const last = q.exclusive(() => void order.push("c"));
    await slow;
    await assert.rejects(failing, /b failed/);
    await last;
    assert.deepEqual(order, ["a start", "a end", "b", "c"]);
    q.release();
  });

  it("runtimes of one context share its sections; another context has its own", () => {
    const ctx = context();
    const one = DeviceQuiet.acquire(ctx);
    const two = DeviceQuiet.acquire(ctx);
    const other = DeviceQuiet.acquire(context());
    assert.equal(one, two);
    assert.notEqual(one, other);
    one.release();
    assert.equal(DeviceQuiet.acquire(ctx), two, "still held by the second user");
    two.release();
    two.release();
    assert.notEqual(DeviceQuiet.acquire(ctx), one, "a fresh one once every user let go");
    other.release();
  });
});
