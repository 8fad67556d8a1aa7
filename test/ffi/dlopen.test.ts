/**
 * The Deno/Bun FFI adapter against a real system library (glibc's libc.so.6 and libm.so.6):
 * calls with every kind of parameter and result, foreign memory from malloc viewed as an
 * ArrayBuffer, pointer/bigint conversions, C strings and out-parameters. Runs unchanged under
 * `deno test -A` and `bun test`, so passing under both proves the adapter for both runtimes.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  addressOf,
  cString,
  cStringArray,
  ffiRuntime,
  openLibrary,
  outI32,
  outU64,
  pointerFromBigInt,
  pointerToBigInt,
  readCString,
  viewForeign,
} from "../../ffi/dlopen.ts";

const skip = process.platform !== "linux" ? "libc.so.6 is a Linux library" : false;

const LIBC = {
  getpid: { parameters: [], result: "i32" },
  strlen: { parameters: ["buffer"], result: "usize" },
  malloc: { parameters: ["usize"], result: "pointer" },
  free: { parameters: ["pointer"], result: "void" },
  memset: { parameters: ["pointer", "i32", "usize"], result: "pointer" },
  strtoull: { parameters: ["buffer", "pointer", "i32"], result: "u64" },
  llabs: { parameters: ["i64"], result: "i64" },
  abs: { parameters: ["i32"], result: "i32" },
  htonl: { parameters: ["u32"], result: "u32" },
  strtol: { parameters: ["buffer", "buffer", "i32"], result: "i64" },
  no_such_symbol_rk: { parameters: [], result: "void", optional: true },
} as const;

const LIBM = {
  sqrt: { parameters: ["f64"], result: "f64" },
  sqrtf: { parameters: ["f32"], result: "f32" },
  frexp: { parameters: ["f64", "buffer"], result: "f64" },
} as const;

describe("ffi/dlopen", { skip }, () => {
  it("runs under Deno or Bun", () => {
    assert.ok(ffiRuntime === "deno" || ffiRuntime === "bun", `runtime ${ffiRuntime}`);
  });

  it("calls libc with 32- and 64-bit integers, buffers and pointers", () => {
    const libc = openLibrary("libc.so.6", LIBC);
    try {
      const s = libc.symbols;
      assert.equal(s.getpid(), process.pid);
      assert.equal(s.strlen(cString("hello")), 5n);
      assert.equal(s.strlen(cString("xxhello").subarray(2)), 5n, "byteOffset is honoured");
      assert.equal(s.abs(-7), 7);
      assert.equal(s.htonl(0x01020304), 0x04030201);
      assert.equal(s.llabs(-(2n ** 40n)), 2n ** 40n);
      assert.equal(s.strtoull(cString("18446744073709551615"), null, 10), 2n ** 64n - 1n);
      assert.equal(s.no_such_symbol_rk, null, "a missing optional symbol is null");
      // char** out-parameter: strtol stores where parsing stopped.
      const text = cString("-42 rest");
      const end = outU64();
      assert.equal(s.strtol(text, end, 10), -42n);
      assert.equal(end[0], addressOf(text) + 3n, "out-parameter written through a typed array");
    } finally {
      libc.close();
    }
  });

  it("calls libm with f32 and f64", () => {
    const libm = openLibrary("libm.so.6", LIBM);
    try {
      assert.equal(libm.symbols.sqrt(2), Math.SQRT2);
      assert.equal(libm.symbols.sqrtf(2.25), 1.5);
      const exponent = outI32();
      assert.equal(libm.symbols.frexp(8, exponent), 0.5);
      assert.equal(exponent[0], 4);
    } finally {
      libm.close();
    }
  });

  it("views malloc'd memory as an ArrayBuffer, both ways", () => {
    const libc = openLibrary("libc.so.6", LIBC);
    const s = libc.symbols;
    const p = s.malloc(64);
    try {
      assert.notEqual(p, null);
      const address = pointerToBigInt(p);
      assert.ok(address > 0n);
      assert.equal(pointerToBigInt(pointerFromBigInt(address)), address);
      assert.equal(pointerFromBigInt(0n), null);
      assert.equal(pointerToBigInt(null), 0n);

      // C writes, JS reads.
      s.memset(p, 0xab, 64);
      const bytes = new Uint8Array(viewForeign(p as NonNullable<typeof p>, 64));
      assert.equal(bytes.length, 64);
      assert.ok(bytes.every((b) => b === 0xab));

      // JS writes, C reads (same memory, no copy).
      bytes.set(new TextEncoder().encode("ring\0"));
      assert.equal(s.strlen(bytes), 4n);
      assert.equal(readCString(address), "ring");
      assert.equal(readCString(p), "ring");
      assert.equal(addressOf(bytes), address);
      assert.equal(addressOf(bytes.subarray(3)), address + 3n);

      // A second view from the bigint address sees the same bytes.
      const again = new Uint8Array(viewForeign(address + 1n, 3));
      assert.deepEqual([...again], [..."ing"].map((c) => c.charCodeAt(0)));
      assert.equal(viewForeign(address, 0).byteLength, 0);
    } finally {
      s.free(p);
      libc.close();
    }
  });

  it("packs C string arrays with stable addresses", () => {
    const arr = cStringArray(["--a", "bc", ""]);
    assert.equal(arr.pointers.length, 3);
    for (const [i, want] of ["--a", "bc", ""].entries()) {
      assert.equal(readCString(arr.pointers[i]), want);
    }
    assert.equal(arr.pointers[0], addressOf(arr.bytes));
    const empty = cStringArray([]);
    assert.equal(empty.pointers.length, 1, "never an empty view");
    assert.equal(readCString(null), "");
  });

  it("reports a missing library and a missing required symbol", () => {
    assert.throws(
      () => openLibrary("/nonexistent/librk_missing.so", LIBC),
      /librk_missing\.so/,
    );
    assert.throws(
      () =>
        openLibrary("libc.so.6", {
          rk_required_missing: { parameters: [], result: "void" },
        }),
      /rk_required_missing/,
    );
  });

  it("rejects bad foreign views", () => {
    assert.throws(() => viewForeign(0n, 8), /null pointer/);
    assert.throws(() => viewForeign(1n, -1), /non-negative/);
    assert.throws(() => addressOf(new Uint8Array(0)), /empty/);
  });
});
