/**
 * The message envelope: a fixed 64-byte little-endian header followed by the payload, the unit
 * every queue slot, K2K channel and host↔GPU transfer carries. Byte offsets are documented in
 * docs/envelope.md and exported as {@linkcode EnvelopeOffset}; {@linkcode envelopeHeaderStruct}
 * gives the same header as a schema struct, hence as CUDA C and WGSL text.
 *
 * Decoding never trusts the bytes: every malformed input is a {@linkcode DecodeError} with a
 * stable code and the byte offset of the offending field, and nothing else is ever thrown.
 *
 * @example
 * ```ts
 * import { decodeEnvelope, defineMessage, encodeMessage, MessageRegistry } from "@ringkernel/core";
 * const Add = defineMessage({ typeId: 1, name: "Add", fields: { value: "f32" } });
 * const registry = new MessageRegistry([Add]);
 * const bytes = encodeMessage(Add.of({ value: 2 }), { messageId: 42n }, { checksum: true });
 * const { header, message } = decodeEnvelope(bytes, { registry, checksum: "required" });
 * console.log(header.messageId, message); // 42n { value: 2 }
 * ```
 * @module
 */

import { crc32cRange, crc32cZeros } from "./checksum.ts";
import { DecodeError, ErrorCode, SchemaError, ValidationError } from "./errors.ts";
import { HlcTimestamp } from "./hlc.ts";
import {
  type FieldsSpec,
  type InferFields,
  type Message,
  MessageSchema,
  struct,
  type StructType,
} from "./schema.ts";

/** The first four bytes of every envelope: "RKNL" read as a little-endian u32. */
export const ENVELOPE_MAGIC = 0x4c4e4b52;
/** The envelope format version this library writes and reads. */
export const ENVELOPE_VERSION = 1;
/** Bytes of the header; the payload starts here. 64 = one cache line, a multiple of every GPU
 * load width, and keeps an 8-aligned slot's payload 8-aligned for the schema's u64/f64 fields. */
export const ENVELOPE_HEADER_BYTES = 64;

/** Bits of the header's `flags` field. All other bits are reserved and must be zero. */
export const EnvelopeFlag = {
  /** The `checksum` field holds a CRC32C of header and payload. */
  HasChecksum: 1,
  /** The sender expects a reply carrying this `messageId` as `correlationId`. */
  Request: 2,
  /** This message answers the request named by `correlationId`. */
  Reply: 4,
  /** This reply reports an error instead of a result. */
  Error: 8,
} as const;

const KNOWN_FLAGS = 0xf;

/** Conventional priorities (the field takes 0..255; higher is more urgent). */
export const Priority = { Low: 0, Normal: 1, High: 2, Critical: 3 } as const;

/** Byte offset of every header field, and of the payload. */
export const EnvelopeOffset = {
  magic: 0,
  version: 4,
  flags: 6,
  typeId: 8,
  payloadLength: 12,
  messageId: 16,
  correlationId: 24,
  sourceKernel: 32,
  destKernel: 36,
  timestamp: 40,
  priority: 52,
  checksum: 56,
  reserved: 60,
  payload: 64,
} as const;

const O = EnvelopeOffset;

/**
 * The header as a schema struct (`RkEnvelopeHeader`), so GPU code gets the same layout as CUDA C
 * (`envelopeHeaderStruct.cStruct()`) and WGSL (`envelopeHeaderStruct.wgslStruct()`). The HLC
 * timestamp is its three u32 words: the packed word's low and high halves and the node id.
 */
