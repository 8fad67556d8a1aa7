/**
 * CUDA C and WGSL text for message schemas, and the identifier rules that keep every schema name
 * emittable in TypeScript, C++ (CUDA) and WGSL.
 *
 * Both emitters reproduce the byte layout computed by `schema.ts` exactly, so one buffer serves
 * JS, a CUDA kernel and a WGSL shader. The C text pins the layout with explicit padding members,
 * `alignas` and `static_assert`s; the WGSL text relies on WGSL's own storage layout rules (which
 * the schema layout follows) and packs the sub-word fields, which WGSL cannot declare, into `u32`
 * words read and written through generated accessor functions. See docs/schemas.md.
 *
 * @module
 */

import { ErrorCode, SchemaError } from "./errors.ts";
import type { ArrayType, FieldLayout, FieldSpec, ScalarKind, StructType } from "./schema.ts";

// ---------------------------------------------------------------------------------------------
// Identifier rules

const C_RESERVED = `alignas alignof and and_eq asm auto bitand bitor bool break case catch char
char8_t char16_t char32_t class compl concept const consteval constexpr constinit const_cast
continue co_await co_return co_yield decltype default delete do double dynamic_cast else enum
explicit export extern false float for friend goto if inline int long mutable namespace new
noexcept not not_eq nullptr operator or or_eq private protected public register reinterpret_cast
requires restrict return short signed sizeof static static_assert static_cast struct switch
template this thread_local throw true try typedef typeid typename union unsigned using virtual
void volatile wchar_t while xor xor_eq NULL offsetof assert size_t ptrdiff_t int8_t int16_t
int32_t int64_t uint8_t uint16_t uint32_t uint64_t intptr_t uintptr_t`;

// WGSL keywords, reserved words (WGSL spec §15.3/15.4) and the predeclared names the generated
// code itself uses, which a struct or field of the same name would shadow.
const WGSL_RESERVED = `alias break case const const_assert continue continuing default diagnostic
discard else enable false fn for if let loop override requires return struct switch true var while
NULL Self abstract active alignas alignof as asm asm_fragment async attribute auto await become
binding_array cast catch class co_await co_return co_yield coherent column_major common compile
compile_fragment concept const_cast consteval constexpr constinit crate debugger decltype delete
demote demote_to_helper do dynamic_cast enum explicit export extends extern external fallthrough
filter final finally friend from fxgroup get goto groupshared highp impl implements import inline
instanceof interface layout lowp macro macro_rules match mediump meta mod module move mut mutable
namespace new nil noexcept noinline nointerpolation non_coherent noncoherent noperspective null
nullptr of operator package packoffset partition pass patch pixelfragment precise precision
premerge priv protected pub public readonly ref regardless register reinterpret_cast require
resource restrict self set shared sizeof smooth snorm static static_assert static_cast std
subroutine super target template this thread_local throw trait try type typedef typeid typename
typeof union unless unorm unsafe unsized use using varying virtual volatile wgsl where with
writeonly yield bool f16 f32 i32 u32 vec2 vec3 vec4 mat2x2 mat3x3 mat4x4 array atomic ptr
sampler texture_2d bitcast select extractBits insertBits min max`;

// Names that would break JS objects holding decoded values or views (`then` makes a decoded value
// look like a promise to `await`; the others shadow Object.prototype members).
const JS_RESERVED = `constructor prototype toString toLocaleString valueOf hasOwnProperty
isPrototypeOf propertyIsEnumerable then toJSON`;

const RESERVED: ReadonlyMap<string, string> = new Map([
  ...JS_RESERVED.split(/\s+/).map((w) => [w, "JavaScript objects"] as const),
  ...WGSL_RESERVED.split(/\s+/).map((w) => [w, "WGSL"] as const),
  ...C_RESERVED.split(/\s+/).map((w) => [w, "C++/CUDA"] as const),
]);

const IDENT = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/**
 * Throws a {@linkcode SchemaError} (code `InvalidSchema`) unless `name` is usable as a field or
 * struct name in TypeScript, CUDA C++ and WGSL alike: an ASCII letter then letters, digits or
 * `_` (at most 64 characters), no `__` (reserved in C++ and WGSL), and not a reserved word or
 * predeclared name of any of the three.
 *
 * @param name the identifier to check
 * @param what what it names, for the message (for example `field "pos" of struct Sample`)
 */
