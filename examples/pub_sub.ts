/**
 * Pub/sub around kernels: a kernel's outputs are published on MQTT topics, subscribers with
 * wildcard filters receive them, retained alarms replay to a late subscriber, and one
 * subscription feeds its deliveries into another kernel.
 *
 *   deno run -A examples/pub_sub.ts
 *   bun examples/pub_sub.ts
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the script only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  decodeMessage,
  defineKernel,
  defineMessage,
  type Delivery,
  DeliveryStatus,
  encodeMessage,
  HlcClock,
  PubSubBroker,
  PubSubConfig,
  RingKernel,
} from "../mod.ts";

/** Room names by number: messages carry the number, topics the name. */
export const ROOMS = ["kitchen", "lab", "roof"] as const;

/** A raw sensor reading. */
export const Reading = defineMessage({
  typeId: 1301,
  name: "Reading",
  fields: { room: "u32", celsius: "f32" },
});
/** What the thermostat makes of a reading. */
export const Status = defineMessage({
  typeId: 1302,
  name: "Status",
  fields: { room: "u32", celsius: "f32", overheat: "bool" },
});

/** Flags readings above its threshold; the threshold is state, so the host could change it. */
export const thermostat = defineKernel({
  id: "thermostat",
  module: import.meta.url,
  input: Reading,
  output: Status,
  state: { threshold: "f32" },
  initialState: { threshold: 30 },
  handler: (msg, state) => ({
    room: msg.room,
    celsius: msg.celsius,
    overheat: msg.celsius > state.threshold,
  }),
});

/** Keeps count of the alarms it is fed (from a subscription) and the hottest one. */
export const alarmLog = defineKernel({
  id: "alarm-log",
  module: import.meta.url,
  input: Status,
  state: { alarms: "u32", hottest: "f32" },
  handler: (msg, state) => {
    state.alarms += 1;
    state.hottest = Math.max(state.hottest, msg.celsius);
  },
});

function line(who: string, d: Delivery): string {
  const s = decodeMessage(d.envelope, Status).value;
  return `${who} <- ${d.topic}: ${s.celsius} °C${d.retained ? " (retained)" : ""}`;
}

async function main(): Promise<void> {
  const rt = await RingKernel.builder().build();
  const thermo = await rt.launch(thermostat);
  const log = await rt.launch(alarmLog);

  const clock = new HlcClock(1);
  const broker = new PubSubBroker(PubSubConfig.default()); // envelopes: Uint8Array
  const dashboard = broker.subscribe("dashboard", "home/+/temperature");
  const kitchen = broker.subscribe("kitchen-panel", "home/kitchen/#");
  const pager = broker.subscribe("pager", "home/+/alarm");

  // Readings go to the kernel; its outputs come back in order.
  const readings: [number, number][] = [[0, 21.5], [2, 34], [1, 22], [2, 35.5], [0, 31]];
  for (const [room, celsius] of readings) await thermo.send(Reading.of({ room, celsius }));

  // The bridge: every output is published on its room's temperature topic, and alarms also on
  // the room's alarm topic with `retain`, so a subscriber that comes later still sees the last
  // alarm. The envelope is published as bytes; the broker never looks inside.
  for (let i = 0; i < readings.length; i++) {
    const out = await thermo.receive({ timeoutMs: 5000 });
    const status = out.value!;
    const envelope = encodeMessage(Status.of(status), { timestamp: clock.tick() });
    const room = ROOMS[status.room];
    broker.publish(`home/${room}/temperature`, thermo.id, envelope, clock.tick());
    if (status.overheat) {
      broker.publish(`home/${room}/alarm`, thermo.id, envelope, clock.tick(), { retain: true });
    }
  }

  for (let d = dashboard.tryReceive(); d; d = dashboard.tryReceive()) {
    console.log(line("dashboard", d));
  }
  for (let d = kitchen.tryReceive(); d; d = kitchen.tryReceive()) {
    console.log(line("kitchen-panel", d));
  }

  // The pager's deliveries go on into the alarm-log kernel through the host's K2K broker: the
  // published envelope is a complete message, so it is delivered unchanged.
  const k2k = rt.k2kBroker();
  let forwarded = 0;
  for (let d = pager.tryReceive(); d; d = pager.tryReceive()) {
    console.log(line("pager", d));
    const receipt = await k2k.send("pager", "alarm-log", d.envelope, { timeoutMs: 1000 });
    if (receipt.status === DeliveryStatus.Delivered) forwarded++;
  }
  // alarm-log replies to nothing, so the host watches its state (shared memory) to see it done.
  for (let waited = 0; log.readState()!.alarms < forwarded && waited < 5000; waited++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  const { alarms, hottest } = log.readState()!;
  console.log(`alarm-log kernel: ${alarms} alarms, hottest ${hottest} °C`);

  // A late subscriber gets the retained alarm of each room at once, before anything new.
  const auditor = broker.subscribe("auditor", "home/+/alarm");
  for (let d = auditor.tryReceive(); d; d = auditor.tryReceive()) console.log(line("auditor", d));
  console.log(`topics with a retained alarm: ${broker.stats().retained}`);

  broker.close();
  await rt.shutdown();
  console.log("done");
}

if (import.meta.main) await main();
