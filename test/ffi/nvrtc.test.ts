/**
 * NVRTC: the module cache and architecture helpers (always), and real compiles to PTX and CUBIN,
 * a syntax error carrying the program log, and a cache hit on the second compile (where
 * libnvrtc is found: set RINGKERNEL_LIBNVRTC, or install the CUDA toolkit's NVRTC).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, NoCudaError, NvrtcError, ValidationError } from "../../src/core/errors.ts";
import {
  archOption,
  defaultCacheDir,
  ModuleCache,
  moduleKey,
  type ModuleKeyParts,
  Nvrtc,
  parseArch,
} from "../../ffi/nvrtc.ts";

const root = mkdtempSync(join(tmpdir(), "rk-nvrtc-"));
after(() => rmSync(root, { recursive: true, force: true }));

let nvrtc: Nvrtc | undefined;
let skip: string | false = false;
try {
  nvrtc = Nvrtc.open({ cacheDir: join(root, "cache") });
} catch (err) {
  if (!(err instanceof NoCudaError)) throw err;
  skip = `no libnvrtc here (${err.searched.length} places tried; set RINGKERNEL_LIBNVRTC)`;
  console.log(`nvrtc.test: skipping the compile tests: ${skip}`);
}
after(() => nvrtc?.close());

function compiler(): Nvrtc {
  if (nvrtc === undefined) throw new Error("no NVRTC (the test should have skipped)");
  return nvrtc;
}

const SAXPY = `
extern "C" __global__ void saxpy(float a, const float* __restrict__ x, float* y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
`;

describe("ffi/nvrtc: helpers", () => {
  it("parses architectures", () => {
    assert.deepEqual(parseArch("sm_90"), { number: 90, suffix: "" });
    assert.deepEqual(parseArch("compute_90a"), { number: 90, suffix: "a" });
    assert.deepEqual(parseArch("86"), { number: 86, suffix: "" });
    assert.deepEqual(parseArch({ major: 12, minor: 0 }), { number: 120, suffix: "" });
    assert.equal(archOption({ major: 9, minor: 0 }, "cubin"), "sm_90");
    assert.equal(archOption("sm_90a", "ptx"), "compute_90a");
    assert.throws(() => parseArch("hopper"), ValidationError);
  });

  it("keys change with every input that decides the output", () => {
    const base: ModuleKeyParts = {
      source: SAXPY,
      arch: "sm_90",
      output: "cubin",
      options: ["-lineinfo"],
      compilerVersion: "13.0",
    };
    const k = moduleKey(base);
    assert.match(k, /^[0-9a-f]{64}$/);
    assert.equal(moduleKey({ ...base }), k);
    for (
      const change of [
        { source: SAXPY + " " },
        { arch: "sm_89" },
        { output: "ptx" as const },
        { options: [] },
        { options: ["-lineinfo", "-G"] },
        { compilerVersion: "13.1" },
      ]
    ) {
      assert.notEqual(moduleKey({ ...base, ...change }), k, JSON.stringify(change));
    }
  });

  it("picks the cache folder: RINGKERNEL_CACHE_DIR, XDG_CACHE_HOME, ~/.cache", () => {
    assert.equal(defaultCacheDir({ RINGKERNEL_CACHE_DIR: "/c", XDG_CACHE_HOME: "/x" }), "/c");
    assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/x" }), join("/x", "ringkernel"));
    assert.match(defaultCacheDir({}), /[/\\]\.cache[/\\]ringkernel$/);
  });

  it("the disk cache stores, returns and rejects implausible images", () => {
    const cache = new ModuleCache(join(root, "unit"));
    const key = "a".repeat(64);
    assert.equal(cache.get(key, "cubin"), undefined);
    const elf = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]);
    assert.ok(cache.put(key, "cubin", elf));
    assert.deepEqual(cache.get(key, "cubin"), elf);
    assert.equal(cache.get(key, "ptx"), undefined);
    const ptx = new TextEncoder().encode(".version 8.0\n\0");
    assert.ok(cache.put(key, "ptx", ptx));
    assert.deepEqual(cache.get(key, "ptx"), ptx);
    writeFileSync(cache.path("b".repeat(64), "cubin"), "not an ELF file");
    assert.equal(cache.get("b".repeat(64), "cubin"), undefined);
    assert.ok(!readdirSync(cache.dir).some((f) => f.endsWith(".tmp")), "no temporaries left");
    const blocked = join(root, "blocked");
    writeFileSync(blocked, "a file where the folder should be");
    assert.equal(new ModuleCache(blocked).put(key, "cubin", elf), false);
  });
});

describe("ffi/nvrtc: compile", { skip }, () => {
  it("reports its version and supported architectures", () => {
    const c = compiler();
    assert.ok(c.version.major >= 11, JSON.stringify(c.version));
    const archs = c.supportedArchs();
    if (archs.length > 0) assert.ok(archs.every((a) => Number.isInteger(a) && a >= 30));
  });

  it("compiles to PTX", () => {
    const m = compiler().compile(SAXPY, { arch: "sm_80", output: "ptx", cache: false });
    assert.equal(m.output, "ptx");
    assert.equal(m.arch, "compute_80");
    assert.equal(m.cached, false);
    assert.equal(m.image[m.image.length - 1], 0, "NUL-terminated for cuModuleLoadData");
    const text = new TextDecoder().decode(m.image);
    assert.match(text, /\.entry\s+saxpy/);
    assert.match(text, /\.target\s+sm_80/);
  });

  it("compiles to CUBIN for a real architecture", () => {
    const m = compiler().compile(SAXPY, { arch: { major: 8, minor: 0 }, cache: false });
    assert.equal(m.output, "cubin");
    assert.equal(m.arch, "sm_80");
    assert.deepEqual([...m.image.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], "ELF");
  });

  it("a syntax error throws NvrtcError with the log and the context", () => {
    const bad = `extern "C" __global__ void broken(float* x) { x[0] = ; }`;
    try {
      compiler().compile(bad, { arch: "sm_80", context: "kernel broken", cache: false });
      assert.fail("expected NvrtcError");
    } catch (err) {
      assert.ok(err instanceof NvrtcError, String(err));
      assert.equal(err.code, ErrorCode.NvrtcCompile);
      assert.equal(err.resultName, "NVRTC_ERROR_COMPILATION");
      assert.match(err.log, /error/i);
      assert.match(err.message, /kernel broken/);
      assert.match(err.message, /expected an expression|error/);
    }
  });

  it("a bad option is NvrtcError too", () => {
    assert.throws(
      () =>
        compiler().compile(SAXPY, { arch: "sm_80", options: ["--no-such-option"], cache: false }),
      (err: unknown) => err instanceof NvrtcError && /NVRTC_ERROR_INVALID_OPTION/.test(err.message),
    );
  });

  it("the second compile of the same module is a cache hit", () => {
    const c = compiler();
    const options = { arch: "sm_80", options: ["-lineinfo"] } as const;
    const first = c.compile(SAXPY, options);
    assert.equal(first.cached, false);
    assert.ok(existsSync(c.cache?.path(first.key, "cubin") ?? ""), "written to disk");
    const second = c.compile(SAXPY, options);
    assert.equal(second.cached, true);
    assert.equal(second.key, first.key);
    assert.deepEqual(second.image, first.image);
    const other = c.compile(SAXPY, { ...options, options: [] });
    assert.equal(other.cached, false, "different options miss");
    // A fresh instance over the same folder (another process, later) hits too.
    const again = Nvrtc.open({ path: c.source.path, cacheDir: join(root, "cache") });
    try {
      assert.equal(again.compile(SAXPY, options).cached, true);
    } finally {
      again.close();
    }
  });
});