export function checkIdentifier(name: unknown, what: string): void {
  if (typeof name !== "string" || !IDENT.test(name) || name.includes("__")) {
    throw new SchemaError(
      ErrorCode.InvalidSchema,
      `${what}: ${JSON.stringify(name)} is not a valid identifier (an ASCII letter, then up to ` +
        `63 letters, digits or single underscores)`,
    );
  }
  const lang = RESERVED.get(name);
  if (lang !== undefined) {
    throw new SchemaError(
      ErrorCode.InvalidSchema,
      `${what}: "${name}" is reserved or predeclared in ${lang}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Shared walking

function isStruct(t: FieldSpec): t is StructType {
  return typeof t === "object" && t.kind === "struct";
}

function isArray(t: FieldSpec): t is ArrayType {
  return typeof t === "object" && t.kind === "array";
}

/** Array dimensions outermost first, strides, and the innermost element type. */
function arrayShape(t: ArrayType): { dims: number[]; strides: number[]; inner: FieldSpec } {
  const dims: number[] = [];
  const strides: number[] = [];
  let cur: FieldSpec = t;
  while (isArray(cur)) {
    dims.push(cur.length);
    strides.push(cur.stride);
    cur = cur.element;
  }
  return { dims, strides, inner: cur };
}

/** Structural signature, used to tell a harmless repeat of a struct name from a clash. */
export function signature(t: FieldSpec): string {
  if (typeof t === "string") return t;
  if (isArray(t)) return `[${t.length}]${signature(t.element)}`;
  return `${t.name}{${t.fields.map((f) => `${f.name}:${signature(f.type)}`).join(",")}}`;
}

/** Every struct reachable from `roots`, dependencies before dependents, each name once. */
function collectStructs(roots: readonly StructType[]): StructType[] {
  const out: StructType[] = [];
  const byName = new Map<string, StructType>();
  const visit = (t: FieldSpec): void => {
    if (typeof t === "string") return;
    if (isArray(t)) return visit(t.element);
    const seen = byName.get(t.name);
    if (seen !== undefined) {
      if (seen !== t && signature(seen) !== signature(t)) {
        throw new SchemaError(
          ErrorCode.InvalidSchema,
          `two different structs are named "${t.name}"; give one of them another name`,
        );
      }
      return;
    }
    for (const f of t.fields) visit(f.type);
    byName.set(t.name, t);
    out.push(t);
  };
  for (const r of roots) visit(r);
  return out;
}

// ---------------------------------------------------------------------------------------------
// CUDA C

const C_TYPE: Record<ScalarKind, string> = {
  u8: "uint8_t",
  i8: "int8_t",
  u16: "uint16_t",
  i16: "int16_t",
  u32: "uint32_t",
  i32: "int32_t",
  f32: "float",
  f64: "double",
  u64: "uint64_t",
  i64: "int64_t",
  // A byte rather than C++ `bool`: a kernel reading a byte other than 0/1 through `bool` is
  // undefined behaviour, through uint8_t it is just a value to check.
  bool: "uint8_t",
};

/**
 * What the emitted C text needs before it: fixed-width integer types, `offsetof`, and
 * `static_assert`. Under NVRTC (`__CUDACC_RTC__`), which has no standard headers, the types are
 * declared directly and the offset asserts are left out (see {@linkcode cStaticAsserts}).
 */
export const C_PRELUDE: string = `#if defined(__CUDACC_RTC__)
typedef unsigned char uint8_t;
typedef signed char int8_t;
typedef unsigned short uint16_t;
typedef short int16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;
#else
#include <stdint.h>
#include <stddef.h>
#endif
`;

function cDeclarator(t: FieldSpec, name: string): string {
  if (typeof t === "string") return `${C_TYPE[t]} ${name}`;
  if (isStruct(t)) return `${t.name} ${name}`;
  const { dims, inner } = arrayShape(t);
  const base = typeof inner === "string" ? C_TYPE[inner] : (inner as StructType).name;
  return `${base} ${name}${dims.map((d) => `[${d}]`).join("")}`;
}

/** `u8`, `Vec3`, or an array as C declares it, outermost length first: `u8[2][3]`. */
function describeType(t: FieldSpec): string {
  if (typeof t === "string") return t;
  if (isStruct(t)) return t.name;
  const { dims, inner } = arrayShape(t);
  return `${describeType(inner)}${dims.map((d) => `[${d}]`).join("")}`;
}

function cOne(s: StructType): string {
  const lines: string[] = [
    `// ${s.name}: ${s.size} bytes, align ${s.align}. Generated by @ringkernel/core; ` +
    `layout in docs/schemas.md.`,
    `#ifndef RK_STRUCT_${s.name}`,
    `#define RK_STRUCT_${s.name}`,
    `struct alignas(${s.align}) ${s.name} {`,
  ];
  let at = 0;
  const pad = (to: number): void => {
    if (to > at) lines.push(`  uint8_t _pad${at}[${to - at}];`);
    at = to;
  };
  for (const f of s.fields) {
    pad(f.offset);
    const note = f.type === "bool" ? " (bool: 0 or 1)" : "";
    lines.push(`  ${cDeclarator(f.type, f.name)}; // @${f.offset} ${describeType(f.type)}${note}`);
    at = f.offset + f.size;
  }
  pad(s.size);
  lines.push("};", "#endif");
  // Outside the include guard on purpose: a second, different struct of the same name from
  // another generated unit then fails these checks instead of silently taking the first layout.
  lines.push(...cStaticAsserts(s));
  return lines.join("\n") + "\n";
}

/**
 * `static_assert`s pinning `sizeof`, `alignof` and the `offsetof` of every member of `s` to the
 * schema layout (included in the output of {@linkcode cStructs}).
 */
export function cStaticAsserts(s: StructType): string[] {
  const out = [
    `static_assert(sizeof(${s.name}) == ${s.size}, "${s.name}: size");`,
    `static_assert(alignof(${s.name}) == ${s.align}, "${s.name}: align");`,
  ];
  // NVRTC 13 rejects offsetof of a type (no __builtin_offsetof in its JIT front end; measured on
  // the H100, 2026-11-24), so member offsets are asserted where nvcc or a host compiler reads the
  // text — the test suite compiles every emitted struct with nvcc — and sizes everywhere.
  out.push("#if !defined(__CUDACC_RTC__)");
  for (const f of s.fields) {
    out.push(
      `static_assert(offsetof(${s.name}, ${f.name}) == ${f.offset}, "${s.name}.${f.name}: offset");`,
    );
  }
  out.push("#endif");
  return out;
}

/**
 * CUDA C++ definitions of `roots` and every struct they contain, dependencies first, each once,
 * with `static_assert`s on size, alignment and every member offset. Prepend
 * {@linkcode C_PRELUDE} (once) when compiling.
 *
 * @example
 * ```ts
 * import { C_PRELUDE, cStructs, struct } from "@ringkernel/core";
 * const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
 * const source = C_PRELUDE + cStructs([Vec3]); // feed to nvcc or NVRTC
 * ```
 */
export function cStructs(roots: readonly StructType[]): string {
  return collectStructs(roots).map(cOne).join("\n");
}

// ---------------------------------------------------------------------------------------------
// WGSL

const WGSL_TYPE: Partial<Record<ScalarKind, string>> = {
  u32: "u32",
  i32: "i32",
  f32: "f32",
  f64: "vec2<u32>",
  u64: "vec2<u32>",
  i64: "vec2<u32>",
};

const WGSL_NOTE: Partial<Record<ScalarKind, string>> = {
  f64: "f64 bits, x = low word (WGSL has no f64: it can only move these bits)",
  u64: "u64, x = low word, y = high word",
  i64: "i64 two's complement, x = low word, y = high word",
};

function wgslType(t: FieldSpec): string {
  if (typeof t === "string") {
    const w = WGSL_TYPE[t];
    if (w === undefined) throw new Error(`unreachable: sub-word ${t} outside a word run`);
    return w;
  }
  if (isStruct(t)) return t.name;
  return `array<${wgslType(t.element)}, ${t.length}>`;
}

function innerScalar(t: FieldSpec): ScalarKind | undefined {
  let cur = t;
  while (isArray(cur)) cur = cur.element;
  return typeof cur === "string" ? cur : undefined;
}

interface Run {
  start: number;
  words: number;
  fields: FieldLayout[];
}

/** Groups the words of `s` that hold only sub-word fields into maximal runs. */
function wordRuns(s: StructType): Run[] {
  const runOfWord = new Array<Run | undefined>(s.size / 4);
  const runs: Run[] = [];
  for (const f of s.fields) {
    if (f.align >= 4) continue;
    const first = f.offset >> 2;
    const last = (f.offset + f.size - 1) >> 2;
    let run = runOfWord[first] ?? (first > 0 ? runOfWord[first - 1] : undefined);
    if (run === undefined) {
      run = { start: first * 4, words: 0, fields: [] };
      runs.push(run);
    }
    run.fields.push(f);
    for (let w = first; w <= last; w++) runOfWord[w] = run;
    run.words = Math.max(run.words, last + 1 - run.start / 4);
  }
  return runs;
}

const ACCESSOR_TYPE: Partial<Record<ScalarKind, string>> = {
  u8: "u32",
  u16: "u32",
  i8: "i32",
  i16: "i32",
  bool: "bool",
};

function wgslAccessors(s: StructType, run: Run, f: FieldLayout): string[] {
  const kind = innerScalar(f.type) as ScalarKind;
  const ret = ACCESSOR_TYPE[kind] as string;
  const width = kind === "u16" || kind === "i16" ? 16 : 8;
  const member = `_w${run.start}`;
  const word = (v: string, index: string): string =>
    run.words === 1 ? `${v}.${member}` : `${v}.${member}[${index}]`;
  const extract = (w: string, shift: string): string => {
    if (kind === "bool") return `extractBits(${w}, ${shift}, 8u) != 0u`;
    if (kind === "i8" || kind === "i16") {
      return `extractBits(bitcast<i32>(${w}), ${shift}, ${width}u)`;
    }
    return `extractBits(${w}, ${shift}, ${width}u)`;
  };
  const bits = kind === "bool"
    ? "select(0u, 1u, x)"
    : kind === "i8" || kind === "i16"
    ? "bitcast<u32>(x)"
    : "x";
  const get = `${s.name}_get_${f.name}`;
  const set = `${s.name}_with_${f.name}`;
  const rel = f.offset - run.start;
  if (typeof f.type === "string") {
    const shift = `${(f.offset % 4) * 8}u`;
    const w = word("v", `${rel >> 2}`);
    const r = word("r", `${rel >> 2}`);
    return [
      `fn ${get}(v: ${s.name}) -> ${ret} { return ${extract(w, shift)}; }`,
      `fn ${set}(v: ${s.name}, x: ${ret}) -> ${s.name} {`,
      `  var r = v;`,
      `  ${r} = insertBits(${r}, ${bits}, ${shift}, ${width}u);`,
      `  return r;`,
      `}`,
    ];
  }
  const { dims, strides } = arrayShape(f.type as ArrayType);
  const params = dims.map((_, i) => `i${i}: u32`).join(", ");
  const byte = [`${rel}u`, ...dims.map((d, i) => `min(i${i}, ${d - 1}u) * ${strides[i]}u`)]
    .join(" + ");
  const getBody = run.words === 1
    ? [`  return ${extract(`v.${member}`, "(b % 4u) * 8u")};`]
    : [`  var w = v.${member};`, `  return ${extract("w[b / 4u]", "(b % 4u) * 8u")};`];
  const r = word("r", "b / 4u");
  return [
    `fn ${get}(v: ${s.name}, ${params}) -> ${ret} {`,
    `  let b = ${byte};`,
    ...getBody,
    `}`,
    `fn ${set}(v: ${s.name}, ${params}, x: ${ret}) -> ${s.name} {`,
    `  let b = ${byte};`,
    `  var r = v;`,
    `  ${r} = insertBits(${r}, ${bits}, (b % 4u) * 8u, ${width}u);`,
    `  return r;`,
    `}`,
  ];
}

function wgslOne(s: StructType): string {
  const runs = wordRuns(s);
  const members: { offset: number; text: string }[] = [];
  for (const f of s.fields) {
    if (f.align < 4) continue;
    const note = typeof f.type === "string" ? WGSL_NOTE[f.type] : undefined;
    members.push({
      offset: f.offset,
      text: `  ${f.name}: ${wgslType(f.type)}, // @${f.offset}${note ? ` ${note}` : ""}`,
    });
  }
  for (const run of runs) {
    const type = run.words === 1 ? "u32" : `array<u32, ${run.words}>`;
    const held = run.fields.map((f) => `${f.name} ${describeType(f.type)} @${f.offset}`);
    members.push({
      offset: run.start,
      text: `  _w${run.start}: ${type}, // @${run.start} packs ${held.join(", ")}`,
    });
  }
  members.sort((a, b) => a.offset - b.offset);
  const lines = [
    `// ${s.name}: ${s.size} bytes, align ${s.align} (storage layout). Generated by ` +
    `@ringkernel/core; sub-word fields via ${s.name}_get_<field> / ${s.name}_with_<field>.`,
    `struct ${s.name} {`,
    ...members.map((m) => m.text),
    `}`,
  ];
  for (const run of runs) {
    for (const f of run.fields) lines.push(...wgslAccessors(s, run, f));
  }
  return lines.join("\n") + "\n";
}

/**
 * WGSL declarations of `roots` and every struct they contain, dependencies first, each once.
 * Layout is WGSL's storage (host-shareable) layout, identical to the schema's byte layout.
 * Sub-word fields (u8, i8, u16, i16, bool and arrays of them) live in `u32` members named
 * `_w<byteOffset>` and are read with `<Struct>_get_<field>(v[, i0, ...])` and written with
 * `v = <Struct>_with_<field>(v[, i0, ...], x)`. 64-bit fields are `vec2<u32>` (x = low word).
 *
 * @example
 * ```ts
 * import { struct, wgslStructs } from "@ringkernel/core";
 * const P = struct({ id: "u32", ok: "bool" }, { name: "P" });
 * const wgsl = wgslStructs([P]); // "struct P { id: u32, _w4: u32, } fn P_get_ok(v: P) -> bool ..."
 * ```
 */
export function wgslStructs(roots: readonly StructType[]): string {
  return collectStructs(roots).map(wgslOne).join("\n");
}