export const envelopeHeaderStruct: StructType<{
  magic: "u32";
  version: "u16";
  flags: "u16";
  typeId: "u32";
  payloadLength: "u32";
  messageId: "u64";
  correlationId: "u64";
  sourceKernel: "u32";
  destKernel: "u32";
  timestampLo: "u32";
  timestampHi: "u32";
  timestampNode: "u32";
  priority: "u32";
  checksum: "u32";
  reserved: "u32";
}> = struct({
  magic: "u32",
  version: "u16",
  flags: "u16",
  typeId: "u32",
  payloadLength: "u32",
  messageId: "u64",
  correlationId: "u64",
  sourceKernel: "u32",
  destKernel: "u32",
  timestampLo: "u32",
  timestampHi: "u32",
  timestampNode: "u32",
  priority: "u32",
  checksum: "u32",
  reserved: "u32",
}, { name: "RkEnvelopeHeader" });

/** A decoded envelope header. */
export interface EnvelopeHeader {
  /** Format version (always {@linkcode ENVELOPE_VERSION} once decoded). */
  readonly version: number;
  /** {@linkcode EnvelopeFlag} bits. */
  readonly flags: number;
  /** Message type id (non-zero). */
  readonly typeId: number;
  /** Payload bytes after the header. */
  readonly payloadLength: number;
  /** Sender-assigned message id. */
  readonly messageId: bigint;
  /** For replies, the `messageId` of the request; 0n for none. */
  readonly correlationId: bigint;
  /** Numeric id of the sending kernel. */
  readonly sourceKernel: number;
  /** Numeric id of the destination kernel. */
  readonly destKernel: number;
  /** HLC timestamp of the send. */
  readonly timestamp: HlcTimestamp;
  /** 0..255, see {@linkcode Priority}. */
  readonly priority: number;
  /** The stored CRC32C, 0 when the envelope carries none. */
  readonly checksum: number;
}

/** What a sender fills in; the rest (magic, version, length, checksum) is computed. */
export interface EnvelopeInit {
  /** Message type id: a non-zero u32. */
  typeId: number;
  /** {@linkcode EnvelopeFlag} bits; `HasChecksum` here also turns the checksum on. Default 0. */
  flags?: number;
  /** u64 message id. Default 0n. */
  messageId?: bigint;
  /** u64 id of the request this replies to. Default 0n (none). */
  correlationId?: bigint;
  /** u32 sending kernel id. Default 0. */
  sourceKernel?: number;
  /** u32 destination kernel id. Default 0. */
  destKernel?: number;
  /** Send timestamp. Default the zero timestamp of node 0. */
  timestamp?: HlcTimestamp;
  /** 0..255. Default {@linkcode Priority.Normal}. */
  priority?: number;
}

/** Options of the envelope encoders. */
export interface EncodeEnvelopeOptions {
  /** Compute and store a CRC32C. Default: whether `flags` has `HasChecksum`. */
  checksum?: boolean;
}

/**
 * What a receiver does with checksums: `"required"` rejects envelopes without one, `"if-present"`
 * verifies the ones that have one, `"ignore"` verifies none.
 */
export type ChecksumPolicy = "required" | "if-present" | "ignore";

/** Options of {@linkcode decodeEnvelope}. */
export interface DecodeEnvelopeOptions {
  /** Resolves typeIds: unknown ones are rejected and known payloads decoded and checked. */
  registry?: MessageRegistry;
  /** Checksum policy. Default `"if-present"`. */
  checksum?: ChecksumPolicy;
}

/** The result of {@linkcode decodeEnvelope}. */
export interface DecodedEnvelope {
  /** The header fields. */
  readonly header: EnvelopeHeader;
  /** The payload: a subarray of the input (no copy). */
  readonly payload: Uint8Array;
  /** Bytes the envelope occupies: header plus payload (the input may be longer). */
  readonly byteLength: number;
  /** The schema of `typeId`, when a registry resolved it. */
  readonly schema?: MessageSchema;
  /** The decoded payload, when a registry resolved the type. */
  readonly message?: unknown;
}

/** The result of {@linkcode decodeMessage}. */
export interface DecodedMessage<F extends FieldsSpec = FieldsSpec> {
  /** The header fields. */
  readonly header: EnvelopeHeader;
  /** The payload's schema. */
  readonly schema: MessageSchema<F>;
  /** The decoded payload. */
  readonly value: InferFields<F>;
}

