// K2K hop between two persistent CUDA kernels, through device-memory lanes (no host hop), against
// the same hop through the host, measured in one run:
//   - device-timed delivery: k2k_ping and k2k_pong (test/cuda/k2k_kernels.ts) bounce a ball with
//     ctx.send; each receiver records, per message, %globaltimer when it took it minus the
//     sender's %globaltimer stamp at publication (CudaRuntime.k2kDeliveryLatency): p50/p99/mean
//     over every hop of the measured chains (a fresh pair of kernels after a warm-up pair);
//   - host-timed hop with handling: (median chain time - median zero-hop trip) / hops, the chain
//     being host → ping → (hops bounces) → host and the zero-hop trip host → ping → host;
//   - baseline, a hop through the host: relay_ping outputs the ball, the host takes it
//     (KernelHandle.receive) and sends it to relay_pong with k2kBroker().send, and so on; each
//     sample is the time from one kernel's output reaching the host to the next one's.
// The resolution of %globaltimer on this device is probed too (its smallest step), since the
// device-timed figures are made of its differences.
// Skips, saying why, without a CUDA device. Writes bench/results/cuda-k2k-<device>-<runtime>.json
// (or into $RINGKERNEL_RESULTS_DIR).
//
//   deno run -A bench/cuda_k2k.ts        bun bench/cuda_k2k.ts
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import process from "node:process";
import { CudaDriver, Nvrtc } from "../ffi/mod.ts";
import { CudaRuntime } from "../src/backends/cuda/cuda_runtime.ts";
import { K2K_HOT_NS, K2K_LINGER_NS } from "../src/backends/cuda/k2k_device.ts";
import { encodeMessage } from "../src/core/envelope.ts";
import type { KernelHandle } from "../src/runtime/kernel_handle.ts";
import { LaunchOptions } from "../src/runtime/launch_options.ts";
import { Ball, k2kPing, k2kPong, relayPing, relayPong } from "../test/cuda/k2k_kernels.ts";
import { percentile, runtimeInfo } from "./harness.ts";

const CHAINS = 20;
const HOPS = 5000;
const ZERO_TRIPS = 300;
const RELAY_CHAINS = 5;
const RELAY_HOPS = 1000;

const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

function stats(samples: number[]): { p50: number; p99: number; mean: number; n: number } {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean, n: samples.length };
}

const PROBE = `extern "C" __global__ void rk_globaltimer_probe(unsigned long long* out) {
  unsigned long long prev, t, step = ~0ull;
  unsigned int changes = 0u;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(prev));
  const unsigned long long start = prev;
  for (int i = 0; i < 400000; ++i) {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (t != prev) {
      if (t - prev < step) step = t - prev;
      ++changes;
      prev = t;
    }
  }
  out[0] = step;
  out[1] = changes;
  out[2] = prev - start;
}`;

/** The smallest and the mean step of %globaltimer, in ns, read by one thread in a tight loop. */
function globaltimerStep(): { minNs: number; meanNs: number } {
  const driver = CudaDriver.open();
  const ctx = driver.createContext(0);
  const nvrtc = Nvrtc.open({ cache: false });
  try {
    const image = nvrtc.compile(PROBE, { arch: ctx.device.arch, context: "globaltimer probe" })
      .image;
    const fn = ctx.loadModule(image).getFunction("rk_globaltimer_probe");
    const out = ctx.alloc(24);
    ctx.launch(fn, 1, 1, 0, null, [{ ptr: out }]);
    const r = new BigUint64Array(3);
    ctx.copyDtoH(r, out);
    const changes = Number(r[1]);
    return { minNs: Number(r[0]), meanNs: changes === 0 ? NaN : Number(r[2]) / changes };
  } finally {
    ctx.close();
    nvrtc.close();
    driver.close();
  }
}

