// What `Backend.Auto` builds: CUDA where the probe finds a usable device, the CPU otherwise (with
// the probe's reason in `backendNotes`), `RINGKERNEL_BACKEND` over both, a backend named in code
// over everything. The probe and the environment are injected (`RuntimeBuilder.autoProbes`) so
// that the choice is tested on any machine; the real probe is tested on this one, whatever it has.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BackendUnavailableError, ErrorCode, ValidationError } from "../../src/core/errors.ts";
import { type CudaProbe, type CudaProbeOptions, probeCuda } from "../../ffi/cuda_probe.ts";
import {
  type AutoProbes,
  BACKEND_ENV,
  chooseAutoBackend,
  WEBGPU_NOT_AUTO,
} from "../../src/runtime/auto_backend.ts";
import { Backend, type KernelRuntime } from "../../src/runtime/backend.ts";
import { RingKernel } from "../../src/runtime/runtime.ts";

const YES: CudaProbe = { usable: true, devices: 1 };
const NO: CudaProbe = { usable: false, reason: "libcuda reports no CUDA device" };
const WEBGPU_NOTE = `webgpu: ${WEBGPU_NOT_AUTO}`;

/** Probes answering `cuda` and an environment holding `env`, recording what was asked. */
function fakeProbes(cuda: CudaProbe, env: Record<string, string> = {}) {
  const asked: { cuda: CudaProbeOptions[]; env: string[] } = { cuda: [], env: [] };
  const probes: AutoProbes = {
    cuda: (options) => {
      asked.cuda.push(options);
      return cuda;
    },
    env: (name) => {
      asked.env.push(name);
      return env[name];
    },
  };
  return { probes, asked };
}

async function withBuilt<T>(
  build: Promise<KernelRuntime>,
  body: (rt: KernelRuntime) => T,
): Promise<T> {
  const rt = await build;
  try {
    return body(rt);
  } finally {
    await rt.shutdown();
  }
}

describe("Backend.Auto's choice", () => {
  it("CUDA when the probe finds a device, the CPU with the probe's reason when not", () => {
    assert.deepEqual(chooseAutoBackend(fakeProbes(YES).probes), {
      backend: "cuda",
      notes: [WEBGPU_NOTE],
      forced: false,
    });
    assert.deepEqual(chooseAutoBackend(fakeProbes(NO).probes), {
      backend: "cpu",
      notes: [`cuda: no usable CUDA device: ${NO.reason}`, WEBGPU_NOTE],
      forced: false,
    });
  });

  it("RINGKERNEL_BACKEND names the backend (any case, spaces around); the probe is not asked", () => {
    for (const [value, backend] of [["cpu", "cpu"], [" CUDA ", "cuda"], ["WebGpu", "webgpu"]]) {
      const { probes, asked } = fakeProbes(YES, { [BACKEND_ENV]: value });
      const choice = chooseAutoBackend(probes);
      assert.equal(choice.backend, backend);
      assert.equal(choice.forced, true);
      assert.deepEqual(asked.cuda, [], `${value}: no probe`);
      for (const note of choice.notes) {
        assert.match(
          note,
          new RegExp(`^(cuda|webgpu): not tried \\(${BACKEND_ENV}=${backend}\\)$`),
        );
      }
      assert.equal(choice.notes.length, backend === "cpu" ? 2 : 1);
    }
  });

  it("RINGKERNEL_BACKEND=auto or empty leaves the choice to the probe", () => {
    for (const value of ["auto", "", "  "]) {
      const { probes, asked } = fakeProbes(YES, { [BACKEND_ENV]: value });
      assert.equal(chooseAutoBackend(probes).backend, "cuda");
      assert.equal(asked.cuda.length, 1);
    }
  });

  it("a RINGKERNEL_BACKEND that names no backend is a ValidationError naming the variable", () => {
    const { probes } = fakeProbes(YES, { [BACKEND_ENV]: "gpu" });
    assert.throws(
      () => chooseAutoBackend(probes),
      (e: unknown) =>
        e instanceof ValidationError && e.code === ErrorCode.InvalidArgument &&
        e.message.includes(BACKEND_ENV) && e.message.includes('"gpu"'),
    );
  });
});