/** Bytes an envelope with `payloadLength` payload bytes occupies. */
export function envelopeSize(payloadLength: number): number {
  return ENVELOPE_HEADER_BYTES + payloadLength;
}

// ---------------------------------------------------------------------------------------------
// Registry

/**
 * Maps typeIds to message schemas, for decoding envelopes of several types.
 *
 * @example
 * ```ts
 * import { defineMessage, MessageRegistry } from "@ringkernel/core";
 * const Ping = defineMessage({ typeId: 10, fields: { seq: "u32" } });
 * const registry = new MessageRegistry([Ping]);
 * console.log(registry.get(10) === Ping); // true
 * ```
 */
export class MessageRegistry implements Iterable<MessageSchema> {
  #byId = new Map<number, MessageSchema>();

  /** Creates a registry holding `schemas` (same rules as {@linkcode register}). */
  constructor(schemas: Iterable<MessageSchema> = []) {
    for (const s of schemas) this.register(s);
  }

  /**
   * Adds `schema`. Registering the same schema object again is a no-op; a different schema with
   * a taken typeId throws {@linkcode SchemaError} with code `DuplicateType`.
   */
  register(schema: MessageSchema): this {
    if (!(schema instanceof MessageSchema)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        "register() takes a defineMessage() schema",
      );
    }
    const seen = this.#byId.get(schema.typeId);
    if (seen !== undefined && seen !== schema) {
      throw new SchemaError(
        ErrorCode.DuplicateType,
        `typeId ${schema.typeId} is already registered to ${seen.name}; cannot add ${schema.name}`,
      );
    }
    this.#byId.set(schema.typeId, schema);
    return this;
  }

  /** The schema of `typeId`, if registered. */
  get(typeId: number): MessageSchema | undefined {
    return this.#byId.get(typeId);
  }

  /** Whether `typeId` is registered. */
  has(typeId: number): boolean {
    return this.#byId.has(typeId);
  }

  /** Number of registered schemas. */
  get size(): number {
    return this.#byId.size;
  }

  /** The registered schemas, in registration order. */
  [Symbol.iterator](): Iterator<MessageSchema> {
    return this.#byId.values();
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

const ZERO_TS = HlcTimestamp.zero(0);
const U64_MAX = 0xffff_ffff_ffff_ffffn;

function badInit(message: string): never {
  throw new ValidationError(ErrorCode.InvalidArgument, `envelope ${message}`);
}

function u32Field(v: number | undefined, name: string): number {
  if (v === undefined) return 0;
  if (v >>> 0 !== v) badInit(`${name} must be a u32, got ${v}`);
  return v;
}

function u64Field(v: bigint | undefined, name: string): bigint {
  if (v === undefined) return 0n;
  if (typeof v !== "bigint" || v < 0n || v > U64_MAX) {
    badInit(`${name} must be a u64 bigint, got ${v}`);
  }
  return v;
}

/**
 * Writes the header (checksum field 0) at `o`; returns the flags written. Validates every field
 * before writing anything.
 */
function writeHeader(
  dv: DataView,
  o: number,
  typeId: number,
  init: Omit<EnvelopeInit, "typeId">,
  payloadLength: number,
  checksum: boolean | undefined,
): number {
  if (typeId >>> 0 !== typeId || typeId === 0) {
    badInit(`typeId must be a non-zero u32, got ${typeId}`);
  }
  let flags = init.flags ?? 0;
  if (!Number.isInteger(flags) || (flags & ~KNOWN_FLAGS) !== 0) {
    badInit(`flags ${flags} set reserved bits (known: 0x${KNOWN_FLAGS.toString(16)})`);
  }
  const withChecksum = checksum ?? (flags & EnvelopeFlag.HasChecksum) !== 0;
  flags = withChecksum ? flags | EnvelopeFlag.HasChecksum : flags & ~EnvelopeFlag.HasChecksum;
  const messageId = u64Field(init.messageId, "messageId");
  const correlationId = u64Field(init.correlationId, "correlationId");
  const source = u32Field(init.sourceKernel, "sourceKernel");
  const dest = u32Field(init.destKernel, "destKernel");
  const priority = init.priority ?? Priority.Normal;
  if ((priority & 0xff) !== priority) {
    badInit(`priority must be an integer 0..255, got ${priority}`);
  }
  const ts = init.timestamp ?? ZERO_TS;
  if (!(ts instanceof HlcTimestamp)) badInit("timestamp must be an HlcTimestamp");
  if (payloadLength >>> 0 !== payloadLength) {
    badInit(`payload of ${payloadLength} bytes is too long`);
  }

  dv.setUint32(o + O.magic, ENVELOPE_MAGIC, true);
  dv.setUint16(o + O.version, ENVELOPE_VERSION, true);
  dv.setUint16(o + O.flags, flags, true);
  dv.setUint32(o + O.typeId, typeId, true);
  dv.setUint32(o + O.payloadLength, payloadLength, true);
  dv.setBigUint64(o + O.messageId, messageId, true);
  dv.setBigUint64(o + O.correlationId, correlationId, true);
  dv.setUint32(o + O.sourceKernel, source, true);
  dv.setUint32(o + O.destKernel, dest, true);
  // HlcTimestamp.writeTo's layout (word lo, word hi, node id), without its [lo, hi] array.
  const physical = ts.physical;
  dv.setUint32(o + O.timestamp, ((physical % 0x10000) * 0x10000 + ts.logical) >>> 0, true);
  dv.setUint32(o + O.timestamp + 4, Math.floor(physical / 0x10000), true);
  dv.setUint32(o + O.timestamp + 8, ts.nodeId, true);
  dv.setUint32(o + O.priority, priority, true);
  dv.setUint32(o + O.checksum, 0, true);
  dv.setUint32(o + O.reserved, 0, true);
  return flags;
}

/** CRC32C over the header (checksum field as zero) and payload of the envelope at `o`. */
function envelopeCrc(bytes: Uint8Array, o: number, payloadLength: number): number {
  let crc = crc32cRange(bytes, o, o + O.checksum);
  crc = crc32cZeros(crc, 4);
  return crc32cRange(bytes, o + O.reserved, o + ENVELOPE_HEADER_BYTES + payloadLength, crc);
}

let lastBuffer: ArrayBufferLike | undefined;
let lastView: DataView | undefined;

/**
 * A DataView over the whole buffer behind `bytes` (offsets then add `bytes.byteOffset`). The last
 * one is reused: queues encode into and decode from one buffer over and over, and creating a
 * DataView costs about as much as reading a header. (It keeps that one buffer reachable.)
 */
function viewOver(bytes: Uint8Array): DataView {
  const buffer = bytes.buffer;
  if (buffer !== lastBuffer || lastView === undefined) {
    lastView = new DataView(buffer);
    lastBuffer = buffer;
  }
  return lastView;
}

function checkRoom(target: Uint8Array, offset: number, need: number): DataView {
  if (!(target instanceof Uint8Array)) {
    throw new ValidationError(ErrorCode.InvalidArgument, "envelope target must be a Uint8Array");
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + need > target.length) {
    throw new ValidationError(
      ErrorCode.MessageTooLarge,
      `envelope of ${need} bytes does not fit at offset ${offset} of ${target.length} bytes`,
    );
  }
  return viewOver(target);
}

/**
 * Writes an envelope (header + `payload`) into `target` at `offset` and returns the bytes written.
 * Throws {@linkcode ValidationError}: `MessageTooLarge` when it does not fit (nothing written),
 * `InvalidArgument` for a header field out of range.
 */
export function writeEnvelope(
  target: Uint8Array,
  offset: number,
  init: EnvelopeInit,
  payload: Uint8Array,
  options: EncodeEnvelopeOptions = {},
): number {
  const n = payload.length;
  const dv = checkRoom(target, offset, ENVELOPE_HEADER_BYTES + n);
  const flags = writeHeader(dv, target.byteOffset + offset, init.typeId, init, n, options.checksum);
  target.set(payload, offset + ENVELOPE_HEADER_BYTES);
  if (flags & EnvelopeFlag.HasChecksum) {
    dv.setUint32(target.byteOffset + offset + O.checksum, envelopeCrc(target, offset, n), true);
  }
  return ENVELOPE_HEADER_BYTES + n;
}

/** Encodes an envelope (header + `payload`) into a new buffer. See {@linkcode writeEnvelope}. */
export function encodeEnvelope(
  init: EnvelopeInit,
  payload: Uint8Array,
  options: EncodeEnvelopeOptions = {},
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + payload.length);
  writeEnvelope(out, 0, init, payload, options);
  return out;
}

