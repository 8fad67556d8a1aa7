/**
 * Zero-copy views of schema structs: per struct type one class whose prototype carries a
 * getter/setter per field, reading and writing the bytes through a DataView at a fixed offset.
 * Nested structs and arrays return child views (created on first access, then cached); arrays of
 * numeric scalars are typed arrays over the same bytes.
 *
 * @module
 */

import { ErrorCode, SchemaError, ValidationError } from "./errors.ts";
import type { ArrayType, FieldsSpec, InferFields, ScalarKind, StructType } from "./schema.ts";
import { READ, ValueIssue, WRITE } from "./schema_codec.ts";

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

type TypedArrayCtor = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => unknown;

// Typed arrays use the host's byte order; the layout is little-endian, so they are only used on
// little-endian hosts (all current ones) and accessor views everywhere else.
const TYPED: Partial<Record<ScalarKind, TypedArrayCtor>> = LITTLE_ENDIAN
  ? {
    u8: Uint8Array,
    i8: Int8Array,
    u16: Uint16Array,
    i16: Int16Array,
    u32: Uint32Array,
    i32: Int32Array,
    f32: Float32Array,
    f64: Float64Array,
    u64: BigUint64Array,
    i64: BigInt64Array,
  }
  : {};

type ViewFactory = (dv: DataView, off: number) => unknown;

class ViewBase {
  /** The DataView this view reads through. */
  readonly $dv: DataView;
  /** Offset of the viewed bytes inside `$dv`. */
  readonly $offset: number;
  /** Lazily created child views, by field or element index. */
  $children: unknown[] | undefined;

  constructor(dv: DataView, offset: number) {
    this.$dv = dv;
    this.$offset = offset;
  }

  child(i: number, make: ViewFactory, off: number): unknown {
    const c = (this.$children ??= []);
    return c[i] ?? (c[i] = make(this.$dv, this.$offset + off));
  }
}

class StructViewBase extends ViewBase {
  declare readonly $schema: StructType;

  $get(): unknown {
    return this.$schema.decode(this.$dv, this.$offset);
  }

  $set(value: unknown): void {
    // Through a fresh buffer so that a value that does not fit leaves the old bytes untouched.
    const bytes = this.$schema.encode(value as InferFields<FieldsSpec>);
    new Uint8Array(this.$dv.buffer, this.$dv.byteOffset + this.$offset, bytes.length).set(bytes);
  }
}

const viewClasses = new WeakMap<object, new (dv: DataView, off: number) => StructViewBase>();

/** A zero-copy view of the struct `s` at `off` of `dv` (bounds and alignment checked by caller). */
export function makeStructView(s: StructType, dv: DataView, off: number): unknown {
  return new (viewClassOf(s))(dv, off);
}

function viewClassOf(s: StructType): new (dv: DataView, off: number) => StructViewBase {
  let C = viewClasses.get(s);
  if (C !== undefined) return C;
  C = class extends StructViewBase {};
  Object.defineProperty(C.prototype, "$schema", { value: s });
  Object.defineProperty(C.prototype, Symbol.toStringTag, { value: `${s.name}View` });
  s.fields.forEach((f, index) => {
    const off = f.offset;
    const t = f.type;
    if (typeof t === "string") {
      const read = READ[t];
      const write = WRITE[t];
      Object.defineProperty(C.prototype, f.name, {
        enumerable: true,
        get(this: ViewBase) {
          return read(this.$dv, this.$offset + off);
        },
        set(this: ViewBase, v: unknown) {
          try {
            write(this.$dv, this.$offset + off, v);
          } catch (e) {
            if (!(e instanceof ValueIssue)) throw e;
            throw new SchemaError(ErrorCode.InvalidValue, `${s.name}.${f.name}: ${e.message}`);
          }
        },
      });
    } else {
      const make = viewFactoryOf(t);
      Object.defineProperty(C.prototype, f.name, {
        enumerable: true,
        get(this: ViewBase) {
          return this.child(index, make, off);
        },
      });
    }
  });
  viewClasses.set(s, C);
  return C;
}

const arrayViewClasses = new WeakMap<object, ViewFactory>();

function viewFactoryOf(t: StructType | ArrayType): ViewFactory {
  if (t.kind === "struct") {
    const C = viewClassOf(t);
    return (dv, off) => new C(dv, off);
  }
  let make = arrayViewClasses.get(t);
  if (make !== undefined) return make;
  const el = t.element;
  const typed = typeof el === "string" ? TYPED[el] : undefined;
  if (typed !== undefined) {
    make = (dv, off) => new typed(dv.buffer, dv.byteOffset + off, t.length);
  } else {
    make = elementsViewFactory(t);
  }
  arrayViewClasses.set(t, make);
  return make;
}

class ElementsBase extends ViewBase {
  declare readonly length: number;
  declare readonly $stride: number;

  /** Element `i`; implemented per array type. */
  get(_i: number): unknown {
    return undefined;
  }

  checkIndex(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.length) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `index ${i} is outside an array of length ${this.length}`,
      );
    }
  }

  *[Symbol.iterator](): Iterator<unknown> {
    for (let i = 0; i < this.length; i++) yield this.get(i);
  }
}

function elementsViewFactory(t: ArrayType): ViewFactory {
  const { length: n, stride } = t;
  const el = t.element;
  const C = class extends ElementsBase {};
  const proto = C.prototype;
  Object.defineProperty(proto, "length", { value: n });
  Object.defineProperty(proto, "$stride", { value: stride });
  if (typeof el === "string") {
    // Scalars without a typed array: bool everywhere, all of them on big-endian hosts.
    const read = READ[el];
    const write = WRITE[el];
    Object.defineProperty(proto, "get", {
      value(this: ElementsBase, i: number) {
        this.checkIndex(i);
        return read(this.$dv, this.$offset + i * stride);
      },
    });
    Object.defineProperty(proto, "set", {
      value(this: ElementsBase, i: number, v: unknown) {
        this.checkIndex(i);
        try {
          write(this.$dv, this.$offset + i * stride, v);
        } catch (e) {
          if (!(e instanceof ValueIssue)) throw e;
          throw new SchemaError(ErrorCode.InvalidValue, `[${i}]: ${e.message}`);
        }
      },
    });
    for (let i = 0; i < n; i++) {
      Object.defineProperty(proto, i, {
        enumerable: true,
        get(this: ElementsBase) {
          return this.get(i);
        },
        set(this: ElementsBase & { set(i: number, v: unknown): void }, v: unknown) {
          this.set(i, v);
        },
      });
    }
  } else {
    const make = viewFactoryOf(el as StructType | ArrayType);
    Object.defineProperty(proto, "get", {
      value(this: ElementsBase, i: number) {
        this.checkIndex(i);
        return this.child(i, make, i * stride);
      },
    });
    for (let i = 0; i < n; i++) {
      Object.defineProperty(proto, i, {
        enumerable: true,
        get(this: ElementsBase) {
          return this.get(i);
        },
      });
    }
  }
  return (dv, off) => new C(dv, off);
}
