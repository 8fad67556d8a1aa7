/**
 * Finding libcuda / libnvrtc: the search order, pinning by an explicit path or environment
 * variable, and the NoCudaError that lists every attempt with why it failed. Needs no GPU and no
 * CUDA library: the failures are the point.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, NoCudaError } from "../../src/core/errors.ts";
import {
  findLibrary,
  LIBRARY_ENV,
  LIBRARY_SONAMES,
  libraryCandidates,
} from "../../ffi/discovery.ts";
import { CUDA_SYMBOLS, NVRTC_SYMBOLS } from "../../ffi/cuda_symbols.ts";
import { CudaDriver } from "../../ffi/cuda.ts";
import { Nvrtc } from "../../ffi/nvrtc.ts";

const linux = process.platform === "linux";
const root = mkdtempSync(join(tmpdir(), "rk-discovery-"));
after(() => rmSync(root, { recursive: true, force: true }));

function noCuda(fn: () => unknown): NoCudaError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof NoCudaError, `expected NoCudaError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.NoCuda);
    return err;
  }
  assert.fail("expected NoCudaError");
}

describe("ffi/discovery: search order", () => {
  it("an explicit path, then the environment variable, pin the choice", () => {
    const env = { RINGKERNEL_LIBCUDA: "/env/libcuda.so.1", CUDA_HOME: "/opt/cuda" };
    assert.deepEqual(libraryCandidates("libcuda", { path: "/opt/x/libcuda.so.1", env }), [
      { path: "/opt/x/libcuda.so.1", source: "option" },
      { path: "/env/libcuda.so.1", source: "env" },
    ]);
    assert.deepEqual(libraryCandidates("libcuda", { env }), [
      { path: "/env/libcuda.so.1", source: "env" },
    ]);
    assert.deepEqual(
      libraryCandidates("libnvrtc", { env: { RINGKERNEL_LIBNVRTC: "/n/libnvrtc.so" } }),
      [{ path: "/n/libnvrtc.so", source: "env" }],
    );
    assert.equal(LIBRARY_ENV.libcuda, "RINGKERNEL_LIBCUDA");
    assert.equal(LIBRARY_ENV.libnvrtc, "RINGKERNEL_LIBNVRTC");
  });

  it("then sonames, CUDA_HOME, CUDA_PATH, /usr/local/cuda, cuda-<version> newest first, system", () => {
    const installs = join(root, "installs");
    for (const v of ["cuda-9", "cuda-12.4", "cuda-13.0", "cuda-12.10", "not-cuda"]) {
      mkdirSync(join(installs, v), { recursive: true });
    }
    const list = libraryCandidates("libnvrtc", {
      env: { CUDA_HOME: "/home/cuda/", CUDA_PATH: "/path/cuda" },
      installRoots: [installs],
      systemDirs: ["/sys/lib"],
    });
    const paths = list.map((c) => c.path);
    const first = (p: string) => {
      const i = paths.indexOf(p);
      assert.ok(i >= 0, `${p} is searched`);
      return i;
    };
    // Loader sonames first, preferred version first.
    assert.deepEqual(paths.slice(0, 4), [...LIBRARY_SONAMES.libnvrtc]);
    assert.deepEqual(LIBRARY_SONAMES.libnvrtc.slice(0, 3), [
      "libnvrtc.so.13",
      "libnvrtc.so.12",
      "libnvrtc.so.11.2",
    ]);
    assert.ok(list.slice(0, 4).every((c) => c.source === "loader"));
    const order = [
      "/home/cuda/lib64/libnvrtc.so.13",
      `/home/cuda/targets/${process.arch === "arm64" ? "sbsa" : "x86_64"}-linux/lib/libnvrtc.so.13`,
      "/path/cuda/lib64/libnvrtc.so.13",
      "/usr/local/cuda/lib64/libnvrtc.so.13",
      join(installs, "cuda-13.0", "lib64", "libnvrtc.so.13"),
      join(installs, "cuda-12.10", "lib64", "libnvrtc.so.13"),
      join(installs, "cuda-12.4", "lib64", "libnvrtc.so.13"),
      join(installs, "cuda-9", "lib64", "libnvrtc.so.13"),
      "/sys/lib/libnvrtc.so.13",
    ].map(first);
    assert.deepEqual(order, [...order].sort((a, b) => a - b), "search order");
    assert.ok(!paths.some((p) => p.includes("not-cuda")));
    assert.ok(!paths.some((p) => p.includes("/stubs/")), "stub libraries are never searched");
    assert.equal(new Set(paths).size, paths.length, "no duplicates");
    assert.equal(list.find((c) => c.path.startsWith("/home/cuda"))?.source, "CUDA_HOME");
    assert.equal(list.find((c) => c.path.startsWith("/path/cuda"))?.source, "CUDA_PATH");
  });

  it("reads process.env by default", () => {
    assert.deepEqual(
      libraryCandidates("libcuda"),
      libraryCandidates("libcuda", { env: process.env }),
    );
    assert.deepEqual(
      libraryCandidates("libnvrtc"),
      libraryCandidates("libnvrtc", { env: process.env }),
    );
  });
});

describe(
  "ffi/discovery: failures",
  { skip: linux ? false : "dlopen tests use Linux paths" },
  () => {
    it("a bad explicit path and a bad env var give NoCudaError listing both", () => {
      const err = noCuda(() =>
        findLibrary("libcuda", CUDA_SYMBOLS, {
          path: "/nonexistent/explicit/libcuda.so.1",
          env: { RINGKERNEL_LIBCUDA: "/nonexistent/env/libcuda.so.1" },
        })
      );
      assert.equal(err.library, "libcuda");
      assert.equal(err.searched.length, 2, err.message);
      assert.match(
        err.searched[0],
        /^\/nonexistent\/explicit\/libcuda\.so\.1 \(option\): no such file/,
      );
      assert.match(err.searched[1], /^\/nonexistent\/env\/libcuda\.so\.1 \(env\): no such file/);
      assert.match(err.message, /RINGKERNEL_LIBCUDA/);
    });

    it("a library without the CUDA symbols is rejected with the loader's reason", () => {
      const err = noCuda(() =>
        findLibrary("libcuda", CUDA_SYMBOLS, { path: "libc.so.6", env: {} })
      );
      assert.equal(err.searched.length, 1);
      // Deno names whichever symbol it registers first, Bun the first in table order.
      assert.match(err.searched[0], /^libc\.so\.6 \(option\): .*\bcu[A-Z]\w+/);
    });

    it("an unloadable soname reports the loader's message", () => {
      const err = noCuda(() =>
        findLibrary("libnvrtc", NVRTC_SYMBOLS, { env: { RINGKERNEL_LIBNVRTC: "librk_nope.so.7" } })
      );
      assert.match(err.searched[0], /^librk_nope\.so\.7 \(env\): .*librk_nope\.so\.7/);
    });

    it("accept() can refuse a library that loaded; the search goes on", () => {
      let calls = 0;
      const err = noCuda(() =>
        findLibrary("libcuda", { getpid: { parameters: [], result: "i32" } }, {
          path: "libc.so.6",
          env: {},
          accept: (lib) => {
            calls++;
            assert.equal(typeof lib.symbols.getpid(), "number");
            return "refused by the test";
          },
        })
      );
      assert.equal(calls, 1);
      assert.deepEqual(err.searched, ["libc.so.6 (option): refused by the test"]);
    });

    it("the full search lists every soname and absent folder with a reason", (t) => {
      const empty = join(root, "empty");
      mkdirSync(empty, { recursive: true });
      let err: NoCudaError;
      try {
        const found = findLibrary("libcuda", CUDA_SYMBOLS, {
          env: { CUDA_HOME: join(root, "no-such-cuda-home") },
          installRoots: [empty],
          systemDirs: [join(root, "no-such-lib-dir"), empty],
        });
        found.library.close();
        t.skip(`libcuda is installed here (${found.candidate.path})`);
        return;
      } catch (e) {
        assert.ok(e instanceof NoCudaError, String(e));
        err = e;
      }
      for (const soname of LIBRARY_SONAMES.libcuda) {
        assert.ok(
          err.searched.some((s) =>
            s.startsWith(`${soname} (loader): `) && s.length > soname.length + 12
          ),
          `${soname} listed with a reason:\n${err.message}`,
        );
      }
      assert.ok(
        err.searched.includes(
          `${join(root, "no-such-cuda-home", "lib64")}/ (CUDA_HOME): no such directory`,
        ),
        err.message,
      );
      assert.ok(
        err.searched.includes(`${empty}/{libcuda.so.1,libcuda.so} (common): no such file`),
        "missing files of one folder share a line",
      );
      assert.ok(
        err.searched.every((s) => / \((option|env|loader|CUDA_HOME|CUDA_PATH|common)\)/.test(s)),
      );
    });

    it("CudaDriver.open and Nvrtc.open throw NoCudaError for a bad path", () => {
      noCuda(() => CudaDriver.open({ path: "/nonexistent/libcuda.so.1", env: {} }));
      noCuda(() => Nvrtc.open({ path: "/nonexistent/libnvrtc.so.13", env: {}, cache: false }));
    });
  },
);