/**
 * Writes `message` (its schema's typeId, the payload encoded in place) as an envelope into
 * `target` at `offset`; returns the bytes written. This is the send path of queues: no
 * intermediate payload buffer. Throws as {@linkcode writeEnvelope}, and {@linkcode SchemaError}
 * when the value does not fit its schema.
 */
export function writeMessage<F extends FieldsSpec>(
  target: Uint8Array,
  offset: number,
  message: Message<F>,
  init: Omit<EnvelopeInit, "typeId"> = {},
  options: EncodeEnvelopeOptions = {},
): number {
  const schema = message.schema;
  if (!(schema instanceof MessageSchema)) {
    throw new ValidationError(ErrorCode.InvalidArgument, "message.schema is not a message schema");
  }
  const n = schema.size;
  const dv = checkRoom(target, offset, ENVELOPE_HEADER_BYTES + n);
  const o = target.byteOffset + offset;
  const flags = writeHeader(dv, o, schema.typeId, init, n, options.checksum);
  schema.encodeInto(message.value, dv, o + ENVELOPE_HEADER_BYTES);
  if (flags & EnvelopeFlag.HasChecksum) {
    dv.setUint32(target.byteOffset + offset + O.checksum, envelopeCrc(target, offset, n), true);
  }
  return ENVELOPE_HEADER_BYTES + n;
}