/** The NVIDIA kernel driver's version (from /proc, else nvidia-smi), or undefined. */
function nvidiaDriver(): string | undefined {
  try {
    const m = /Kernel Module\s+(?:for\s+\S+\s+)?([0-9][0-9.]+)/.exec(
      readFileSync("/proc/driver/nvidia/version", "utf8"),
    );
    if (m) return m[1];
  } catch {
    // Not Linux, or /proc not mounted here: ask nvidia-smi.
  }
  const smi = spawnSync("nvidia-smi", ["--query-gpu=driver_version", "--format=csv,noheader"], {
    encoding: "utf8",
  });
  return smi.status === 0 ? smi.stdout.trim().split("\n")[0] : undefined;
}

const opts = () => LaunchOptions.default().withQueueCapacity(1024);

type BallSpec = { readonly hops: "u32"; readonly tag: "u32" };
type Bouncer = KernelHandle<BallSpec, BallSpec, { readonly seen: "u32" }>;

/** One chain of `hops` bounces between k2k_ping and k2k_pong; host-timed, in µs. */
async function chain(ping: Bouncer, hops: number, tag: number): Promise<number> {
  const t0 = performance.now();
  await ping.send(Ball.of({ hops, tag }));
  const out = await ping.receive({ timeoutMs: 30_000 });
  const us = (performance.now() - t0) * 1000;
  const v = out.value;
  if (v?.tag !== tag || v.hops !== 0) throw new Error(`chain ${tag} ended with ${v?.tag}`);
  return us;
}

async function k2kFigures(rt: CudaRuntime) {
  // Warm-up pair: compile and load the modules, first route fills.
  {
    const ping = await rt.launch(k2kPing, opts());
    const pong = await rt.launch(k2kPong, opts());
    for (let i = 0; i < 3; i++) await chain(ping, HOPS, 1_000_000 + i);
    await ping.terminate();
    await pong.terminate();
  }
  const ping = await rt.launch(k2kPing, opts());
  const pong = await rt.launch(k2kPong, opts());
  const zero: number[] = [];
  for (let i = 0; i < ZERO_TRIPS; i++) zero.push(await chain(ping, 0, i));
  const chains: number[] = [];
  for (let i = 0; i < CHAINS; i++) chains.push(await chain(ping, HOPS, 10_000 + i));
  const delivery = rt.k2kDeliveryLatency("k2k_ping")!;
  delivery.merge(rt.k2kDeliveryLatency("k2k_pong")!);
  await ping.terminate();
  await pong.terminate();
  const z = stats(zero);
  const perHop = chains.map((c) => (c - z.p50) / HOPS);
  return {
    delivery: {
      p50: delivery.percentile(50) / 1000,
      p99: delivery.percentile(99) / 1000,
      mean: delivery.mean / 1000,
      max: delivery.max / 1000,
      n: delivery.count,
    },
    hostTimedHop: stats(perHop),
    zeroHopTrip: z,
    chainUs: stats(chains),
  };
}

async function relayFigures(rt: CudaRuntime) {
  const a = await rt.launch(relayPing, opts());
  const b = await rt.launch(relayPong, opts());
  const broker = rt.k2kBroker();
  const samples: number[] = [];
  for (let c = 0; c < RELAY_CHAINS + 1; c++) {
    await a.send(Ball.of({ hops: RELAY_HOPS, tag: c }));
    let from = a;
    let to = "relay_pong";
    let last = -1;
    for (;;) {
      const out = await from.receive({ timeoutMs: 30_000 });
      const now = performance.now();
      // The first chain warms up; each later hop is output-to-output, through the host.
      if (c > 0 && last >= 0) samples.push((now - last) * 1000);
      last = now;
      const v = out.value!;
      if (v.hops === 0) break;
      const status = (await broker.send("host", to, encodeMessage(Ball.of(v)))).status;
      if (status !== "Delivered") throw new Error(`relay send ${status}`);
      from = from === a ? b : a;
      to = to === "relay_pong" ? "relay_ping" : "relay_pong";
    }
  }
  await a.terminate();
  await b.terminate();
  return stats(samples);
}

