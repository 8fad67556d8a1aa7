/**
 * A tour of @ringkernel/core's portable core, the pieces every backend stands on: clocks,
 * schemas, envelopes, queues across workers, pub/sub, the WASM SIMD core. Runs unchanged under
 * Deno and Bun:
 *
 *   deno run -A examples/core_tour.ts
 *   bun examples/core_tour.ts
 *
 * (`deno task demo` is the runtime tour in examples/demo.ts.)
 */
import {
  DecodeError,
  decodeMessage,
  encodeMessage,
  ENVELOPE_HEADER_BYTES,
  HlcClock,
  MessageRegistry,
  MpscQueue,
  PubSubBroker,
  PubSubConfig,
  SharedHlcClock,
  SimdCore,
} from "../mod.ts";
import { Particle, Reading } from "./schemas.ts";

const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "JS";
console.log(`@ringkernel/core core tour on ${runtime}\n`);

// 1. Hybrid logical clocks: a receive is always ordered after the send, even when the
//    receiver's wall clock is behind.
const alice = new HlcClock(1);
const bob = new HlcClock(2, { now: () => Date.now() - 5_000 }); // 5 s slow
const sent = alice.tick();
const received = bob.update(sent);
console.log("1. HLC");
console.log(
  `   alice sends ${sent}, bob (5 s slow) receives at ${received}; sent < received: ${
    sent < received
  }`,
);

// 2. One schema: TS type, bytes, zero-copy view, CUDA C and WGSL with identical offsets.
console.log("\n2. Message schemas");
const bytes = Particle.encode({
  id: 7n,
  pos: { x: 1, y: 2, z: 3 },
  history: [4, 5, 6],
  alive: true,
});
const view = Particle.view(bytes.buffer);
view.pos.x = 10; // writes straight into `bytes`
console.log(
  `   Particle: ${Particle.size} bytes, align ${Particle.align}; decoded after a view write:`,
);
console.log(`   ${show(Particle.decode(bytes))}`);
console.log("   CUDA C:\n" + indent(Particle.cStruct()));
console.log("   WGSL:\n" + indent(Particle.wgslStruct()));

// 3. Envelopes: 64-byte header, CRC32C, typed decode errors with byte offsets.
console.log("3. Envelopes");
const registry = new MessageRegistry([Reading, Particle]);
const wire = encodeMessage(Reading.of({ sensor: 3, seq: 1, celsius: 21.5, ok: true }), {
  timestamp: alice.tick(),
}, { checksum: true });
const decoded = decodeMessage(wire, registry, { checksum: "required" });
console.log(
  `   ${wire.byteLength} bytes on the wire (${ENVELOPE_HEADER_BYTES}-byte header): ${
    show(decoded.value)
  }`,
);
wire[ENVELOPE_HEADER_BYTES + 8] ^= 0x40; // flip one payload bit
try {
  decodeMessage(wire, registry, { checksum: "required" });
} catch (err) {
  if (!(err instanceof DecodeError)) throw err;
  console.log(`   after a bit flip: ${err.name} ${err.code} at byte ${err.offset}`);
}

// 4. A lock-free MPSC queue in shared memory: two workers produce, the main thread consumes.
console.log("\n4. MPSC queue across workers");
const queue = MpscQueue.create({ capacity: 256, slotSize: 128 });
const clockWord = new SharedArrayBuffer(8);
const perProducer = 20_000;
const workers = [1, 2].map((producer) => {
  const w = new Worker(new URL("./workers/demo_producer.ts", import.meta.url), { type: "module" });
  w.postMessage({ queue: queue.buffer, clock: clockWord, producer, count: perProducer });
  return w;
});
const lastSeq = new Map<number, number>();
const clock = new SharedHlcClock(clockWord, 0, 0);
let received4 = 0, outOfOrder = 0;
while (received4 < 2 * perProducer) {
  const slot = await queue.dequeue({ timeoutMs: 5_000 });
  const { value } = decodeMessage(slot, Reading, { checksum: "required" });
  if ((lastSeq.get(value.sensor) ?? -1) + 1 !== value.seq) outOfOrder++;
  lastSeq.set(value.sensor, value.seq);
  received4++;
}
workers.forEach((w) => w.terminate());
const s = queue.stats();
console.log(
  `   received ${received4} of ${2 * perProducer}, out of order per producer: ${outOfOrder}`,
);
console.log(
  `   queue stats: enqueued ${s.enqueued}, dequeued ${s.dequeued}, rejected-full ${s.rejectedFull}`,
);
console.log(`   shared clock after both producers: ${clock.current()}`);

// 5. Pub/sub with real MQTT wildcards and retained messages.
console.log("\n5. Pub/sub");
const broker = new PubSubBroker<string>(PubSubConfig.default());
broker.publish("sensors/lab/temperature", "lab", "21.0", alice.tick(), { retain: true });
const sub = broker.subscribe("dashboard", "sensors/+/temperature");
const all = broker.subscribe("logger", "sensors/#");
const n = broker.publish("sensors/roof/temperature", "roof", "4.5", alice.tick());
broker.publish("sensors/roof/humidity", "roof", "80%", alice.tick());
console.log(`   delivered to ${n} subscriptions`);
for (let d = sub.tryReceive(); d; d = sub.tryReceive()) {
  console.log(`   dashboard <- ${d.topic} = ${d.envelope}${d.retained ? " (retained)" : ""}`);
}
console.log(`   logger has ${all.pending} pending (filter sensors/#)`);
broker.close();

// 6. The CPU backend's WebAssembly SIMD core.
console.log("\n6. WASM SIMD core");
const core = await SimdCore.create();
const x = core.allocF32(1024).view, y = core.allocF32(1024).view;
x.fill(2);
y.fill(1);
core.saxpy(y, x, 3); // y = 3x + y
console.log(`   saxpy over 1024 f32: y[0] = ${y[0]}, dot(x, y) = ${core.dot(x, y)}`);

console.log("\ntour done");

function show(value: unknown): string {
  return JSON.stringify(value, (_k, v) => typeof v === "bigint" ? `${v}n` : v);
}

function indent(text: string): string {
  return text.trimEnd().split("\n").map((l) => "     " + l).join("\n") + "\n";
}
