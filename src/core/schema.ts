/**
 * Message schemas: one declaration gives the TypeScript type, a fixed byte layout, encode and
 * decode, a zero-copy view over bytes, and the CUDA C and WGSL struct text of the same layout.
 *
 * Layout rule (so one buffer serves JS, CUDA C and WGSL, see docs/schemas.md): WGSL's storage
 * layout. u32/i32/f32 take 4 bytes aligned to 4; u64/i64/f64 take 8 aligned to 8; u8/i8/bool take
 * 1 byte and u16/i16 2, at their natural alignment; an array's stride is its element's size
 * rounded up to the element's alignment; a struct is aligned to the largest alignment of its
 * members but at least 4, and its size is rounded up to that alignment. All little-endian.
 *
 * @example
 * ```ts
 * import { array, defineMessage, type Infer, struct } from "@ringkernel/core";
 * const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
 * const Sample = defineMessage({
 *   typeId: 7,
 *   name: "Sample",
 *   fields: { id: "u64", pos: Vec3, hist: array("u32", 4), ok: "bool", level: "u8" },
 * });
 * type SampleT = Infer<typeof Sample>; // { id: bigint; pos: { x: number; ... }; ... }
 * const value: SampleT = { id: 1n, pos: { x: 1, y: 2, z: 3 }, hist: [1, 2, 3, 4], ok: true, level: 3 };
 * const bytes = Sample.encode(value);
 * const view = Sample.view(bytes.buffer); // getters and setters straight on the bytes
 * view.pos.x = 5;
 * console.log(Sample.decode(bytes).pos.x, Sample.size, Sample.wgslStruct());
 * ```
 * @module
 */

import { DecodeError, ErrorCode, SchemaError, ValidationError } from "./errors.ts";
import { type Codec, codecOf, toDataView } from "./schema_codec.ts";
import { checkIdentifier, cStructs, signature, wgslStructs } from "./schema_codegen.ts";
import { makeStructView } from "./schema_view.ts";

// ---------------------------------------------------------------------------------------------
// Types

/** Names of the scalar field types. 64-bit integers are `bigint` in TS; `bool` is one byte 0/1. */
export type ScalarKind =
  | "u8"
  | "i8"
  | "u16"
  | "i16"
  | "u32"
  | "i32"
  | "f32"
  | "f64"
  | "u64"
  | "i64"
  | "bool";

/** Byte size (equal to its alignment) of each scalar type. */
export const SCALAR_SIZE: Readonly<Record<ScalarKind, 1 | 2 | 4 | 8>> = Object.freeze({
  u8: 1,
  i8: 1,
  bool: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  f64: 8,
  u64: 8,
  i64: 8,
});

/** Every scalar kind, in a stable order. */
export const SCALAR_KINDS: readonly ScalarKind[] = Object.freeze(
  Object.keys(SCALAR_SIZE) as ScalarKind[],
);

/** A field type: a scalar name, an {@linkcode ArrayType} or a {@linkcode StructType}. */
export type FieldSpec = ScalarKind | ArrayType<FieldSpec> | StructType<FieldsSpec>;

/** The fields of a struct, in declaration order (which is layout order). */
export type FieldsSpec = { readonly [name: string]: FieldSpec };

/** The TypeScript value type of a field type or schema. */
export type Infer<T> = T extends "u64" | "i64" ? bigint
  : T extends "bool" ? boolean
  : T extends ScalarKind ? number
  : T extends ArrayType<infer E> ? Infer<E>[]
  : T extends StructType<infer F> ? InferFields<F>
  : never;

/** The TypeScript value type of a struct's fields. */
export type InferFields<F extends FieldsSpec> = { -readonly [K in keyof F]: Infer<F[K]> };

/** One member of a struct as laid out. */
export interface FieldLayout {
  /** Field name. */
  readonly name: string;
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Bytes the field occupies (for arrays: stride × length). */
  readonly size: number;
  /** Alignment of the field in bytes. */
  readonly align: number;
  /** The field's type. */
  readonly type: FieldSpec;
}

/** One scalar of a struct after flattening nested structs and arrays. */
export interface LeafLayout {
  /** Access path, for example `pos.x` or `items[2].flags[1]`. */
  readonly path: string;
  /** Byte offset from the start of the outermost struct. */
  readonly offset: number;
  /** Scalar type. */
  readonly kind: ScalarKind;
  /** Bytes (1, 2, 4 or 8). */
  readonly size: number;
}

