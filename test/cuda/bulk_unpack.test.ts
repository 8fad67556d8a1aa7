// A packed batch's descriptor returned unhandled (its kernel ended first) comes back as the
// messages it stands for, read from the bulk channel's staging, from where the kernel got to.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeBulkDescriptor, unpackBatch } from "../../src/backends/cuda/bulk_channel.ts";
import { decodeEnvelope, encodeEnvelope } from "../../src/core/envelope.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { BULK_BATCH_TYPE_ID } from "../../src/runtime/kernel_memory.ts";

const TYPE = 4302;
const STRIDE = 8;

/** A channel holding batch `seq` of `count` messages whose bytes are `seq * 1000 + i`. */
function channel(seq: number, count: number) {
  const message = (i: number) => {
    const m = new Uint8Array(STRIDE);
    new DataView(m.buffer).setUint32(0, seq * 1000 + i, true);
    return m;
  };
  return {
    staged: (s: number, from: number) =>
      s !== seq
        ? undefined
        : Array.from({ length: Math.max(0, count - from) }, (_, j) => message(from + j)),
  };
}

function descriptor(seq: number, count: number): Uint8Array {
  const payload = encodeBulkDescriptor({
    address: 0x7000_0000n,
    fence: 0x7100_0000n,
    count,
    stride: STRIDE,
    typeId: TYPE,
    seq,
  });
  return encodeEnvelope({
    typeId: BULK_BATCH_TYPE_ID,
    destKernel: 9,
    timestamp: new HlcTimestamp(77, 1, 5),
  }, payload);
}

const valueOf = (e: Uint8Array): number => {
  const { header, payload } = decodeEnvelope(e);
  assert.equal(header.typeId, TYPE);
  assert.equal(header.destKernel, 9);
  assert.equal(header.timestamp.physical, 77, "the descriptor's timestamp");
  return new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
};

describe("unpackBatch", () => {
  it("gives the messages from where the kernel got to in that batch, else all of them", () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 50 }),
      fc.integer({ min: 0, max: 60 }),
      fc.boolean(),
      (count, pos, inThisBatch) => {
        const src = {
          channel: channel(3, count),
          numericId: 9,
          progress: () => ({ seq: inThisBatch ? 3 : 2, pos }),
        };
        const out = unpackBatch(descriptor(3, count), src)!;
        const from = inThisBatch ? Math.min(pos, count) : 0;
        assert.deepEqual(
          out.map(valueOf),
          Array.from({ length: count - from }, (_, j) => 3000 + from + j),
        );
      },
    ));
  });

  it("leaves other envelopes, and batches no longer in the channel, as they are", () => {
    const src = { channel: channel(3, 4), numericId: 9, progress: () => ({ seq: 0, pos: 0 }) };
    const plain = encodeEnvelope({ typeId: TYPE, destKernel: 9 }, new Uint8Array(STRIDE));
    assert.equal(unpackBatch(plain, src), undefined);
    assert.equal(unpackBatch(descriptor(4, 4), src), undefined);
    // Malformed bytes (too short, or a descriptor's typeId with a bad header) never throw.
    assert.equal(unpackBatch(new Uint8Array(10), src), undefined);
    const bad = descriptor(3, 4);
    bad[0] ^= 0xff; // the magic
    assert.equal(unpackBatch(bad, src), undefined);
  });
});
