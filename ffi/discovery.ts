/**
 * Finding libcuda and libnvrtc. The order, first hit wins:
 *
 * 1. the explicit path given in the options;
 * 2. the environment variable `RINGKERNEL_LIBCUDA` / `RINGKERNEL_LIBNVRTC`;
 * 3. bare sonames through the dynamic loader's own search path (`LD_LIBRARY_PATH`, the ld.so
 *    cache): `libcuda.so.1`, `libcuda.so`; `libnvrtc.so.13`, `libnvrtc.so.12`,
 *    `libnvrtc.so.11.2`, `libnvrtc.so`;
 * 4. `$CUDA_HOME` then `$CUDA_PATH`: `lib64`, `targets/<arch>-linux/lib`, `lib`;
 * 5. common install paths: `/usr/local/cuda` (same subfolders), every `/usr/local/cuda-<version>`
 *    newest first, `/usr/lib/<multiarch>`, `/usr/lib64`, `/usr/lib/wsl/lib`, `/usr/lib`.
 *
 * An explicit path or environment variable pins the choice: when it does not load, the search
 * stops there (with a {@linkcode NoCudaError} naming it) instead of quietly using some other
 * library. The toolkit's `lib64/stubs` folder is never searched: its libcuda is a link-time stub.
 *
 * @module
 */

import process from "node:process";
import { existsSync, readdirSync } from "node:fs";
import { NoCudaError } from "../src/core/errors.ts";
import { type ForeignLibrary, openLibrary, type SymbolTable } from "./dlopen.ts";

/** The libraries this module finds. */
export type CudaLibraryKind = "libcuda" | "libnvrtc";

/** Where a candidate came from. */
export type CandidateSource = "option" | "env" | "loader" | "CUDA_HOME" | "CUDA_PATH" | "common";

/** One place to try. */
export interface LibraryCandidate {
  /** An absolute path, or a bare soname for the loader to search. */
  readonly path: string;
  /** Which step of the search order produced it. */
  readonly source: CandidateSource;
}

/** Options of {@linkcode libraryCandidates} and {@linkcode findLibrary}. */
export interface DiscoveryOptions {
  /** An explicit path (or soname); pins the choice. */
  readonly path?: string;
  /** The environment to read; `process.env` by default. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Folders that hold `cuda-<version>` installs; `["/usr/local"]` by default. */
  readonly installRoots?: readonly string[];
  /** Folders of the driver and system libraries; the platform's usual ones by default. */
  readonly systemDirs?: readonly string[];
}

/** The environment variable that pins each library. */
export const LIBRARY_ENV: Readonly<Record<CudaLibraryKind, string>> = {
  libcuda: "RINGKERNEL_LIBCUDA",
  libnvrtc: "RINGKERNEL_LIBNVRTC",
};

/** The sonames tried for each library, preferred first. */
export const LIBRARY_SONAMES: Readonly<Record<CudaLibraryKind, readonly string[]>> = {
  libcuda: ["libcuda.so.1", "libcuda.so"],
  libnvrtc: ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
};

const CUDA_TARGET = process.arch === "arm64" ? "sbsa-linux" : "x86_64-linux";
const MULTIARCH = process.arch === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
const DEFAULT_SYSTEM_DIRS = [`/usr/lib/${MULTIARCH}`, "/usr/lib64", "/usr/lib/wsl/lib", "/usr/lib"];

interface DenoPermissionQuery {
  querySync?(descriptor: { name: "env"; variable: string }): { state: string };
}

/**
 * The environment variable `name`, or undefined when it is unset or empty, or when this process
 * may not read it: Deno without env permission for it. The permission is queried first, so the
 * read never prompts (an interactive Deno would otherwise ask on the terminal). `env`: read that
 * record instead of the process's environment.
 */
export function envVar(
  name: string,
  env?: Readonly<Record<string, string | undefined>>,
): string | undefined {
  try {
    if (env === undefined) {
      const permissions = (globalThis as { Deno?: { permissions?: DenoPermissionQuery } }).Deno
        ?.permissions;
      const state = permissions?.querySync?.({ name: "env", variable: name }).state;
      if (state !== undefined && state !== "granted") return undefined;
    }
    const value = (env ?? process.env)[name];
    return value === undefined || value === "" ? undefined : value;
  } catch {
    return undefined;
  }
}

function readEnv(options: DiscoveryOptions, name: string): string | undefined {
  return envVar(name, options.env);
}

function toolkitDirs(home: string): string[] {
  const h = home.replace(/\/+$/, "");
  return [`${h}/lib64`, `${h}/targets/${CUDA_TARGET}/lib`, `${h}/lib`];
}

/** `cuda-13.0`, `cuda-12` ... under `root`, newest version first. */
function versionedInstalls(root: string): string[] {
  let names: string[];
  try {
    names = readdirSync(root).filter((n) => /^cuda-\d+(\.\d+)*$/.test(n));
  } catch {
    return [];
  }
  const version = (n: string) => n.slice(5).split(".").map(Number);
  names.sort((a, b) => {
    const va = version(a);
    const vb = version(b);
    for (let i = 0; i < Math.max(va.length, vb.length); i++) {
      const d = (vb[i] ?? -1) - (va[i] ?? -1);
      if (d !== 0) return d;
    }
    return 0;
  });
  return names.map((n) => `${root.replace(/\/+$/, "")}/${n}`);
}

/**
 * Every candidate for `kind`, in search order, without loading anything. When an explicit path
 * or the environment variable is set, only those are returned (they pin the choice).
 */
