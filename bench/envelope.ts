/**
 * Message schema and envelope throughput, against JSON in the same run.
 *
 * What is timed, per message type (a 4-byte, a 40-byte and a 1 KiB payload):
 * - `encode`: `schema.encode(value)` (allocates the payload buffer);
 * - `encodeInto`: `schema.encodeInto(value, buffer)` (into a reused buffer);
 * - `decode`: `schema.decode(bytes)` (a fresh object per call);
 * - `view read`: reading every scalar through a zero-copy view (no decode copy);
 * - `send`: `writeMessage` of a full envelope into a reused slot, with and without CRC32C;
 * - `receive`: `decodeEnvelope` with a registry (header, typeId lookup, payload decode), with
 *   and without a required CRC32C;
 * - baseline `JSON send`: `TextEncoder.encodeInto(JSON.stringify(value))` into a reused buffer,
 *   and `JSON receive`: `JSON.parse(TextDecoder.decode(bytes))` (u64 carried as a string).
 * Each figure is the median of 7 timed batches of ~40 ms after 2 warm-up batches. Ratios compare
 * `send` / `receive` (no CRC) with the JSON baseline of the same message: > 1 means faster.
 *
 * Run: `deno run -A bench/envelope.ts` or `bun bench/envelope.ts`.
 * @module
 */
import { isMain, rate, runtimeInfo, writeResult } from "./harness.ts";
import { crc32c } from "../src/core/checksum.ts";
import { decodeEnvelope, MessageRegistry, writeMessage } from "../src/core/envelope.ts";
import { HlcTimestamp } from "../src/core/hlc.ts";
import { array, defineMessage, type MessageSchema, struct } from "../src/core/schema.ts";

const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
const Add = defineMessage({ typeId: 1, name: "Add", fields: { value: "f32" } });
const Sample = defineMessage({
  typeId: 7,
  name: "Sample",
  fields: { id: "u64", pos: Vec3, hist: array("u32", 4), ok: "bool", level: "u8" },
});
const Frame = defineMessage({
  typeId: 9,
  name: "Frame",
  fields: { seq: "u32", samples: array("f32", 255) },
});

interface Case {
  schema: MessageSchema;
  value: Record<string, unknown>;
  json: Record<string, unknown>;
  readAll: (view: Record<string, unknown>) => number;
}

const cases: Case[] = [
  {
    schema: Add,
    value: { value: 2.5 },
    json: { value: 2.5 },
    readAll: (v) => v.value as number,
  },
  {
    schema: Sample,
    value: {
      id: 1234567890123n,
      pos: { x: 1.5, y: 2.5, z: 3.5 },
      hist: [1, 2, 3, 4],
      ok: true,
      level: 7,
    },
    json: {
      id: "1234567890123",
      pos: { x: 1.5, y: 2.5, z: 3.5 },
      hist: [1, 2, 3, 4],
      ok: true,
      level: 7,
    },
    readAll: (v) => {
      const pos = v.pos as Record<string, number>;
      const hist = v.hist as Uint32Array;
      return Number((v.id as bigint) & 1n) + pos.x + pos.y + pos.z + hist[0] + hist[1] + hist[2] +
        hist[3] + (v.ok ? 1 : 0) + (v.level as number);
    },
  },
  {
    schema: Frame,
    value: { seq: 42, samples: Array.from({ length: 255 }, (_, i) => i * 0.25) },
    json: { seq: 42, samples: Array.from({ length: 255 }, (_, i) => i * 0.25) },
    readAll: (v) => {
      const s = v.samples as Float32Array;
      let sum = v.seq as number;
      for (let i = 0; i < s.length; i++) sum += s[i];
      return sum;
    },
  },
];

let sink: unknown;

/** Median ops/s of `fn` over timed batches. */
function measure(fn: () => unknown): number {
  let n = 64;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sink = fn();
    const dt = performance.now() - t0;
    if (dt > 10) {
      n = Math.max(1, Math.round((n * 40) / dt));
      break;
    }
    n *= 4;
  }
  const rates: number[] = [];
  for (let b = 0; b < 9; b++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sink = fn();
    const dt = performance.now() - t0;
    if (b >= 2) rates.push((n / dt) * 1000);
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)];
}

