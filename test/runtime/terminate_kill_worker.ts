// The scenario of terminate_kill.test.ts, run in a worker so that the test can give up on it: a
// kernel whose exit settles (killed) while a `terminate` waits for it and a request's pump polls
// its output. Posts how it ended, or nothing if its event loop never turns again.
import { Priority } from "../../src/core/envelope.ts";
import { fakeKernel, Tag } from "./fake_site.ts";

declare const self: { postMessage(message: unknown): void };

const k = fakeKernel({ hook: "defer" });
await k.handle.send(Tag.of({ n: 1 }));
await k.handle.send(Tag.of({ n: 2 }), { priority: Priority.High });
// The device never answers: the request's pump polls the output queue on macrotasks.
const request = k.handle.request(Tag.of({ n: 3 }), { timeoutMs: 60_000 }).then(
  () => "answered",
  (e: Error) => e.name,
);
const terminate = k.handle.terminate({ drain: false }).then(
  () => "terminated",
  (e: Error) => e.name,
);
await new Promise((r) => setTimeout(r, 20));
k.kill();
await k.handle.settled;
// A timer still fires: the loop turns.
await new Promise((r) => setTimeout(r, 1));
k.stop();
self.postMessage({
  request: await request,
  terminate: await terminate,
  returned: k.handle.unhandled.length,
});