/** Encodes `message` as an envelope into a new buffer. See {@linkcode writeMessage}. */
export function encodeMessage<F extends FieldsSpec>(
  message: Message<F>,
  init: Omit<EnvelopeInit, "typeId"> = {},
  options: EncodeEnvelopeOptions = {},
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(ENVELOPE_HEADER_BYTES + message.schema.size);
  writeMessage(out, 0, message, init, options);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

function fail(code: ErrorCode, offset: number, message: string): never {
  throw new DecodeError(code, offset, message);
}

/**
 * Validates the header (and checksum) of the envelope at the start of `bytes`, read through `dv`
 * (a view over the whole buffer) at `b = bytes.byteOffset`. Offsets in errors count from `bytes`.
 */
function decodeHeader(
  bytes: Uint8Array,
  dv: DataView,
  b: number,
  policy: ChecksumPolicy,
): EnvelopeHeader {
  const n = bytes.length;
  const magic = dv.getUint32(b + O.magic, true);
  if (magic !== ENVELOPE_MAGIC) {
    fail(ErrorCode.DecodeBadMagic, O.magic, `bad magic 0x${magic.toString(16)}`);
  }
  const version = dv.getUint16(b + O.version, true);
  if (version !== ENVELOPE_VERSION) {
    fail(ErrorCode.DecodeBadVersion, O.version, `version ${version} is not ${ENVELOPE_VERSION}`);
  }
  const flags = dv.getUint16(b + O.flags, true);
  if (flags & ~KNOWN_FLAGS) {
    fail(ErrorCode.DecodeReserved, O.flags, `reserved flag bits set in 0x${flags.toString(16)}`);
  }
  if (dv.getUint32(b + O.reserved, true) !== 0) {
    fail(ErrorCode.DecodeReserved, O.reserved, "reserved word is not 0");
  }
  const payloadLength = dv.getUint32(b + O.payloadLength, true);
  if (payloadLength > n - ENVELOPE_HEADER_BYTES) {
    fail(
      ErrorCode.DecodePayloadLength,
      O.payloadLength,
      `payload length ${payloadLength} runs past the end of ${n} bytes`,
    );
  }
  const checksum = dv.getUint32(b + O.checksum, true);
  if (flags & EnvelopeFlag.HasChecksum) {
    if (policy !== "ignore" && envelopeCrc(bytes, 0, payloadLength) !== checksum) {
      fail(ErrorCode.DecodeChecksum, O.checksum, "checksum mismatch");
    }
  } else {
    // A stale value here would otherwise pass unnoticed and not survive a re-encode.
    if (checksum !== 0) {
      fail(ErrorCode.DecodeReserved, O.checksum, "checksum field set without HasChecksum");
    }
    if (policy === "required") {
      fail(ErrorCode.DecodeChecksumMissing, O.flags, "checksum required but absent");
    }
  }
  const typeId = dv.getUint32(b + O.typeId, true);
  if (typeId === 0) fail(ErrorCode.DecodeUnknownType, O.typeId, "typeId 0 names no message type");
  const priority = dv.getUint32(b + O.priority, true);
  if (priority > 0xff) {
    fail(ErrorCode.DecodeInvalidValue, O.priority, `priority ${priority} exceeds 255`);
  }
  const lo = dv.getUint32(b + O.timestamp, true);
  const hi = dv.getUint32(b + O.timestamp + 4, true);
  return {
    version,
    flags,
    typeId,
    payloadLength,
    messageId: dv.getBigUint64(b + O.messageId, true),
    correlationId: dv.getBigUint64(b + O.correlationId, true),
    sourceKernel: dv.getUint32(b + O.sourceKernel, true),
    destKernel: dv.getUint32(b + O.destKernel, true),
    // Every (lo, hi) pair is a valid 64-bit packed word: 48 physical + 16 logical bits.
    timestamp: HlcTimestamp.fromWords(lo, hi, dv.getUint32(b + O.timestamp + 8, true)),
    priority,
    checksum,
  };
}

/** Checks arguments and length; returns the DataView over the buffer behind `bytes`. */
function openEnvelope(bytes: Uint8Array, policy: ChecksumPolicy): DataView {
  if (!(bytes instanceof Uint8Array)) {
    throw new ValidationError(ErrorCode.InvalidArgument, "decodeEnvelope takes a Uint8Array");
  }
  if (policy !== "if-present" && policy !== "required" && policy !== "ignore") {
    throw new ValidationError(ErrorCode.InvalidArgument, `unknown checksum policy ${policy}`);
  }
  const n = bytes.length;
  if (n < ENVELOPE_HEADER_BYTES) {
    fail(
      ErrorCode.DecodeTruncated,
      n,
      `an envelope needs ${ENVELOPE_HEADER_BYTES} header bytes, got ${n}`,
    );
  }
  return viewOver(bytes);
}

/** Decodes the payload of `schema` after checking its length; error offsets count from `bytes`. */
function decodePayload(
  schema: MessageSchema,
  header: EnvelopeHeader,
  dv: DataView,
  b: number,
): unknown {
  if (header.payloadLength !== schema.size) {
    fail(
      ErrorCode.DecodePayloadLength,
      O.payloadLength,
      `payload length ${header.payloadLength} is not ${schema.name}'s size ${schema.size}`,
    );
  }
  try {
    return schema.decode(dv, b + ENVELOPE_HEADER_BYTES);
  } catch (e) {
    // The view spans the whole buffer; report the offset from the start of the envelope.
    if (e instanceof DecodeError && b !== 0) {
      throw new DecodeError(e.code, e.offset - b, e.message.replace(/ \(at byte \d+\)$/, ""));
    }
    throw e;
  }
}

/** The result of a decode; the payload subarray is made only when asked for. */
class Decoded implements DecodedEnvelope {
  readonly header: EnvelopeHeader;
  readonly byteLength: number;
  readonly schema?: MessageSchema;
  readonly message?: unknown;
  #bytes: Uint8Array;
  #payload: Uint8Array | undefined;

  constructor(
    bytes: Uint8Array,
    header: EnvelopeHeader,
    schema: MessageSchema | undefined,
    message: unknown,
  ) {
    this.#bytes = bytes;
    this.header = header;
    this.byteLength = ENVELOPE_HEADER_BYTES + header.payloadLength;
    this.schema = schema;
    this.message = message;
  }

  get payload(): Uint8Array {
    return (this.#payload ??= this.#bytes.subarray(ENVELOPE_HEADER_BYTES, this.byteLength));
  }
}

/**
 * Decodes and validates the envelope at the start of `bytes` (trailing bytes, such as the rest of
 * a queue slot, are ignored). Throws only {@linkcode DecodeError} for malformed bytes, with the
 * byte offset (from the start of `bytes`) of the offending field: `DecodeTruncated` (offset =
 * length), `DecodeBadMagic` @0, `DecodeBadVersion` @4, `DecodeReserved` @6 / @56 / @60,
 * `DecodePayloadLength` @12, `DecodeChecksum` @56, `DecodeChecksumMissing` @6,
 * `DecodeUnknownType` @8, `DecodeInvalidValue` @52 (priority) / at a payload bool byte.
 * (`ValidationError` only for a non-Uint8Array argument or an unknown policy.)
 */
export function decodeEnvelope(
  bytes: Uint8Array,
  options: DecodeEnvelopeOptions = {},
): DecodedEnvelope {
  const policy = options.checksum ?? "if-present";
  const dv = openEnvelope(bytes, policy);
  const b = bytes.byteOffset;
  const header = decodeHeader(bytes, dv, b, policy);
  const registry = options.registry;
  if (registry === undefined) return new Decoded(bytes, header, undefined, undefined);
  const schema = registry.get(header.typeId);
  if (schema === undefined) {
    fail(ErrorCode.DecodeUnknownType, O.typeId, `typeId ${header.typeId} is not registered`);
  }
  return new Decoded(bytes, header, schema, decodePayload(schema, header, dv, b));
}

/**
 * Decodes an envelope that must carry `schema`'s type (or any type of `registry`), with the same
 * checks as {@linkcode decodeEnvelope}; another typeId is `DecodeUnknownType` @8.
 */
export function decodeMessage<F extends FieldsSpec>(
  bytes: Uint8Array,
  schema: MessageSchema<F>,
  options?: { checksum?: ChecksumPolicy },
): DecodedMessage<F>;
/** Decodes an envelope of any type registered in `registry`. */
export function decodeMessage(
  bytes: Uint8Array,
  registry: MessageRegistry,
  options?: { checksum?: ChecksumPolicy },
): DecodedMessage;
export function decodeMessage(
  bytes: Uint8Array,
  schemaOrRegistry: MessageSchema | MessageRegistry,
  options: { checksum?: ChecksumPolicy } = {},
): DecodedMessage {
  const policy = options.checksum ?? "if-present";
  const dv = openEnvelope(bytes, policy);
  const b = bytes.byteOffset;
  const header = decodeHeader(bytes, dv, b, policy);
  const schema = schemaOrRegistry instanceof MessageRegistry
    ? schemaOrRegistry.get(header.typeId)
    : schemaOrRegistry.typeId === header.typeId
    ? schemaOrRegistry
    : undefined;
  if (schema === undefined) {
    fail(ErrorCode.DecodeUnknownType, O.typeId, `typeId ${header.typeId} is not the expected type`);
  }
  return { header, schema, value: decodePayload(schema, header, dv, b) as InferFields<FieldsSpec> };
}
