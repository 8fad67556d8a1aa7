// Runs each example as a user would (`deno run -A …` under Deno, `bun …` under Bun) and checks
// what it prints.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { execPath } from "node:process";
import { fileURLToPath } from "node:url";

const isDeno = "Deno" in globalThis;
const root = fileURLToPath(new URL("../", import.meta.url));

function runExample(file: string): string {
  const args = isDeno ? ["run", "-A", file] : [file];
  const r = spawnSync(execPath, args, { cwd: root, encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, `${file} exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test("examples/demo.ts: the tour runs and every step reports correct results", () => {
  const out = runExample("examples/demo.ts");
  assert.match(out, /sent < received: true/);
  assert.match(out, /"pos":\{"x":10,"y":2,"z":3\}/);
  assert.match(out, /static_assert\(offsetof\(Particle, alive\) == 26/);
  assert.match(out, /fn Particle_get_alive\(v: Particle\) -> bool/);
  assert.match(
    out,
    /80 bytes on the wire \(64-byte header\): {"sensor":3,"seq":1,"celsius":21.5,"ok":true}/,
  );
  assert.match(out, /after a bit flip: DecodeError E_DECODE_CHECKSUM at byte 56/);
  assert.match(out, /received 40000 of 40000, out of order per producer: 0/);
  assert.match(out, /enqueued 40000, dequeued 40000/);
  assert.match(out, /delivered to 2 subscriptions/);
  assert.match(out, /dashboard <- sensors\/lab\/temperature = 21.0 \(retained\)/);
  assert.match(out, /logger has 3 pending/);
  assert.match(out, /y\[0\] = 7, dot\(x, y\) = 14336/);
  assert.match(out, /tour done/);
});
