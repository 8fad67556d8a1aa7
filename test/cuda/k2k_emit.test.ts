/**
 * GPU K2K without a GPU: the persistent source of K2K senders and receivers (a chain, a fan-out
 * loop, a ping-pong pair, a wrongly typed sender, the passthrough built-in) compiles with
 * `nvcc -ptx -arch=sm_90 -x cu` without warnings and assembles with ptxas (skips, saying why,
 * without nvcc), with a K2K message's loads in flight together; the latency-critical path keeps
 * its shape (acquire loads and no fence in the take, the stamp read right before the publishing
 * store, the output room reckoned once per batch); the K2K launch parameters come last and pack
 * in order; the C text uses the documented route offsets,
 * target tables and outbox bounds; the per-kernel block layout is aligned and holds a queue region
 * of the documented layout; the device arena's allocator never overlaps and returns to empty.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { checkKernel } from "../../src/dsl/check.ts";
import {
  emitPassthroughPersistent,
  emitPersistent,
  PERSISTENT_PARAMS,
  persistentLaunchArgs,
} from "../../src/backends/cuda/persistent.ts";
import {
  K2K_NONE,
  K2K_OUTBOX_MAX,
  K2K_PARAMS,
  K2K_ROUTE_BYTES,
  type K2kArgs,
  k2kBlockLayout,
  k2kLaunchArgs,
  k2kOutboxCapacity,
  k2kOutboxWords,
  K2kRouteOffset,
} from "../../src/backends/cuda/k2k_device.ts";
import { ArenaAllocator, K2K_LANE_MAX_SLOTS } from "../../src/backends/cuda/k2k_routing.ts";
import { queueLayout } from "../../src/core/queue_layout.ts";
import { LatencyHistogram } from "../../src/runtime/histogram.ts";
import type { KernelDefinition } from "../../src/runtime/kernel.ts";
import { dslForwarder } from "../dsl/corpus.ts";
import {
  Hop,
  k2kFanout,
  k2kHead,
  k2kMiddle,
  k2kMistyped,
  k2kPing,
  k2kPong,
  k2kTail,
} from "./k2k_kernels.ts";

const NVCC = process.env.NVCC ?? "/usr/local/bin/nvcc";
const probe = spawnSync(NVCC, ["--version"], { encoding: "utf8" });
const nvccSkip: string | false = probe.error || probe.status !== 0
  ? `${NVCC} is missing (no CUDA toolkit on this machine), so the K2K source cannot be compiled`
  : false;
if (nvccSkip) console.log(`k2k_emit: skipping the nvcc tests: ${nvccSkip}`);
// ptxas assembles the PTX into sm_90 code, as NVRTC does at run time (`-ptx` alone does not check
// inline PTX such as ld.acquire.gpu against the target).
const PTXAS = process.env.PTXAS ?? join(NVCC, "..", "ptxas");
const ptxasOk = !nvccSkip && spawnSync(PTXAS, ["--version"], { encoding: "utf8" }).status === 0;

function nvcc(code: string, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), "rk-k2k-"));
  const file = join(dir, `${name}.cu`);
  const ptx = join(dir, `${name}.ptx`);
  try {
    writeFileSync(file, code);
    let out = "";
    try {
      out = execFileSync(
        "sh",
        ["-c", `"${NVCC}" -ptx -arch=sm_90 -x cu -o "${ptx}" "${file}" 2>&1`],
        { encoding: "utf8", timeout: 120_000 },
      );
    } catch (err) {
      const e = err as { stdout?: string; message: string };
      assert.fail(`nvcc rejected ${name}:\n${e.stdout ?? ""}${e.message}`);
    }
    assert.doesNotMatch(out, /warning/i, `nvcc warned on ${name}:\n${out}`);
    if (ptxasOk) {
      const asm = spawnSync(PTXAS, ["-arch=sm_90", ptx, "-o", join(dir, `${name}.cubin`)], {
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(asm.status, 0, `ptxas rejected ${name}:\n${asm.stdout}${asm.stderr}`);
    }
    return readFileSync(ptx, "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const defs = [
  k2kHead,
  k2kMiddle,
  k2kTail,
  k2kFanout,
  k2kMistyped,
  k2kPing,
  k2kPong,
  dslForwarder,
] as unknown as readonly KernelDefinition[];

describe("GPU K2K source", () => {
  for (const def of defs) {
    it(`${def.id}: compiles with nvcc for sm_90, with the route-closing entry`, {
      skip: nvccSkip,
      timeout: 120_000,
    }, () => {
      const code = src(def);
      const ptx = nvcc(code, def.id);
      assert.match(ptx, /\.entry rk_k2k_route_close\(/);
      assert.match(ptx, new RegExp(`\\.entry rk_persistent_${def.id}\\(`));
      // Receivers poll sequence words with device-scope acquire loads; senders publish with a
      // release pattern (fence.acq_rel.gpu, then relaxed device-scope stores of stamp and word).
      assert.match(ptx, /ld\.acquire\.gpu\.u32/);
      if (Object.keys(def.sends).length > 0) {
        assert.match(ptx, /fence\.acq_rel\.gpu/);
        assert.match(ptx, /st\.relaxed\.gpu\.u64/);
        assert.match(ptx, /st\.relaxed\.gpu\.u32/);
      }
      // A K2K message's vectors are loaded in flight together: as many of the take's weak 16-byte
      // loads in a row, with no store to the local env array between them (a store there after
      // each load made every load wait for the one before: one L2 round trip per vector).
      const inVecs = Number(/#define RK_P_IN_VECS (\d+)u/.exec(code)![1]);
      assert.ok(
        longestLoadRun(ptx) >= Math.min(inVecs, 16),
        `${def.id}: ${longestLoadRun(ptx)} loads in a row`,
      );
    });
  }

  it("the hot path: no fence in the take, the stamp right before the publishing store", () => {
    const code = src(k2kPing as unknown as KernelDefinition);
    // The receiver orders its reads with acquire loads of the sequence words, no fence.
    assert.match(cFunction(code, "rk_k2k_seq"), /rk_k2k_ld_acquire\(/);
    const take = cFunction(code, "rk_k2k_take");
    assert.doesNotMatch(take, /fence|__threadfence/);
    assert.ok(take.includes("if (j != 0u && rk_k2k_ld_acquire(l.seq + i) != t + 1u) break;"));
    // `seen` right after the loads (before the handler); the stamp is recorded after it.
    assert.ok(
      take.includes(
        "rk_k2k_load(l, i, k.slot, env, d.stamps, &stamp); " +
          "const unsigned long long seen = rk_gtime(); rk_handle(",
      ),
      take,
    );
    const load = cFunction(code, "rk_k2k_load");
    assert.ok(load.includes("v[x] = rk_k2k_ld4(") && load.includes("env[c + x] = v[x];"));
    assert.doesNotMatch(load, /env\[[^\]]*\] = rk_/);
    // The output room is reckoned once per batch, for what the batch takes; the watch between
    // polls of host memory is a tight loop of acquire loads.
    assert.equal(cFunction(code, "rk_k2k_batch").match(/rk_out_room\(/g)?.length, 1);
    const linger = cFunction(code, "rk_k2k_linger");
    assert.doesNotMatch(linger, /rk_out_room|fence/);
    assert.ok(
      linger.includes(
        "for (unsigned int s = 0u; s < RK_K2K_LINGER_SPIN && ready == 0u; ++s) { " +
          "ready = rk_ready_count(rk_k2k_ld_acquire(word), head, lane); }",
      ),
      linger,
    );
    // The sender: the release fence, then the clock, then only the two stores that publish.
    const write = cFunction(code, "rk_k2k_write");
    assert.equal(
      write.slice(write.lastIndexOf("rk_k2k_fence();")),
      "rk_k2k_fence(); const unsigned long long now = rk_gtime(); " +
        "rk_k2k_st_relaxed64(stamp_at, tag | (now & RK_K2K_STAMP_TIME)); " +
        "rk_k2k_st_relaxed(seq_at, t + 1u); }",
    );
    assert.equal(write.match(/rk_gtime\(\)/g)?.length, 1);
    assert.match(cFunction(code, "rk_k2k_record"), /rk_k2k_stamp_tag\(t\)/);
  });

  it("passthrough (a receiver of any type): compiles with nvcc", {
    skip: nvccSkip,
    timeout: 120_000,
  }, () => {
    nvcc(emitPassthroughPersistent("echo").code, "passthrough");
  });

  it("the K2K launch parameters come last and pack in order", () => {
    assert.deepEqual(PERSISTENT_PARAMS.slice(-K2K_PARAMS.length), K2K_PARAMS);
    const args: K2kArgs = {
      routes: 0x1000n,
      targets: 0x2000n,
      lane: 0x3000n,
      stamps: 0x4000n,
      histogram: 0x5000n,
      self: 7,
      generation: 9,
      capacity: 64,
      flags: 1,
    };
    const packed = persistentLaunchArgs({ region: 0x10n, ...base(), k2k: args });
    assert.equal(packed.length, PERSISTENT_PARAMS.length);
    assert.deepEqual(packed.slice(-K2K_PARAMS.length), k2kLaunchArgs(args));
    packed.forEach((a, i) => assert.ok(PERSISTENT_PARAMS[i].type in a, PERSISTENT_PARAMS[i].name));
    // Without K2K memory every K2K argument is null / "no route".
    const none = persistentLaunchArgs({ region: 0n, ...base() });
    assert.deepEqual(none.slice(-K2K_PARAMS.length), k2kLaunchArgs(K2K_NONE));
    assert.deepEqual(k2kLaunchArgs(K2K_NONE)[5], { u32: 0xffff_ffff });
    const src = emitPersistent(checkKernel(k2kHead as unknown as KernelDefinition), "k2k_head");
    const flat = src.code.replace(/\s+/g, " ");
    assert.match(
      flat,
      /unsigned long long host_ms0, unsigned char\* k2k_routes, unsigned char\* k2k_targets, unsigned char\* k2k_lane, unsigned char\* k2k_stamps, unsigned char\* k2k_hist, unsigned int k2k_self, unsigned int k2k_gen, unsigned int k2k_cap, unsigned int k2k_flags\)/,
    );
  });

  it("targets, type and size tables, route offsets and outbox bounds in the C text", () => {
    const head = emitPersistent(checkKernel(k2kHead as unknown as KernelDefinition), "k2k_head");
    assert.deepEqual(head.k2kTargets, ["k2k_middle"]);
    assert.match(head.code, /#define RK_K2K_TARGETS 1u/);
    assert.match(head.code, new RegExp(`case 0u: return ${Hop.typeId}u; // k2k_middle`));
    assert.match(head.code, new RegExp(`case 0u: return ${Hop.size}u; // k2k_middle`));
    const stride = 2 + Math.ceil(Hop.size / 4);
    const spec = { targets: [{ dest: "k2k_middle", typeId: Hop.typeId, payloadBytes: 12 }] };
    const cap = k2kOutboxCapacity({ ...spec, outboxStride: stride });
    assert.match(head.code, new RegExp(`#define RK_K2K_OUTBOX_CAP ${cap}u`));
    assert.match(head.code, new RegExp(`#define RK_K2K_OUTBOX_STRIDE ${stride}u`));
    assert.match(
      head.code,
      new RegExp(
        `#define RK_K2K_OUTBOX_WORDS ${k2kOutboxWords({ ...spec, outboxStride: stride })}u`,
      ),
    );
    assert.match(head.code, /k\.ctl\[1\] = RK_K2K_OUTBOX_CAP;/);
    assert.match(head.code, /rk_k2k_flush\(k\);/);
    for (const [name, off] of Object.entries(K2kRouteOffset)) {
      if (name === "guard") continue;
      const macro = name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase().replace(
        "TYPE_ID",
        "TYPE",
      );
      assert.match(head.code, new RegExp(`#define RK_K2K_R_${macro} ${off}u`), name);
    }
    assert.match(head.code, new RegExp(`#define RK_K2K_ROUTE_BYTES ${K2K_ROUTE_BYTES}u`));
    assert.ok(K2kRouteOffset.inputTypeId + 4 <= K2K_ROUTE_BYTES);
    const tail = emitPersistent(checkKernel(k2kTail as unknown as KernelDefinition), "k2k_tail");
    assert.deepEqual(tail.k2kTargets, []);
    assert.match(tail.code, /#define RK_K2K_OUTBOX_CAP 0u/);
    const fan = emitPersistent(checkKernel(k2kFanout as unknown as KernelDefinition));
    assert.match(fan.code, /#define RK_K2K_OUTBOX_CAP 32u/);
    assert.deepEqual(emitPassthroughPersistent("echo").k2kTargets, []);
  });

  it("outbox capacity: 0 without targets, else 1..32 records within 4 KiB", () => {
    assert.equal(k2kOutboxCapacity({ targets: [], outboxStride: 2 }), 0);
    const t = [{ dest: "x", typeId: 1, payloadBytes: 4 }];
    assert.equal(k2kOutboxCapacity({ targets: t, outboxStride: 3 }), K2K_OUTBOX_MAX);
    assert.equal(k2kOutboxCapacity({ targets: t, outboxStride: 2 + 512 }), 1);
    assert.equal(k2kOutboxCapacity({ targets: t, outboxStride: 2 + 64 }), 15);
    assert.ok(k2kOutboxWords({ targets: t, outboxStride: 66 }) >= 15 * 66 + 4);
  });

  it("the block layout: aligned pieces, a queue region of the documented layout", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 64 }),
        (targets, capLog, slot16) => {
          const capacity = 2 ** capLog;
          const slotSize = slot16 * 16;
          const l = k2kBlockLayout(targets, true, capacity, slotSize);
          const q = queueLayout(capacity, slotSize);
          assert.equal(l.targets, 0);
          assert.ok(l.histogram >= Math.max(1, targets) * 4 && l.histogram % 128 === 0);
          assert.ok(l.stamps >= l.histogram + LatencyHistogram.byteLength && l.stamps % 128 === 0);
          assert.ok(l.lane >= l.stamps + 8 * capacity && l.lane % 128 === 0);
          assert.equal(l.laneBytes, q.byteLength);
          assert.equal(l.initBytes, l.lane + q.dataOffset);
          assert.ok(l.byteLength >= l.lane + l.laneBytes && l.byteLength % 256 === 0);
          const s = k2kBlockLayout(targets, false, capacity, slotSize);
          assert.equal(s.lane, -1);
          assert.ok(s.byteLength >= Math.max(1, targets) * 4);
        },
      ),
    );
    assert.equal(K2K_LANE_MAX_SLOTS, 4096);
  });

  it("the arena allocator never overlaps and returns to empty", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 5000 })), { maxLength: 80 }),
        (ops) => {
          const start = 65536;
          const end = start + 64 * 1024;
          const a = new ArenaAllocator(start, end);
          const live: { offset: number; bytes: number }[] = [];
          for (const [doAlloc, n] of ops) {
            if (doAlloc || live.length === 0) {
              const at = a.alloc(n);
              if (at === undefined) {
                assert.ok(a.largestFree < Math.ceil(n / 256) * 256);
                continue;
              }
              assert.ok(at >= start && at + n <= end && at % 256 === 0);
              for (const o of live) assert.ok(at + n <= o.offset || o.offset + o.bytes <= at);
              live.push({ offset: at, bytes: n });
            } else {
              const [o] = live.splice(n % live.length, 1);
              a.free(o.offset, o.bytes);
            }
            const used = live.reduce((s, o) => s + Math.ceil(o.bytes / 256) * 256, 0);
            assert.equal(a.used, used);
          }
          for (const o of live.splice(0)) a.free(o.offset, o.bytes);
          assert.equal(a.used, 0);
          assert.equal(a.largestFree, end - start);
        },
      ),
    );
  });
});

/** The persistent kernel source of a definition. */
function src(def: KernelDefinition): string {
  return emitPersistent(checkKernel(def), def.id).code;
}