if (import.meta.main) {
  const info = runtimeInfo();
  let device: string;
  let cudaVersion: string;
  try {
    const d = CudaDriver.open();
    device = d.deviceInfo(0).name;
    cudaVersion = `${Math.floor(d.version / 1000)}.${(d.version % 1000) / 10}`;
    d.close();
  } catch (err) {
    console.log(`cuda_k2k: skipping: no CUDA device: ${(err as Error).message.split("\n")[0]}`);
    process.exit(0);
  }
  const step = globaltimerStep();
  const rt = await CudaRuntime.create();
  let k2k: Awaited<ReturnType<typeof k2kFigures>>;
  let relay: ReturnType<typeof stats>;
  try {
    k2k = await k2kFigures(rt);
    relay = await relayFigures(rt);
  } finally {
    await rt.shutdown();
  }
  const us = (s: { p50: number; p99: number; mean: number }) => ({
    p50: round(s.p50),
    p99: round(s.p99),
    mean: round(s.mean),
  });
  const figures = {
    device,
    cudaVersion,
    nvidiaDriver: nvidiaDriver() ?? "unknown",
    k2kDeliveryUs: { ...us(k2k.delivery), max: round(k2k.delivery.max), hops: k2k.delivery.n },
    k2kHopWithHandlingUs: { ...us(k2k.hostTimedHop), chains: CHAINS, hopsPerChain: HOPS },
    zeroHopTripUs: us(k2k.zeroHopTrip),
    hostRelayHopUs: { ...us(relay), hops: relay.n },
    relayVsK2kHopP50: round(relay.p50 / k2k.hostTimedHop.p50, 2),
    relayVsK2kDeliveryP50: round(relay.p50 / k2k.delivery.p50, 2),
    globaltimerStepNs: { min: step.minNs, mean: round(step.meanNs, 1) },
    goalDeliveryP50LeUs: 1,
    notes: [
      "k2kDeliveryUs: device-timed, %globaltimer at the receiver's take minus the sender's stamp " +
      "at publication; its resolution is globaltimerStepNs.",
      "k2kHopWithHandlingUs: host-timed, (chain - median zero-hop trip) / hops, per chain.",
      "hostRelayHopUs: host-timed output-to-output through receive + k2kBroker().send.",
      `Receivers watch their device lane for up to ${K2K_LINGER_NS / 1000} µs between polls of ` +
      `host memory while K2K traffic arrived within ${K2K_HOT_NS / 1000} µs.`,
    ],
  };
  const slug = /H100/i.test(device)
    ? "h100"
    : device.toLowerCase().replace(/^nvidia\s+/, "").replace(/[^a-z0-9]+/g, "-");
  const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `cuda-k2k-${slug}-${info.runtime}.json`);
  writeFileSync(path, JSON.stringify({ benchmark: "cuda-k2k", ...info, figures }, null, 2) + "\n");
  console.log(`K2K between persistent CUDA kernels on ${device} (${info.runtime} ${info.version})`);
  console.log(
    `delivery (device-timed): p50 ${figures.k2kDeliveryUs.p50} µs, p99 ${figures.k2kDeliveryUs.p99}` +
      ` µs, mean ${figures.k2kDeliveryUs.mean} µs over ${k2k.delivery.n} hops ` +
      `(%globaltimer step ${step.minNs} ns)`,
  );
  console.log(
    `hop with handling (host-timed): p50 ${figures.k2kHopWithHandlingUs.p50} µs over ${CHAINS} ` +
      `chains of ${HOPS}`,
  );
  console.log(
    `hop through the host (baseline): p50 ${figures.hostRelayHopUs.p50} µs, p99 ` +
      `${figures.hostRelayHopUs.p99} µs — ${figures.relayVsK2kHopP50}× the K2K hop`,
  );
  console.log(path);
  process.exit(0);
}