export function libraryCandidates(
  kind: CudaLibraryKind,
  options: DiscoveryOptions = {},
): LibraryCandidate[] {
  const pinned: LibraryCandidate[] = [];
  if (options.path !== undefined && options.path !== "") {
    pinned.push({ path: options.path, source: "option" });
  }
  const fromEnv = readEnv(options, LIBRARY_ENV[kind]);
  if (fromEnv !== undefined) pinned.push({ path: fromEnv, source: "env" });
  if (pinned.length > 0) return pinned;

  const names = LIBRARY_SONAMES[kind];
  const out: LibraryCandidate[] = names.map((path) => ({ path, source: "loader" as const }));
  const inDirs = (dirs: readonly string[], source: CandidateSource) => {
    for (const dir of dirs) for (const n of names) out.push({ path: `${dir}/${n}`, source });
  };
  for (const name of ["CUDA_HOME", "CUDA_PATH"] as const) {
    const home = readEnv(options, name);
    if (home !== undefined) inDirs(toolkitDirs(home), name);
  }
  const installs = ["/usr/local/cuda"];
  for (const root of options.installRoots ?? ["/usr/local"]) {
    installs.push(...versionedInstalls(root));
  }
  inDirs(installs.flatMap(toolkitDirs), "common");
  inDirs(options.systemDirs ?? DEFAULT_SYSTEM_DIRS, "common");

  const seen = new Set<string>();
  return out.filter((c) => (seen.has(c.path) ? false : (seen.add(c.path), true)));
}

/** A library that loaded, with where it came from and what was tried before it. */
export interface FoundLibrary<S extends SymbolTable> {
  /** The opened library. */
  readonly library: ForeignLibrary<S>;
  /** The candidate that loaded. */
  readonly candidate: LibraryCandidate;
  /** Earlier candidates with why each failed, in the form used by {@linkcode NoCudaError}. */
  readonly tried: readonly string[];
}

/** Options of {@linkcode findLibrary}. */
export interface FindLibraryOptions<S extends SymbolTable> extends DiscoveryOptions {
  /**
   * Called on each library that opened; returns why it is not acceptable (for example a stub
   * libcuda whose cuInit answers CUDA_ERROR_STUB_LIBRARY) or `undefined` to take it. A rejected
   * library is closed and the search goes on.
   */
  readonly accept?: (library: ForeignLibrary<S>) => string | undefined;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  // Deno repeats its prefix ("Could not open library: Could not open library: ...").
  return msg.split("\n")[0].trim().replace(/^(.+?: )\1+/, "$1");
}

interface Attempt {
  readonly candidate: LibraryCandidate;
  readonly reason: string;
}

/**
 * One line per attempt, except that consecutive files of one folder missing for the same reason
 * share a line (`/usr/local/cuda/lib64/{libnvrtc.so.13,libnvrtc.so.12} (common): no such file`).
 */
function describeAttempts(attempts: readonly Attempt[]): string[] {
  const lines: string[] = [];
  for (let i = 0; i < attempts.length;) {
    const { candidate, reason } = attempts[i];
    const slash = candidate.path.lastIndexOf("/");
    const dir = slash > 0 ? candidate.path.slice(0, slash) : "";
    let j = i + 1;
    while (
      dir !== "" && j < attempts.length && attempts[j].reason === reason &&
      attempts[j].candidate.source === candidate.source &&
      attempts[j].candidate.path.lastIndexOf("/") === slash &&
      attempts[j].candidate.path.startsWith(`${dir}/`)
    ) j++;
    const names = attempts.slice(i, j).map((a) => a.candidate.path.slice(slash + 1));
    const path = names.length === 1 ? candidate.path : `${dir}/{${names.join(",")}}`;
    lines.push(`${path} (${candidate.source}): ${reason}`);
    i = j;
  }
  return lines;
}

/**
 * Opens the first candidate of {@linkcode libraryCandidates} that loads with every required
 * symbol of `symbols` (and passes `accept`). Throws {@linkcode NoCudaError} listing every
 * attempt with why it failed when none does.
 */
export function findLibrary<const S extends SymbolTable>(
  kind: CudaLibraryKind,
  symbols: S,
  options: FindLibraryOptions<S> = {},
): FoundLibrary<S> {
  const attempts: Attempt[] = [];
  const missingDirs = new Set<string>();
  for (const candidate of libraryCandidates(kind, options)) {
    const fail = (reason: string) => attempts.push({ candidate, reason });
    if (candidate.path.includes("/")) {
      const dir = candidate.path.slice(0, candidate.path.lastIndexOf("/")) || "/";
      // One line per absent folder keeps the error readable; the files in it are implied.
      if (candidate.source !== "option" && candidate.source !== "env") {
        if (missingDirs.has(dir)) continue;
        if (!existsSync(dir)) {
          missingDirs.add(dir);
          attempts.push({
            candidate: { path: `${dir}/`, source: candidate.source },
            reason: "no such directory",
          });
          continue;
        }
      }
      if (!existsSync(candidate.path)) {
        fail("no such file");
        continue;
      }
    }
    let library: ForeignLibrary<S>;
    try {
      library = openLibrary(candidate.path, symbols);
    } catch (err) {
      fail(firstLine(err));
      continue;
    }
    const rejected = options.accept?.(library);
    if (rejected !== undefined) {
      library.close();
      fail(rejected);
      continue;
    }
    return { library, candidate, tried: describeAttempts(attempts) };
  }
  const tried = describeAttempts(attempts);
  if (tried.length === 0) tried.push("(no candidates)");
  throw new NoCudaError(kind, tried);
}
