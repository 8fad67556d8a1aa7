import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ErrorCode,
  InvalidStateError,
  QueueFullError,
  TimeoutError,
  TopicError,
  ValidationError,
} from "../../src/core/errors.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import {
  type Delivery,
  OverflowPolicy,
  PubSubBroker,
  PubSubConfig,
  type Subscription,
} from "../../src/core/pubsub.ts";
import { Topic } from "../../src/core/topic.ts";

let tick = 0;
const ts = () => new HlcTimestamp(1_700_000_000_000 + ++tick, 0, 1);
const bytes = (...xs: number[]) => new Uint8Array(xs);
const payloads = (sub: Subscription) => drain(sub).map((d) => d.envelope[0]);

function drain<E>(sub: Subscription<E>): Delivery<E>[] {
  const out: Delivery<E>[] = [];
  for (let d = sub.tryReceive(); d !== undefined; d = sub.tryReceive()) out.push(d);
  return out;
}

function code(expected: string, cls: new (...args: never[]) => Error) {
  return (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal((err as { code?: string }).code, expected);
    return true;
  };
}

const tickTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

describe("publish and subscribe", () => {
  test("delivers to matching subscriptions and returns the count", () => {
    const broker = new PubSubBroker(PubSubConfig.default());
    const temp = broker.subscribe("dash", "sensors/+/temperature");
    const all = broker.subscribe("log", "sensors/#");
    const other = broker.subscribe("x", "actuators/#");
    const stamp = ts();
    assert.equal(broker.publish("sensors/lab/temperature", "s7", bytes(21), stamp), 2);
    assert.equal(broker.publish("sensors/lab/humidity", "s7", bytes(40), ts()), 1);
    const d = temp.tryReceive()!;
    assert.deepEqual(
      { ...d, envelope: [...d.envelope] },
      {
        topic: "sensors/lab/temperature",
        sender: "s7",
        envelope: [21],
        timestamp: stamp,
        retained: false,
      },
    );
    assert.equal(temp.tryReceive(), undefined);
    assert.deepEqual(payloads(all), [21, 40]);
    assert.equal(other.pending, 0);
    assert.equal(broker.publish("nobody/listens", "s7", bytes(1), ts()), 0);
    assert.deepEqual(broker.stats(), {
      published: 3,
      delivered: 3,
      dropped: 0,
      rejected: 0,
      retained: 0,
      subscriptions: 3,
    });
  });

  test("the $ rule holds through the broker", () => {
    const broker = new PubSubBroker();
    const all = broker.subscribe("a", "#");
    const plus = broker.subscribe("a", "+/uptime");
    const sys = broker.subscribe("a", "$SYS/#");
    assert.equal(broker.publish("$SYS/uptime", "broker", bytes(1), ts()), 1);
    assert.equal(all.pending + plus.pending, 0);
    assert.equal(sys.pending, 1);
    assert.equal(broker.publish("x/uptime", "broker", bytes(1), ts()), 2);
  });

  test("overlapping subscriptions of one subscriber each get a copy", () => {
    const broker = new PubSubBroker();
    const a = broker.subscribe("k1", "a/#");
    const b = broker.subscribe("k1", "a/+");
    const c = broker.subscribe("k1", "a/+"); // same filter again: a third subscription
    assert.equal(broker.publish("a/b", "p", bytes(1), ts()), 3);
    assert.deepEqual([a.pending, b.pending, c.pending], [1, 1, 1]);
    assert.equal(broker.subscriptions("k1").length, 3);
    assert.notEqual(a.id, b.id);
    assert.equal(a.subscriberId, "k1");
    assert.equal(b.filter, "a/+");
  });

  test("accepts Topic objects and `*` filters", () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", new Topic("a/*/c"));
    assert.equal(broker.publish(Topic.parseName("a/b/c"), "p", bytes(1), ts()), 1);
    assert.equal(sub.tryReceive()?.topic, "a/b/c");
  });

  test("invalid topics, filters and arguments throw", () => {
    const broker = new PubSubBroker();
    assert.throws(() => broker.subscribe("k", "a/#/b"), code(ErrorCode.InvalidTopic, TopicError));
    assert.throws(() => broker.subscribe("k", ""), code(ErrorCode.InvalidTopic, TopicError));
    assert.throws(
      () => broker.publish("a/+", "p", bytes(1), ts()),
      code(ErrorCode.InvalidTopic, TopicError),
    );
    assert.throws(() => broker.publish(new Topic("a/#"), "p", bytes(1), ts()), TopicError);
    assert.throws(() => broker.publish("a\0", "p", bytes(1), ts()), TopicError);
    assert.throws(
      () => broker.publish("a", "p", bytes(1), 5 as unknown as HlcTimestamp),
      code(ErrorCode.InvalidArgument, ValidationError),
    );
    assert.throws(() => broker.subscribe(7 as unknown as string, "a"), ValidationError);
    assert.throws(() => broker.subscribe("k", "a", { bufferCapacity: 0 }), ValidationError);
    assert.throws(
      () => broker.subscribe("k", "a", { overflowPolicy: "lose-it" as OverflowPolicy }),
      ValidationError,
    );
    assert.throws(() => PubSubConfig.default().withBufferCapacity(1.5), ValidationError);
    assert.throws(() => PubSubConfig.default().withMaxRetained(-1), ValidationError);
    assert.throws(() => new PubSubBroker({} as PubSubConfig), ValidationError);
    assert.equal(broker.stats().subscriptions, 0, "failed subscribes leave nothing behind");
    assert.equal(broker.stats().published, 0);
  });

  test("config is immutable and carries defaults into subscriptions", () => {
    const base = PubSubConfig.default();
    const config = base.withBufferCapacity(4).withOverflowPolicy(OverflowPolicy.DropNewest);
    assert.equal(base.bufferCapacity, 1024);
    assert.equal(base.overflowPolicy, OverflowPolicy.DropOldest);
    assert.equal(config.bufferCapacity, 4);
    const broker = new PubSubBroker(config);
    const sub = broker.subscribe("k", "a");
    assert.equal(sub.capacity, 4);
    assert.equal(sub.overflowPolicy, OverflowPolicy.DropNewest);
    const own = broker.subscribe("k", "a", {
      bufferCapacity: 2,
      overflowPolicy: OverflowPolicy.Reject,
    });
    assert.equal(own.capacity, 2);
    assert.equal(own.overflowPolicy, OverflowPolicy.Reject);
  });

  test("generic envelopes: the broker passes any E through", () => {
    const broker = new PubSubBroker<{ n: number } | string>();
    const sub = broker.subscribe("k", "#");
    broker.publish("a", "p", { n: 1 }, ts());
    broker.publish("b", "p", "text", ts(), { retain: true });
    assert.deepEqual(drain(sub).map((d) => d.envelope), [{ n: 1 }, "text"]);
    broker.publish("b", "p", "", ts(), { retain: true }); // empty string clears
    assert.equal(broker.stats().retained, 0);
  });
});

describe("unsubscribe and close", () => {
  test("unsubscribe stops delivery; buffered messages stay readable", () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "a/#");
    const stays = broker.subscribe("k", "a/#");
    broker.publish("a/1", "p", bytes(1), ts());
    sub.unsubscribe();
    sub.unsubscribe(); // idempotent
    assert.equal(sub.closed, true);
    assert.equal(broker.publish("a/2", "p", bytes(2), ts()), 1);
    assert.deepEqual(payloads(sub), [1]);
    assert.deepEqual(payloads(stays), [1, 2]);
    assert.equal(broker.stats().subscriptions, 1);
    assert.deepEqual(broker.subscriptions("k"), [stays]);
  });

  test("unsubscribeAll removes every subscription of a subscriber", () => {
    const broker = new PubSubBroker();
    broker.subscribe("k", "a");
    broker.subscribe("k", "b/#");
    const other = broker.subscribe("j", "a");
    assert.equal(broker.unsubscribeAll("k"), 2);
    assert.equal(broker.unsubscribeAll("k"), 0);
    assert.equal(broker.publish("a", "p", bytes(1), ts()), 1);
    assert.deepEqual(broker.subscriptions(), [other]);
  });

  test("using disposes the subscription", () => {
    const broker = new PubSubBroker();
    {
      using sub = broker.subscribe("k", "a");
      assert.equal(sub.closed, false);
    }
    assert.equal(broker.stats().subscriptions, 0);
  });

  test("close ends subscriptions and refuses further use", async () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "a");
    broker.publish("a", "p", bytes(1), ts(), { retain: true });
    const waiting = broker.subscribe("k", "b").receive();
    broker.close();
    broker.close();
    assert.equal(broker.closed, true);
    assert.equal(sub.closed, true);
    assert.equal(sub.tryReceive()?.envelope[0], 1);
    await assert.rejects(waiting, code(ErrorCode.Closed, InvalidStateError));
    await assert.rejects(sub.receive(), code(ErrorCode.Closed, InvalidStateError));
    assert.throws(() => broker.subscribe("k", "a"), code(ErrorCode.Closed, InvalidStateError));
    assert.throws(
      () => broker.publish("a", "p", bytes(1), ts()),
      code(ErrorCode.Closed, InvalidStateError),
    );
    assert.deepEqual(broker.stats(), {
      published: 1,
      delivered: 1,
      dropped: 0,
      rejected: 0,
      retained: 0,
      subscriptions: 0,
    });
  });
});

describe("overflow policies", () => {
  test("DropOldest: evicts the oldest, delivers the new one, counts the drop", () => {
    const broker = new PubSubBroker(PubSubConfig.default().withBufferCapacity(3));
    const sub = broker.subscribe("k", "t");
    const counts = [1, 2, 3, 4, 5].map((i) => broker.publish("t", "p", bytes(i), ts()));
    assert.deepEqual(counts, [1, 1, 1, 1, 1]);
    assert.equal(sub.dropped, 2);
    assert.deepEqual(sub.stats(), { delivered: 5, dropped: 2, rejected: 0, pending: 3 });
    assert.deepEqual(payloads(sub), [3, 4, 5]);
    assert.deepEqual(
      { dropped: broker.stats().dropped, delivered: broker.stats().delivered },
      { dropped: 2, delivered: 5 },
    );
  });

  test("DropNewest: keeps the buffer, drops the new one, does not count it delivered", () => {
    const config = PubSubConfig.default().withBufferCapacity(3).withOverflowPolicy(
      OverflowPolicy.DropNewest,
    );
    const broker = new PubSubBroker(config);
    const sub = broker.subscribe("k", "t");
    const other = broker.subscribe("k", "t", {
      overflowPolicy: OverflowPolicy.DropOldest,
      bufferCapacity: 10,
    });
    const counts = [1, 2, 3, 4, 5].map((i) => broker.publish("t", "p", bytes(i), ts()));
    assert.deepEqual(counts, [2, 2, 2, 1, 1]);
    assert.deepEqual(sub.stats(), { delivered: 3, dropped: 2, rejected: 0, pending: 3 });
    assert.deepEqual(payloads(sub), [1, 2, 3]);
    assert.deepEqual(payloads(other), [1, 2, 3, 4, 5]);
    assert.equal(broker.stats().dropped, 2);
  });

  test("Reject: refuses the whole publish before delivering anything", () => {
    const broker = new PubSubBroker();
    const strict = broker.subscribe("k", "t/#", {
      bufferCapacity: 2,
      overflowPolicy: OverflowPolicy.Reject,
    });
    const lax = broker.subscribe("j", "t/+");
    assert.equal(broker.publish("t/a", "p", bytes(1), ts()), 2);
    assert.equal(broker.publish("t/a", "p", bytes(2), ts()), 2);
    assert.throws(
      () => broker.publish("t/a", "p", bytes(3), ts(), { retain: true }),
      code(ErrorCode.QueueFull, QueueFullError),
    );
    assert.deepEqual(strict.stats(), { delivered: 2, dropped: 0, rejected: 1, pending: 2 });
    assert.equal(lax.pending, 2, "no partial delivery");
    assert.equal(broker.retained("t/a"), undefined, "a rejected publish is not retained either");
    assert.deepEqual(broker.stats(), {
      published: 2,
      delivered: 4,
      dropped: 0,
      rejected: 1,
      retained: 0,
      subscriptions: 2,
    });
    // Other topics still flow, and draining makes room again.
    assert.equal(broker.publish("u", "p", bytes(9), ts()), 0);
    strict.tryReceive();
    assert.equal(broker.publish("t/a", "p", bytes(4), ts()), 2);
    assert.deepEqual(payloads(strict), [2, 4]);
    // Once unsubscribed, a full Reject subscription no longer blocks anyone.
    broker.publish("t/a", "p", bytes(5), ts());
    broker.publish("t/a", "p", bytes(6), ts());
    strict.unsubscribe();
    assert.equal(broker.publish("t/a", "p", bytes(7), ts()), 1);
  });

  test("a waiting receiver takes the message even when the buffer capacity is 1", async () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "t", {
      bufferCapacity: 1,
      overflowPolicy: OverflowPolicy.Reject,
    });
    const first = sub.receive();
    broker.publish("t", "p", bytes(1), ts()); // straight to the receiver
    broker.publish("t", "p", bytes(2), ts()); // into the buffer
    assert.throws(() => broker.publish("t", "p", bytes(3), ts()), QueueFullError);
    assert.equal((await first).envelope[0], 1);
    assert.deepEqual(payloads(sub), [2]);
  });

  test("the ring buffer keeps order across growth and wrap-around", () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "t", { bufferCapacity: 100 });
    const got: number[] = [];
    let next = 0;
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 7; i++) broker.publish("t", "p", bytes(next++ % 256), ts());
      for (let i = 0; i < 5; i++) got.push(sub.tryReceive()!.envelope[0]);
    }
    got.push(...payloads(sub));
    assert.deepEqual(got, Array.from({ length: next }, (_, i) => i % 256));
    assert.equal(sub.dropped, 0);
  });

  test("property: every matching publish is received, pending or counted as dropped", () => {
    const topics = ["a", "a/b", "a/c", "b", "$s/a"];
    const filters = ["#", "a/#", "a/+", "+", "$s/#", "a/b"];
    const subSpec = fc.record({
      filter: fc.constantFrom(...filters),
      capacity: fc.integer({ min: 1, max: 4 }),
      policy: fc.constantFrom(
        OverflowPolicy.DropOldest,
        OverflowPolicy.DropNewest,
        OverflowPolicy.Reject,
      ),
    });
    const op = fc.oneof(
      fc.record({ publish: fc.constantFrom(...topics) }),
      fc.record({ receive: fc.nat() }),
    );
    fc.assert(
      fc.property(
        fc.array(subSpec, { minLength: 1, maxLength: 5 }),
        fc.array(op, { maxLength: 80 }),
        (specs, ops) => {
          const broker = new PubSubBroker();
          const subs = specs.map((s) =>
            broker.subscribe("k", s.filter, {
              bufferCapacity: s.capacity,
              overflowPolicy: s.policy,
            })
          );
          const matched = subs.map(() => 0);
          const received = subs.map(() => 0);
          let published = 0;
          let rejectedPublishes = 0;
          for (const o of ops) {
            if ("publish" in o) {
              const hits = subs.map((s) => new Topic(s.filter).matches(o.publish));
              const before = subs.map((s) => s.stats().delivered);
              try {
                const n = broker.publish(o.publish, "p", bytes(1), ts());
                published++;
                hits.forEach((h, i) => {
                  if (h) matched[i]++;
                });
                const gained = subs.reduce((sum, s, i) => sum + s.stats().delivered - before[i], 0);
                assert.equal(n, gained, "publish returns the number of deliveries");
              } catch (err) {
                assert.ok(err instanceof QueueFullError);
                rejectedPublishes++;
              }
            } else {
              const i = o.receive % subs.length;
              if (subs[i].tryReceive() !== undefined) received[i]++;
            }
          }
          subs.forEach((s, i) => {
            const st = s.stats();
            assert.equal(received[i] + st.pending + st.dropped, matched[i], `subscription ${i}`);
            assert.ok(st.pending <= s.capacity);
            if (s.overflowPolicy === OverflowPolicy.Reject) assert.equal(st.dropped, 0);
          });
          const stats = broker.stats();
          assert.equal(stats.published, published);
          assert.equal(stats.rejected, rejectedPublishes);
          assert.equal(stats.delivered, subs.reduce((n, s) => n + s.stats().delivered, 0));
          assert.equal(stats.dropped, subs.reduce((n, s) => n + s.dropped, 0));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("retained messages", () => {
  test("replayed to new matching subscriptions first, flagged retained", () => {
    const broker = new PubSubBroker();
    broker.publish("cfg/a", "ctl", bytes(1), ts(), { retain: true });
    broker.publish("cfg/b", "ctl", bytes(2), ts(), { retain: true });
    broker.publish("cfg/a", "ctl", bytes(3), ts(), { retain: true }); // replaces cfg/a
    broker.publish("other", "ctl", bytes(4), ts(), { retain: true });
    broker.publish("cfg/c", "ctl", bytes(5), ts()); // not retained
    assert.equal(broker.stats().retained, 3);
    const sub = broker.subscribe("k", "cfg/+");
    broker.publish("cfg/b", "ctl", bytes(6), ts());
    const got = drain(sub);
    // oldest first by timestamp: cfg/b (2) was retained before the replacement of cfg/a (3)
    assert.deepEqual(got.map((d) => [d.topic, d.envelope[0], d.retained]), [
      ["cfg/b", 2, true],
      ["cfg/a", 3, true],
      ["cfg/b", 6, false],
    ]);
    assert.equal(broker.retained("cfg/a")?.envelope[0], 3);
    assert.equal(broker.retained("cfg/c"), undefined);
    assert.equal(broker.subscribe("k", "nothing/#").pending, 0);
  });

  test("# replays the parent level and respects the $ rule", () => {
    const broker = new PubSubBroker();
    for (const t of ["a", "a/b", "a/b/c", "$SYS/x", "b"]) {
      broker.publish(t, "p", bytes(1), ts(), { retain: true });
    }
    const topicsOf = (filter: string) =>
      drain(broker.subscribe("k", filter)).map((d) => d.topic).sort();
    assert.deepEqual(topicsOf("a/#"), ["a", "a/b", "a/b/c"]);
    assert.deepEqual(topicsOf("#"), ["a", "a/b", "a/b/c", "b"]);
    assert.deepEqual(topicsOf("+"), ["a", "b"]);
    assert.deepEqual(topicsOf("$SYS/#"), ["$SYS/x"]);
    assert.deepEqual(topicsOf("+/x"), []);
  });

  test("an empty envelope with retain clears the retained message and is delivered live", () => {
    const broker = new PubSubBroker();
    broker.publish("t", "p", bytes(1), ts(), { retain: true });
    const live = broker.subscribe("k", "t");
    assert.equal(broker.publish("t", "p", bytes(), ts(), { retain: true }), 1);
    assert.equal(broker.retained("t"), undefined);
    assert.equal(broker.stats().retained, 0);
    assert.deepEqual(drain(live).map((d) => d.envelope.length), [1, 0]);
    assert.equal(broker.subscribe("k", "t").pending, 0);
    assert.equal(broker.clearRetained("t"), false);
    broker.publish("t", "p", bytes(1), ts(), { retain: true });
    assert.equal(broker.clearRetained("t"), true);
    assert.throws(() => broker.clearRetained("t/#"), TopicError);
  });

  test("replay beyond the buffer follows the overflow policy and is counted", () => {
    const broker = new PubSubBroker();
    for (let i = 1; i <= 5; i++) broker.publish(`t/${i}`, "p", bytes(i), ts(), { retain: true });
    const oldest = broker.subscribe("k", "t/#", { bufferCapacity: 2 });
    assert.deepEqual(payloads(oldest), [4, 5]);
    assert.equal(oldest.dropped, 3);
    const newest = broker.subscribe("k", "t/#", {
      bufferCapacity: 2,
      overflowPolicy: OverflowPolicy.DropNewest,
    });
    assert.deepEqual(payloads(newest), [1, 2]);
    const reject = broker.subscribe("k", "t/#", {
      bufferCapacity: 2,
      overflowPolicy: OverflowPolicy.Reject,
    });
    assert.deepEqual(reject.stats(), { delivered: 2, dropped: 3, rejected: 0, pending: 2 });
    assert.equal(broker.stats().dropped, 9);
  });

  test("maxRetained bounds the store; a full store refuses new topics, not updates", () => {
    const broker = new PubSubBroker(PubSubConfig.default().withMaxRetained(2));
    const sub = broker.subscribe("k", "#");
    broker.publish("a", "p", bytes(1), ts(), { retain: true });
    broker.publish("b", "p", bytes(2), ts(), { retain: true });
    assert.throws(
      () => broker.publish("c", "p", bytes(3), ts(), { retain: true }),
      code(ErrorCode.RetainedFull, QueueFullError),
    );
    assert.deepEqual(payloads(sub), [1, 2], "the refused publish delivered nothing");
    assert.equal(broker.publish("a", "p", bytes(4), ts(), { retain: true }), 1);
    assert.equal(broker.publish("c", "p", bytes(5), ts()), 1, "non-retained publishes still flow");
    broker.publish("a", "p", bytes(), ts(), { retain: true });
    broker.publish("c", "p", bytes(6), ts(), { retain: true });
    assert.equal(broker.stats().retained, 2);
    const off = new PubSubBroker(PubSubConfig.default().withMaxRetained(0));
    assert.throws(() => off.publish("a", "p", bytes(1), ts(), { retain: true }), QueueFullError);
  });
});

describe("receiving asynchronously", () => {
  test("for await yields deliveries and break unsubscribes", async () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "t/#");
    const producer = (async () => {
      for (let i = 1; i <= 5; i++) {
        await tickTask();
        broker.publish(`t/${i}`, "p", bytes(i), ts());
      }
    })();
    const seen: number[] = [];
    for await (const msg of sub) {
      seen.push(msg.envelope[0]);
      if (seen.length === 3) break;
    }
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(sub.closed, true);
    await producer;
    assert.equal(broker.stats().subscriptions, 0);
    assert.equal(broker.stats().published, 5);
  });

  test("iteration drains what is buffered, then ends after unsubscribe", async () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "t");
    broker.publish("t", "p", bytes(1), ts());
    broker.publish("t", "p", bytes(2), ts());
    setTimeout(() => sub.unsubscribe(), 5);
    const seen: number[] = [];
    for await (const msg of sub) seen.push(msg.envelope[0]);
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(await sub.next(), { value: undefined, done: true });
  });

  test("iteration ends when the broker closes", async () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "t");
    setTimeout(() => {
      broker.publish("t", "p", bytes(7), ts());
      broker.close();
    }, 1);
    const seen: number[] = [];
    for await (const msg of sub) seen.push(msg.envelope[0]);
    assert.deepEqual(seen, [7]);
  });

  test("receive waits, times out, honours abort signals; concurrent receivers are served in order", async () => {
    const broker = new PubSubBroker();
    const sub = broker.subscribe("k", "t");
    await assert.rejects(sub.receive({ timeoutMs: 0 }), code(ErrorCode.Timeout, TimeoutError));
    await assert.rejects(sub.receive({ timeoutMs: 5 }), code(ErrorCode.Timeout, TimeoutError));
    await assert.rejects(sub.next({ timeoutMs: 5 }), TimeoutError);
    await assert.rejects(sub.receive({ timeoutMs: -1 }), ValidationError);
    await assert.rejects(sub.receive({ timeoutMs: Number.NaN }), ValidationError);

    const first = sub.receive();
    const second = sub.next({ timeoutMs: 10_000 });
    broker.publish("t", "p", bytes(1), ts());
    broker.publish("t", "p", bytes(2), ts());
    assert.equal((await first).envelope[0], 1);
    assert.equal((await second).value?.envelope[0], 2);

    const controller = new AbortController();
    const aborted = sub.receive({ signal: controller.signal, timeoutMs: 10_000 });
    controller.abort(new Error("stop"));
    await assert.rejects(aborted, /stop/);
    await assert.rejects(sub.receive({ signal: controller.signal }), /stop/);
    // an aborted waiter does not swallow the next message
    broker.publish("t", "p", bytes(3), ts());
    assert.equal(sub.tryReceive()?.envelope[0], 3);
    sub.unsubscribe();
  });

  test("no timer survives a settled receive or an unsubscribe", async () => {
    // Count live timers through the globals the implementation uses.
    const g = globalThis as unknown as {
      setTimeout: typeof setTimeout;
      clearTimeout: typeof clearTimeout;
    };
    const realSet = g.setTimeout;
    const realClear = g.clearTimeout;
    const live = new Set<unknown>();
    g.setTimeout = ((fn: () => void, ms?: number) => {
      const id = realSet(() => {
        live.delete(id);
        fn();
      }, ms);
      live.add(id);
      return id;
    }) as typeof setTimeout;
    g.clearTimeout = ((id: ReturnType<typeof setTimeout>) => {
      live.delete(id);
      realClear(id);
    }) as typeof clearTimeout;
    try {
      const broker = new PubSubBroker();
      const sub = broker.subscribe("k", "t");
      const got = sub.receive({ timeoutMs: 60_000 });
      assert.equal(live.size, 1);
      broker.publish("t", "p", bytes(1), ts());
      await got;
      assert.equal(live.size, 0, "delivery clears the timeout");
      const pending = sub.next({ timeoutMs: 60_000 });
      const pending2 = sub.receive({ timeoutMs: 60_000 });
      assert.equal(live.size, 2);
      sub.unsubscribe();
      assert.equal(live.size, 0, "unsubscribe clears the timeouts");
      assert.deepEqual(await pending, { value: undefined, done: true });
      await assert.rejects(pending2, code(ErrorCode.Closed, InvalidStateError));
    } finally {
      g.setTimeout = realSet;
      g.clearTimeout = realClear;
    }
  });
});