/** Runs the benchmark, prints a table, writes `bench/results/envelope-<runtime>.json`. */
export async function run(): Promise<Record<string, unknown>> {
  await Promise.resolve();
  const registry = new MessageRegistry(cases.map((c) => c.schema));
  const header = {
    messageId: 77n,
    sourceKernel: 1,
    destKernel: 2,
    timestamp: new HlcTimestamp(1_700_000_000_000, 3, 1),
  };
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const figures: Record<string, unknown> = {};
  const rows: string[][] = [];
  for (const c of cases) {
    const s = c.schema;
    const msg = s.of(c.value as never);
    const payload = s.encode(c.value as never);
    const slot = new Uint8Array(64 + s.size + 64);
    const payloadBuf = new Uint8Array(s.size);
    const plainEnv = slot.slice(0, writeMessage(slot, 0, msg, header, { checksum: false }));
    const crcEnv = slot.slice(0, writeMessage(slot, 0, msg, header, { checksum: true }));
    const view = s.view(payload) as unknown as Record<string, unknown>;
    const jsonText = JSON.stringify(c.json);
    const jsonBuf = new Uint8Array(jsonText.length * 3 + 16);
    const jsonBytes = enc.encode(jsonText);

    const r: Record<string, number> = {
      encode: measure(() => s.encode(c.value as never)),
      encodeInto: measure(() => s.encodeInto(c.value as never, payloadBuf)),
      decode: measure(() => s.decode(payload)),
      viewRead: measure(() => c.readAll(view)),
      send: measure(() => writeMessage(slot, 0, msg, header, { checksum: false })),
      sendCrc: measure(() => writeMessage(slot, 0, msg, header, { checksum: true })),
      receive: measure(() => decodeEnvelope(plainEnv, { registry })),
      receiveCrc: measure(() => decodeEnvelope(crcEnv, { registry, checksum: "required" })),
      jsonSend: measure(() => enc.encodeInto(JSON.stringify(c.json), jsonBuf).written),
      jsonReceive: measure(() => JSON.parse(dec.decode(jsonBytes))),
    };
    const sendRatio = r.send / r.jsonSend;
    const receiveRatio = r.receive / r.jsonReceive;
    figures[s.name] = {
      payloadBytes: s.size,
      envelopeBytes: plainEnv.length,
      jsonBytes: jsonBytes.length,
      opsPerSecond: Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)])),
      sendVsJson: Number(sendRatio.toFixed(2)),
      receiveVsJson: Number(receiveRatio.toFixed(2)),
    };
    for (const [k, v] of Object.entries(r)) {
      rows.push([`${s.name} (${s.size} B)`, k, rate(v), `${(1e9 / v).toFixed(0)} ns`]);
    }
    rows.push([`${s.name} (${s.size} B)`, "send / JSON send", `${sendRatio.toFixed(2)}×`, ""]);
    rows.push([
      `${s.name} (${s.size} B)`,
      "receive / JSON receive",
      `${receiveRatio.toFixed(2)}×`,
      "",
    ]);
  }
  const big = new Uint8Array(1 << 16).map((_, i) => i * 31);
  const crcRate = measure(() => crc32c(big));
  figures.crc32cBytesPerSecond = Math.round(crcRate * big.length);
  rows.push(["crc32c", "64 KiB buffers", `${((crcRate * big.length) / 1e9).toFixed(2)} GB/s`, ""]);

  const info = runtimeInfo();
  console.log(`envelope benchmark — ${info.runtime} ${info.version}, ${info.cpu}, ${info.date}`);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) console.log(row.map((cell, i) => cell.padEnd(widths[i])).join("  "));
  const path = writeResult("envelope", figures);
  console.log(`wrote ${path}`);
  if (sink === Symbol.for("never")) console.log(sink);
  return figures;
}

if (isMain(import.meta)) await run();
