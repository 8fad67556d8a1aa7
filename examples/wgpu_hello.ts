/**
 * A stateful kernel on WebGPU: the handler below is compiled to WGSL and runs on whatever adapter
 * the runtime finds (a GPU, or Mesa's lavapipe on a machine without one), with its state kept in
 * a storage buffer between dispatches.
 *
 *   deno run -A examples/wgpu_hello.ts
 *   bun examples/wgpu_hello.ts
 *
 * Without a WebGPU adapter (Bun on a machine whose Vulkan driver Dawn refuses) it says so and
 * exits 0. A WebGPU round trip waits for a buffer map (milliseconds), so requests made together
 * share rounds: 100 concurrent requests take a handful of submissions, not 100.
 */
import {
  Backend,
  BackendUnavailableError,
  defineKernel,
  defineMessage,
  LaunchOptions,
  RingKernel,
  WebGpuRuntime,
} from "../mod.ts";

/** Add a value. */
export const Deposit = defineMessage({ typeId: 2001, name: "Deposit", fields: { amount: "f32" } });
/** The balance after it. */
export const Balance = defineMessage({
  typeId: 2002,
  name: "Balance",
  fields: { total: "f32", deposits: "u32" },
});

/** A persistent account: its balance lives in a GPU storage buffer between messages. */
export const account = defineKernel({
  id: "account",
  module: import.meta.url,
  input: Deposit,
  output: Balance,
  state: { total: "f32", deposits: "u32" },
  handler: (msg, state) => {
    state.total += msg.amount;
    state.deposits += 1;
    return { total: state.total, deposits: state.deposits };
  },
});

const runtimeName = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "JS";

async function main(): Promise<void> {
  console.log(`WebGPU hello on ${runtimeName}`);
  let rt;
  try {
    rt = await RingKernel.builder().backend(Backend.WebGpu).build();
  } catch (e) {
    if (!(e instanceof BackendUnavailableError)) throw e;
    console.log(`no WebGPU adapter here, nothing to run (${e.message})`);
    return;
  }
  if (rt instanceof WebGpuRuntime) {
    console.log(`adapter: ${rt.adapterInfo.name} (via ${rt.implementation})`);
  }
  const k = await rt.launch(account, LaunchOptions.default().withQueueCapacity(1024));
  const first = await k.request(Deposit.of({ amount: 2 }), { timeoutMs: 5000 });
  console.log(`deposit 2 -> total ${first!.total}, deposits ${first!.deposits}`);
  const second = await k.request(Deposit.of({ amount: 3.5 }), { timeoutMs: 5000 });
  console.log(`deposit 3.5 -> total ${second!.total}, deposits ${second!.deposits}`);
  const rounds = rt instanceof WebGpuRuntime ? rt.pumpStats().rounds : 0;
  const many = await Promise.all(
    Array.from({ length: 100 }, () => k.request(Deposit.of({ amount: 1 }), { timeoutMs: 5000 })),
  );
  const used = rt instanceof WebGpuRuntime ? rt.pumpStats().rounds - rounds : 0;
  console.log(
    `100 concurrent deposits -> highest count ${Math.max(...many.map((r) => r!.deposits))} ` +
      `in ${used} round${used === 1 ? "" : "s"}`,
  );
  console.log(`state ${JSON.stringify(k.readState())}`);
  const reports = await rt.shutdown();
  console.log(`shut down: ${reports.account.processed} deposits processed`);
}

if (import.meta.main) await main();