/** Size, alignment, members and flattened scalars of a struct. */
export interface StructLayout {
  /** Struct name used in generated C and WGSL. */
  readonly name: string;
  /** Total size in bytes, a multiple of `align`. */
  readonly size: number;
  /** Alignment in bytes (4 or 8). */
  readonly align: number;
  /** Direct members in offset order. */
  readonly fields: readonly FieldLayout[];
  /** Every scalar, nested structs and arrays flattened, in offset order. */
  readonly leaves: readonly LeafLayout[];
}

/** Bytes a schema can be read from or written to. */
export type ByteSource = Uint8Array | DataView | ArrayBuffer | SharedArrayBuffer;

// ---------------------------------------------------------------------------------------------
// Views (types)

/** Members every struct view has besides its fields; their names start with `$`, which no field
 * name can. */
export interface ViewMeta<F extends FieldsSpec> {
  /** The struct type the view reads. */
  readonly $schema: StructType<F>;
  /** The DataView the view reads through (spanning the region given to `view()`). */
  readonly $dv: DataView;
  /** Byte offset of the struct inside `$dv`. */
  readonly $offset: number;
  /** Decodes the whole struct (a copy). */
  $get(): InferFields<F>;
  /** Encodes `value` over the whole struct, padding zeroed. */
  $set(value: InferFields<F>): void;
}

/**
 * A zero-copy view of a struct: scalar fields are getter/setter properties on the bytes; struct
 * and array fields return nested views.
 */
export type StructView<F extends FieldsSpec> = string extends keyof F
  // The general StructType<FieldsSpec> has no known fields; keeping only the meta members lets
  // every concrete StructType<F> be assigned to it.
  ? ViewMeta<F>
  :
    & { -readonly [K in keyof F as F[K] extends ScalarKind ? K : never]: Infer<F[K]> }
    & { readonly [K in keyof F as F[K] extends ScalarKind ? never : K]: ViewOf<F[K]> }
    & ViewMeta<F>;

/** An indexable view of array elements that are themselves views (structs or arrays). */
export interface ElementsView<V> extends Iterable<V> {
  /** Number of elements. */
  readonly length: number;
  /** Element `i` (also `view[i]`). */
  get(i: number): V;
  /** Element views by index. */
  readonly [index: number]: V;
}

/** An indexable, writable view of a `bool` array (one byte 0/1 per element). */
export interface BoolArrayView extends Iterable<boolean> {
  /** Number of elements. */
  readonly length: number;
  /** Element `i`; a byte other than 0/1 throws {@linkcode DecodeError}. */
  get(i: number): boolean;
  /** Sets element `i`. */
  set(i: number, value: boolean): void;
  /** Elements by index. */
  [index: number]: boolean;
}

/** The view type of an array: a typed array for numeric scalars (same bytes, no copy). */
export type ArrayView<E> = E extends "u8" ? Uint8Array
  : E extends "i8" ? Int8Array
  : E extends "u16" ? Uint16Array
  : E extends "i16" ? Int16Array
  : E extends "u32" ? Uint32Array
  : E extends "i32" ? Int32Array
  : E extends "f32" ? Float32Array
  : E extends "f64" ? Float64Array
  : E extends "u64" ? BigUint64Array
  : E extends "i64" ? BigInt64Array
  : E extends "bool" ? BoolArrayView
  : E extends StructType<infer F> ? ElementsView<StructView<F>>
  : E extends ArrayType<infer E2> ? ElementsView<ArrayView<E2>>
  : never;

/** The view type of a struct or array type. */
export type ViewOf<T> = T extends StructType<infer F> ? StructView<F>
  : T extends ArrayType<infer E> ? ArrayView<E>
  : never;

// ---------------------------------------------------------------------------------------------
// Layout helpers

function roundUp(align: number, n: number): number {
  return Math.ceil(n / align) * align;
}

function isScalarKind(t: unknown): t is ScalarKind {
  return typeof t === "string" && Object.hasOwn(SCALAR_SIZE, t);
}

/** Size in bytes of a field type. */
export function sizeOf(t: FieldSpec): number {
  return typeof t === "string" ? SCALAR_SIZE[t] : t.size;
}

/** Alignment in bytes of a field type. */
export function alignOf(t: FieldSpec): number {
  return typeof t === "string" ? SCALAR_SIZE[t] : t.align;
}

