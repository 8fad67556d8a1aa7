/**
 * A kernel's lifecycle: Launched → Active ⇄ Deactivated → Terminated, plus Failed, and what
 * supervision does when a handler throws.
 *
 *   deno run -A examples/kernel_states.ts
 *   bun examples/kernel_states.ts
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the script only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  Backend,
  defineKernel,
  defineMessage,
  HandlerError,
  type KernelFailureEvent,
  type KernelHandle,
  kernelStateName,
  LaunchOptions,
  RingKernel,
} from "../mod.ts";

/** Add to the running total. */
export const Deposit = defineMessage({ typeId: 1101, name: "Deposit", fields: { amount: "f32" } });
/** The running total after a deposit. */
export const Balance = defineMessage({ typeId: 1102, name: "Balance", fields: { total: "f32" } });

/** Sums deposits; a negative one makes the handler throw, so supervision has work. */
function deposit(msg: { amount: number }, state: { total: number }): { total: number } {
  if (msg.amount < 0) throw new RangeError(`negative deposit ${msg.amount}`);
  state.total += msg.amount;
  return { total: state.total };
}

/** The account, launched with the default supervision (`resume`). */
export const account = defineKernel({
  id: "account",
  module: import.meta.url,
  input: Deposit,
  output: Balance,
  state: { total: "f32" },
  initialState: { total: 100 },
  handler: deposit,
});

/** Same handler under its own id, launched with `restart` supervision. */
export const resettable = defineKernel({
  id: "resettable",
  module: import.meta.url,
  input: Deposit,
  output: Balance,
  state: { total: "f32" },
  initialState: { total: 100 },
  handler: deposit,
});

/** Same handler under its own id, launched with `stop` supervision. */
export const strict = defineKernel({
  id: "strict",
  module: import.meta.url,
  input: Deposit,
  output: Balance,
  state: { total: "f32" },
  initialState: { total: 100 },
  handler: deposit,
});

// Pick, not KernelHandle itself: a handle typed by its kernel's schemas is not assignable to the
// schema-less KernelHandle (its handler's parameters are narrower).
function show(k: Pick<KernelHandle, "id" | "state">): string {
  return `${k.id}: ${kernelStateName(k.state())}`;
}

/** Runs `step` and prints the error it is expected to throw as `name code`. */
async function expectError(label: string, step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
    console.log(`${label}: no error (unexpected)`);
  } catch (e) {
    if (e instanceof HandlerError) {
      console.log(`${label}: ${e.name} ${e.code} (${e.remoteName}: ${e.remoteMessage})`);
    } else if (e instanceof Error && "code" in e) {
      console.log(`${label}: ${e.name} ${e.code}`);
    } else {
      throw e;
    }
  }
}

async function main(): Promise<void> {
  // Host-only handler features (see the handlers): the CPU backend, by name.
  const rt = await RingKernel.builder().backend(Backend.Cpu).build();
  // Collected, not printed at once: the event and the failed request's rejection race, and the
  // printed order must not depend on which wins.
  const failures: KernelFailureEvent[] = [];
  rt.onKernelFailure((e) => failures.push(e));

  console.log("1. lifecycle");
  // Without auto-activation the kernel is loaded but does not take messages yet.
  const k = await rt.launch(account, LaunchOptions.default().withoutAutoActivate());
  console.log(`   ${show(k)}`);
  await k.send(Deposit.of({ amount: 5 })); // queued: a Launched kernel keeps what it is sent
  await k.activate();
  console.log(`   ${show(k)}, balance ${(await k.request(Deposit.of({ amount: 0 })))!.total}`);
  await expectError("   activate twice", () => k.activate());

  await k.deactivate();
  console.log(`   ${show(k)}`);
  await k.send(Deposit.of({ amount: 10 }));
  await k.send(Deposit.of({ amount: 20 }));
  console.log(`   while deactivated: ${k.metrics().inputDepth} messages wait in the input queue`);
  await k.activate();
  // Outputs of the three plain sends (5 while Launched, 10 and 20 while Deactivated) come back in
  // order; the request's reply went to its requester and is not among them.
  const totals = [];
  for (let i = 0; i < 3; i++) totals.push((await k.receive({ timeoutMs: 5000 })).value!.total);
  console.log(`   ${show(k)}, outputs ${totals.join(", ")}`);

  console.log("2. supervision");
  await expectError("   resume", () => k.request(Deposit.of({ amount: -1 })));
  console.log(`   ${show(k)}, state kept: ${JSON.stringify(k.readState())}`);

  const r = await rt.launch(resettable, LaunchOptions.default().withSupervision("restart"));
  await r.request(Deposit.of({ amount: 50 }));
  await expectError("   restart", () => r.request(Deposit.of({ amount: -1 })));
  console.log(
    `   ${show(r)}, state reset: ${JSON.stringify(r.readState())}, ` +
      `restarts ${r.metrics().restarts}`,
  );

  const s = await rt.launch(strict, LaunchOptions.default().withSupervision("stop"));
  await expectError("   stop", () => s.request(Deposit.of({ amount: -1 })));
  await s.settled;
  console.log(`   ${show(s)}`);
  for (const f of failures) console.log(`   failure event: ${f.kernelId} (${f.cause})`);
  await expectError("   send to the failed kernel", () => s.send(Deposit.of({ amount: 1 })));

  console.log("3. termination");
  const report = await k.terminate();
  console.log(`   ${show(k)} after ${report.processed} messages`);
  await expectError("   send after terminate", () => k.send(Deposit.of({ amount: 1 })));
  // The id is free again: a new launch starts from the initial state.
  const again = await rt.launch(account);
  console.log(`   relaunched ${show(again)}, state ${JSON.stringify(again.readState())}`);
  console.log(`   states now: ${JSON.stringify(rt.metrics().kernels)}`);

  await rt.shutdown();
  console.log("done");
}

if (import.meta.main) await main();
