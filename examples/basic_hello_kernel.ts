/**
 * The smallest RingKernel program: define a kernel, launch it, talk to it, shut down.
 *
 *   deno run -A examples/basic_hello_kernel.ts
 *   bun examples/basic_hello_kernel.ts
 *
 * Single-file examples: a kernel definition must be exported from a module and name that module
 * (`module: import.meta.url`), because the kernel's worker imports the module to find its
 * handler. So this file is both the kernels' module and the script. The script part runs only
 * under `if (import.meta.main)`: Deno and Bun set `import.meta.main` to true for the entry
 * module of the process and to false for a module a worker imports, so the worker gets the
 * definitions without starting a second copy of the script. (The kernel's worker also evaluates
 * the top-level code of this file, so it stays declarations only.)
 */
import { Backend, defineKernel, defineMessage, kernelStateName, RingKernel } from "../mod.ts";

/** Someone says hello. */
export const Hello = defineMessage({ typeId: 1001, name: "Hello", fields: { visitor: "u32" } });
/** The kernel's answer: who it greets and how many greetings it has given so far. */
export const Greeting = defineMessage({
  typeId: 1002,
  name: "Greeting",
  fields: { visitor: "u32", number: "u32" },
});

/** A persistent actor: its `greeted` counter lives in shared memory between messages. */
export const greeter = defineKernel({
  id: "greeter",
  module: import.meta.url,
  input: Hello,
  output: Greeting,
  state: { greeted: "u32" },
  handler: (msg, state) => {
    state.greeted += 1;
    return { visitor: msg.visitor, number: state.greeted };
  },
});

async function main(): Promise<void> {
  const rt = await RingKernel.builder().backend(Backend.Auto).build();
  console.log(`backend: ${rt.backend}`);

  const k = await rt.launch(greeter);
  console.log(`launched ${k.id}: ${kernelStateName(k.state())}`);

  for (const visitor of [7, 8, 9]) {
    const reply = await k.request(Hello.of({ visitor }), { timeoutMs: 5000 });
    console.log(`hello from ${reply!.visitor}: greeting #${reply!.number}`);
  }
  // The host reads the kernel's state straight from shared memory; no message needed.
  console.log(`state: ${JSON.stringify(k.readState())}`);

  // Shutdown stops every worker and frees every buffer, so the process exits by itself.
  await rt.shutdown();
  console.log(`after shutdown ${k.id} is ${kernelStateName(k.state())}`);
}

if (import.meta.main) await main();