describe("RingKernel.builder() with Backend.Auto", () => {
  it("on this machine: follows the real CUDA probe (the CPU, saying why, without a device)", async () => {
    const probe = probeCuda();
    const built = RingKernel.builder().backend(Backend.Auto).autoProbes({ env: () => undefined })
      .build();
    await withBuilt(built, (rt) => {
      if (!probe.usable) {
        assert.equal(rt.backend, "cpu");
        assert.deepEqual(rt.backendNotes, [
          `cuda: no usable CUDA device: ${probe.reason}`,
          WEBGPU_NOTE,
        ]);
      } else if (rt.backend === "cpu") {
        // A device, but no runtime on it here (no NVRTC, say): the note says so.
        assert.match(rt.backendNotes[0], /^cuda: a CUDA device was found but its runtime did not/);
      } else {
        assert.equal(rt.backend, "cuda");
        assert.deepEqual(rt.backendNotes, [WEBGPU_NOTE]);
      }
    });
  });

  it("is the default backend", async () => {
    const { probes, asked } = fakeProbes(NO);
    await withBuilt(RingKernel.builder().autoProbes(probes).build(), (rt) => {
      assert.equal(rt.backend, "cpu");
      assert.equal(asked.cuda.length, 1);
    });
  });

  it("a probe that finds a device makes it build CUDA, with the builder's CUDA options", async () => {
    const { probes, asked } = fakeProbes(YES);
    const real = probeCuda();
    const built = RingKernel.builder().autoProbes(probes).cuda({ ordinal: 0 }).build();
    await withBuilt(built, (rt) => {
      assert.deepEqual(asked.cuda, [{ ordinal: 0 }]);
      assert.deepEqual(asked.env, [BACKEND_ENV]);
      if (rt.backend === "cuda") {
        assert.deepEqual(rt.backendNotes, [WEBGPU_NOTE]);
        return;
      }
      // Where no CUDA runtime opens (this machine, unless it has a GPU), Auto tried it and fell
      // back to the CPU, saying why: it still runs the program.
      assert.equal(rt.backend, "cpu");
      assert.match(
        rt.backendNotes[0],
        /^cuda: a CUDA device was found but its runtime did not open: \S/,
      );
      if (!real.usable) {
        assert.ok(rt.backendNotes[0].includes(real.reason), rt.backendNotes[0]);
      }
      assert.deepEqual(rt.backendNotes.slice(1), [WEBGPU_NOTE]);
    });
  });

  it("passes libcuda and the ordinal of .cuda() to the probe", async () => {
    const { probes, asked } = fakeProbes(NO);
    const built = RingKernel.builder().cuda({ libcuda: "/opt/x/libcuda.so.1", ordinal: 3 })
      .autoProbes(probes).build();
    await withBuilt(built, () => {
      assert.deepEqual(asked.cuda, [{ libcuda: "/opt/x/libcuda.so.1", ordinal: 3 }]);
    });
  });

  it("RINGKERNEL_BACKEND=cpu builds the CPU even where CUDA is found", async () => {
    const { probes, asked } = fakeProbes(YES, { [BACKEND_ENV]: "cpu" });
    await withBuilt(RingKernel.builder().autoProbes(probes).build(), (rt) => {
      assert.equal(rt.backend, "cpu");
      assert.deepEqual(asked.cuda, []);
      assert.deepEqual(rt.backendNotes, [
        `cuda: not tried (${BACKEND_ENV}=cpu)`,
        `webgpu: not tried (${BACKEND_ENV}=cpu)`,
      ]);
    });
  });

  it("RINGKERNEL_BACKEND=cuda where none opens: BackendUnavailableError, no fallback", async (t) => {
    const real = probeCuda();
    if (real.usable) return t.skip("this machine has a CUDA device: the build would succeed");
    const { probes } = fakeProbes(NO, { [BACKEND_ENV]: "cuda" });
    await assert.rejects(
      RingKernel.builder().autoProbes(probes).build(),
      (e: unknown) => e instanceof BackendUnavailableError && e.backend === "cuda",
    );
  });

  it("a bad RINGKERNEL_BACKEND fails the build", async () => {
    const { probes } = fakeProbes(NO, { [BACKEND_ENV]: "tpu" });
    await assert.rejects(RingKernel.builder().autoProbes(probes).build(), ValidationError);
  });

  it("a backend named in code is built as named; RINGKERNEL_BACKEND is not read", async () => {
    const { probes, asked } = fakeProbes(YES, { [BACKEND_ENV]: "cuda" });
    await withBuilt(RingKernel.builder().backend(Backend.Cpu).autoProbes(probes).build(), (rt) => {
      assert.equal(rt.backend, "cpu");
      assert.deepEqual(rt.backendNotes, []);
      assert.deepEqual(asked, { cuda: [], env: [] });
    });
  });
});

describe("probeCuda", () => {
  it("never throws: a libcuda path that does not load is a reason", () => {
    const p = probeCuda({ libcuda: "/nonexistent/libcuda.so.1" });
    assert.equal(p.usable, false);
    if (!p.usable) assert.match(p.reason, /libcuda/);
  });

  it("under Deno without --allow-ffi: says so instead of prompting or throwing", {
    skip: "Deno" in globalThis ? false : "Deno's permissions only (Bun has none)",
    timeout: 60_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), "rk-auto-probe-"));
    try {
      const script = join(dir, "probe.ts");
      const probeUrl = new URL("../../ffi/cuda_probe.ts", import.meta.url).href;
      writeFileSync(
        script,
        `import { probeCuda } from ${JSON.stringify(probeUrl)};\n` +
          "console.log(JSON.stringify(probeCuda()));\n",
      );
      // No permission flags and no terminal: an attempt to prompt would fail the run instead.
      // Deno.Command: node:child_process under Deno gives a Deno child all permissions.
      const deno = (globalThis as { Deno?: typeof Deno }).Deno!;
      const r = new deno.Command(deno.execPath(), {
        args: ["run", "--no-config", script],
        stdin: "null",
      }).outputSync();
      const stdout = new TextDecoder().decode(r.stdout);
      assert.equal(r.code, 0, `${stdout}\n${new TextDecoder().decode(r.stderr)}`);
      const last = stdout.trim().split("\n").at(-1) ?? "";
      const probe = JSON.parse(last) as CudaProbe;
      assert.equal(probe.usable, false);
      if (!probe.usable) assert.match(probe.reason, /--allow-ffi/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
