/**
 * HLC benchmark: `HlcClock.tick()` against a bare `Date.now()` read, measured in the same run.
 * Goal: tick ≤ 1.15× the bare clock read. Also times `SharedHlcClock.tick()` (one 64-bit CAS).
 * @module
 */
import { HlcClock, SharedHlcClock } from "../src/core/hlc.ts";
import { isMain, writeResult } from "./harness.ts";

const N = 2_000_000;
const ROUNDS = 9;

/**
 * Median ns per call of each body over several rounds of N calls. Rounds interleave the bodies so
 * that noise from other processes hits baseline and candidate alike.
 */
function timeAll(bodies: Array<(n: number) => number>): number[] {
  const samples = bodies.map(() => [] as number[]);
  let sink = 0;
  for (const body of bodies) sink += body(N / 10); // warm up the JIT
  for (let r = 0; r < ROUNDS; r++) {
    bodies.forEach((body, i) => {
      const t0 = performance.now();
      sink += body(N);
      samples[i].push(((performance.now() - t0) * 1e6) / N);
    });
  }
  if (sink === 42) console.log(""); // keeps the results observable
  return samples.map((s) => s.sort((a, b) => a - b)[ROUNDS >> 1]);
}

/** Runs the HLC benchmark, prints a table and writes `bench/results/hlc-<runtime>.json`. */
export function run(): Promise<Record<string, unknown>> {
  const clock = new HlcClock(1);
  const shared = new SharedHlcClock(new SharedArrayBuffer(8), 0, 1);
  const [bare, tick, sharedTick] = timeAll([
    (n) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += Date.now();
      return s;
    },
    (n) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += clock.tick().logical;
      return s;
    },
    (n) => {
      let s = 0;
      for (let i = 0; i < n; i++) s += shared.tick().logical;
      return s;
    },
  ]);
  const figures = {
    iterations: N,
    rounds: ROUNDS,
    dateNowNs: bare,
    tickNs: tick,
    sharedTickNs: sharedTick,
    tickRatio: tick / bare,
    sharedTickRatio: sharedTick / bare,
    goalTickRatio: 1.15,
  };
  console.log("HLC (median ns/op)");
  console.table({
    "Date.now() (baseline)": { ns: bare.toFixed(1), ratio: "1.00" },
    "HlcClock.tick()": { ns: tick.toFixed(1), ratio: figures.tickRatio.toFixed(2) },
    "SharedHlcClock.tick()": {
      ns: sharedTick.toFixed(1),
      ratio: figures.sharedTickRatio.toFixed(2),
    },
  });
  writeResult("hlc", figures);
  return Promise.resolve(figures);
}

if (isMain(import.meta)) await run();