/**
 * The body of the C function `name` (its definition, braces included) in `code`, comments
 * dropped and white space runs made one space.
 */
function cFunction(code: string, name: string): string {
  const at = new RegExp(`\\b${name}\\([^;{]*\\)\\s*\\{`).exec(code);
  assert.ok(at, `${name} is defined`);
  let depth = 0;
  for (let i = at.index + at[0].length - 1; i < code.length; i++) {
    if (code[i] === "{") depth++;
    else if (code[i] === "}" && --depth === 0) {
      const body = code.slice(at.index + at[0].length - 1, i + 1);
      return body.replace(/\/\/[^\n]*/g, "").replace(/\s+/g, " ");
    }
  }
  throw new Error(`${name}: unbalanced braces`);
}

/** The most weak 16-byte loads (`ld.v4.u32`) in a row in the PTX with no local store between. */
function longestLoadRun(ptx: string): number {
  let run = 0;
  let best = 0;
  for (const line of ptx.split("\n")) {
    if (/^\s*ld\.v4\.u32\b/.test(line)) best = Math.max(best, ++run);
    else if (/^\s*st\.local\b/.test(line)) run = 0;
  }
  return best;
}

function base() {
  return {
    numericId: 1,
    state: 256,
    histogram: 384,
    high: 10240,
    normal: 20480,
    output: 30720,
    inputCapacity: 64,
    outputCapacity: 64,
    slotSize: 256,
    batchMax: 64,
    hostMs0: 0,
  };
}