function checkSpec(t: unknown, what: string): asserts t is FieldSpec {
  if (isScalarKind(t) || t instanceof ArrayType || t instanceof StructType) return;
  throw new SchemaError(
    ErrorCode.InvalidSchema,
    `${what}: ${JSON.stringify(t) ?? String(t)} is not a field type (one of ` +
      `${SCALAR_KINDS.join(", ")}, an array() or a struct())`,
  );
}

const MAX_SIZE = 2 ** 30;

function checkSize(size: number, what: string): void {
  if (size > MAX_SIZE) {
    throw new SchemaError(ErrorCode.InvalidSchema, `${what} would take ${size} bytes (max 2^30)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Array type

/** A fixed-length array field type; create with {@linkcode array}. */
export class ArrayType<E extends FieldSpec = FieldSpec> {
  /** Discriminant. */
  readonly kind = "array" as const;
  /** Element type. */
  readonly element: E;
  /** Number of elements. */
  readonly length: number;
  /** Bytes from one element to the next: element size rounded up to element alignment. */
  readonly stride: number;
  /** Total bytes: stride × length. */
  readonly size: number;
  /** Alignment: the element's. */
  readonly align: number;

  /** Prefer {@linkcode array}. */
  constructor(element: E, length: number) {
    checkSpec(element, "array element");
    if (!Number.isInteger(length) || length < 1 || length > MAX_SIZE) {
      throw new SchemaError(
        ErrorCode.InvalidSchema,
        `array length must be an integer from 1 to 2^30, got ${length}`,
      );
    }
    this.element = element;
    this.length = length;
    this.align = alignOf(element);
    this.stride = roundUp(this.align, sizeOf(element));
    this.size = this.stride * length;
    checkSize(this.size, "array");
    Object.freeze(this);
  }
}

/**
 * A fixed-length array field type.
 *
 * @param element element type: a scalar name, a struct, or another array
 * @param length number of elements (≥ 1)
 */
export function array<const E extends FieldSpec>(element: E, length: number): ArrayType<E> {
  return new ArrayType(element, length);
}

// ---------------------------------------------------------------------------------------------
// Struct type

/** Options of {@linkcode struct}. */
export interface StructOptions {
  /** Name in generated C and WGSL. Default: `S_` and a hash of the layout. */
  name?: string;
}

const SCRATCH_BYTES = 4096;
const scratch = new Uint8Array(SCRATCH_BYTES);
const scratchView = new DataView(scratch.buffer);
let scratchBusy = false;

function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

/**
 * A struct field type (and the base of message schemas): layout, encode/decode, views and
 * generated GPU structs. Create with {@linkcode struct} or {@linkcode defineMessage}.
 */
export class StructType<F extends FieldsSpec = FieldsSpec> {
  /** Discriminant. */
  readonly kind = "struct" as const;
  /** Name in generated C and WGSL. */
  readonly name: string;
  /** The declaration this struct was built from. */
  readonly spec: F;
  /** Direct members in offset order. */
  readonly fields: readonly FieldLayout[];
  /** Total size in bytes, a multiple of `align`. */
  readonly size: number;
  /** Alignment in bytes: the largest member alignment, at least 4. */
  readonly align: number;
  #leaves: readonly LeafLayout[] | undefined;
  // Cached here rather than looked up per call: encode/decode sit on every message's path.
  #codec: Codec | undefined;

  /** Prefer {@linkcode struct}. */
  constructor(fields: F, options: StructOptions = {}) {
    if (typeof fields !== "object" || fields === null || Array.isArray(fields)) {
      throw new SchemaError(ErrorCode.InvalidSchema, "struct fields must be an object");
    }
    const names = Object.keys(fields);
    if (names.length === 0) {
      throw new SchemaError(
        ErrorCode.InvalidSchema,
        "a struct needs at least one field (C and WGSL have no empty structs)",
      );
    }
    const layout: FieldLayout[] = [];
    let end = 0;
    let align = 4;
    for (const name of names) {
      checkIdentifier(name, `field "${name}"${options.name ? ` of ${options.name}` : ""}`);
      const type = fields[name];
      checkSpec(type, `field "${name}"`);
      const a = alignOf(type);
      const offset = roundUp(a, end);
      const size = sizeOf(type);
      layout.push(Object.freeze({ name, offset, size, align: a, type }));
      end = offset + size;
      align = Math.max(align, a);
    }
    this.align = align;
    this.size = roundUp(align, end);
    checkSize(this.size, "struct");
    this.fields = Object.freeze(layout);
    this.spec = fields;
    const sig = layout.map((f) => `${f.name}:${signature(f.type)}`).join(",");
    this.name = options.name ?? `S_${fnv1a(sig)}`;
    checkIdentifier(this.name, "struct name");
  }

  /** Every scalar, nested structs and arrays flattened, in offset order (computed once). */
  get leaves(): readonly LeafLayout[] {
    if (this.#leaves === undefined) {
      const out: LeafLayout[] = [];
      const walk = (t: FieldSpec, path: string, offset: number): void => {
        if (typeof t === "string") {
          out.push(Object.freeze({ path, offset, kind: t, size: SCALAR_SIZE[t] }));
        } else if (t instanceof ArrayType) {
          for (let i = 0; i < t.length; i++) {
            walk(t.element, `${path}[${i}]`, offset + i * t.stride);
          }
        } else {
          for (const f of t.fields) {
            walk(f.type, path ? `${path}.${f.name}` : f.name, offset + f.offset);
          }
        }
      };
      walk(this as StructType, "", 0);
      this.#leaves = Object.freeze(out);
    }
    return this.#leaves;
  }

  /** Size, alignment, members and flattened scalars. */
  get layout(): StructLayout {
    const { name, size, align, fields, leaves } = this;
    return { name, size, align, fields, leaves };
  }

  /**
   * Encodes `value` into a new zeroed buffer of exactly {@linkcode size} bytes.
   * Throws {@linkcode SchemaError} (`InvalidValue`, naming the field path) for a value that does
   * not fit: out of range, not an integer, the wrong JS type, a missing field, a wrong length.
   */
  encode(value: InferFields<F>): Uint8Array<ArrayBuffer> {
    const codec = (this.#codec ??= codecOf(this));
    const size = this.size;
    if (size > SCRATCH_BYTES || scratchBusy) {
      const buf = new ArrayBuffer(size);
      codec.write(new DataView(buf), 0, value);
      return new Uint8Array(buf);
    }
    // Encoding into a reused scratch and slicing allocates one small array instead of a buffer,
    // a view and an array (5x faster under Bun). The flag covers re-entry from a value's getter.
    scratchBusy = true;
    try {
      codec.write(scratchView, 0, value);
    } finally {
      scratchBusy = false;
    }
    return scratch.slice(0, size);
  }

  /**
   * Encodes `value` into `target` at `offset` (padding bytes zeroed) and returns the bytes
   * written ({@linkcode size}). Throws {@linkcode ValidationError} (`InvalidLayout`) when the
   * target is too small (nothing is written), {@linkcode SchemaError} as {@linkcode encode} does
   * when the value does not fit (the target range may then be partly written: this is the hot
   * path of every send, so it writes in place rather than through a scratch copy).
   */
  encodeInto(value: InferFields<F>, target: ByteSource, offset = 0): number {
    const dv = toDataView(target);
    if (!Number.isInteger(offset) || offset < 0 || offset + this.size > dv.byteLength) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `${this.name} needs ${this.size} bytes at offset ${offset} of a ${dv.byteLength}-byte target`,
      );
    }
    (this.#codec ??= codecOf(this)).write(dv, offset, value);
    return this.size;
  }

  /**
   * Decodes a value from `bytes` at `offset` (a copy; see {@linkcode view} for none).
   * Throws {@linkcode DecodeError}: `DecodeTruncated` (offset = the buffer length) when the
   * bytes end early, `DecodeInvalidValue` (offset of the byte) for a bool byte other than 0/1.
   * Offsets are counted from the start of `bytes`. Padding bytes are not inspected.
   */
  decode(bytes: ByteSource, offset = 0): InferFields<F> {
    const dv = toDataView(bytes);
    if (!Number.isInteger(offset) || offset < 0 || offset + this.size > dv.byteLength) {
      throw new DecodeError(
        ErrorCode.DecodeTruncated,
        dv.byteLength,
        `${this.name} needs ${this.size} bytes at offset ${offset}`,
      );
    }
    return (this.#codec ??= codecOf(this)).read(dv, offset) as InferFields<F>;
  }

  /**
   * A zero-copy view of the struct at `byteOffset` of `buffer`: reading a field reads the bytes,
   * assigning a scalar field writes them (range-checked like {@linkcode encode}). Array fields of
   * numeric scalars are typed arrays over the same bytes. The absolute address must be aligned to
   * {@linkcode align} (typed arrays require it), otherwise {@linkcode ValidationError}
   * (`InvalidLayout`), as for a region too small.
   */
  view(buffer: ByteSource, byteOffset = 0): StructView<F> {
    const dv = toDataView(buffer);
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset + this.size > dv.byteLength) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `${this.name} needs ${this.size} bytes at offset ${byteOffset} of a ${dv.byteLength}-byte region`,
      );
    }
    if ((dv.byteOffset + byteOffset) % this.align !== 0) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `${this.name} views need ${this.align}-byte alignment; byte ${
          dv.byteOffset + byteOffset
        } of the buffer is not`,
      );
    }
    return makeStructView(this, dv, byteOffset) as StructView<F>;
  }

  /**
   * CUDA C++ text: this struct and the structs it contains, dependencies first, with explicit
   * padding, `alignas` and `static_assert`s on size, alignment and offsets. Needs
   * {@linkcode C_PRELUDE} (stdint types, offsetof) before it.
   */
  cStruct(): string {
    return cStructs([this as StructType]);
  }

  /**
   * WGSL text: this struct and the structs it contains, dependencies first, plus
   * `<Name>_get_<field>` / `<Name>_with_<field>` functions for the sub-word fields.
   */
  wgslStruct(): string {
    return wgslStructs([this as StructType]);
  }
}

/**
 * Declares a struct field type.
 *
 * @param fields field names (identifiers valid in TS, C++ and WGSL) to types, in layout order
 * @param options `name` used in generated C and WGSL
 * @example
 * ```ts
 * import { struct } from "@ringkernel/core";
 * const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
 * console.log(Vec3.size, Vec3.align); // 12 4
 * ```
 */
export function struct<const F extends FieldsSpec>(
  fields: F,
  options?: StructOptions,
): StructType<F> {
  return new StructType(fields, options);
}

// ---------------------------------------------------------------------------------------------
// Messages

/** A message value paired with its schema, ready to send (`k.request(Add.of({ value: 2 }))`). */
export interface Message<F extends FieldsSpec = FieldsSpec> {
  /** The message's schema (which carries its typeId). */
  readonly schema: MessageSchema<F>;
  /** The payload value. */
  readonly value: InferFields<F>;
}

/** What {@linkcode defineMessage} takes. */
export interface MessageDefinition<F extends FieldsSpec> {
  /** Wire type id: a non-zero u32, unique within a registry. */
  typeId: number;
  /** Name in generated C and WGSL. Default `Msg<typeId>`. */
  name?: string;
  /** Fields, in layout order. */
  fields: F;
}

/** A struct with a wire type id: the payload schema of one message type. */
export class MessageSchema<F extends FieldsSpec = FieldsSpec> extends StructType<F> {
  /** Wire type id (non-zero u32). */
  readonly typeId: number;

  /** Prefer {@linkcode defineMessage}. */
  constructor(def: MessageDefinition<F>) {
    const { typeId } = def;
    if (!Number.isInteger(typeId) || typeId < 1 || typeId > 0xffff_ffff) {
      throw new SchemaError(
        ErrorCode.InvalidSchema,
        `typeId must be an integer from 1 to 2^32-1, got ${typeId}`,
      );
    }
    super(def.fields, { name: def.name ?? `Msg${typeId}` });
    this.typeId = typeId;
  }

  /** Pairs `value` with this schema, for sending. Values are checked when encoded. */
  of(value: InferFields<F>): Message<F> {
    return { schema: this, value };
  }
}

/**
 * Declares a message type: a struct plus its wire `typeId`.
 *
 * @example
 * ```ts
 * import { defineMessage, type Infer } from "@ringkernel/core";
 * const Add = defineMessage({ typeId: 1, name: "Add", fields: { value: "f32" } });
 * type AddT = Infer<typeof Add>; // { value: number }
 * const msg = Add.of({ value: 2 });
 * console.log(Add.decode(Add.encode(msg.value)).value); // 2
 * ```
 */
export function defineMessage<const F extends FieldsSpec>(
  def: MessageDefinition<F>,
): MessageSchema<F> {
  return new MessageSchema(def);
}
