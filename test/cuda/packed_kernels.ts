// Kernels of the packed-batch tests and benchmark (`KernelHandle.sendPacked`), one per path of the
// CUDA bulk loop (src/backends/cuda/persistent.ts):
// - `packedCounter`: 64-byte messages, state only reduced (+=, |=, ^=, &=): lane-parallel;
// - `packedSequencer`: reads its state and replies in order: handled one after another;
// - `packedDoubler`: no state, replies: lane-parallel with outputs.
import { array, defineMessage } from "../../src/core/schema.ts";
import { u32, u64 } from "../../src/dsl/intrinsics.ts";
import { defineKernel } from "../../src/runtime/kernel.ts";

/** Sixteen words: a 64-byte message. */
export const Words = defineMessage({
  typeId: 4301,
  name: "Words",
  fields: { words: array("u32", 16) },
});

/** Counts, sums and folds the words of every message; replies nothing. */
export const packedCounter = defineKernel({
  id: "packed-counter",
  module: import.meta.url,
  input: Words,
  state: { count: "u32", sum: "u32", bits: "u32", flips: "u32", mask: "u32", big: "u64" },
  initialState: { count: 0, sum: 0, bits: 0, flips: 0, mask: 0xffff_ffff, big: 0n },
  handler: (msg, state) => {
    let total = u32(0);
    for (let i = 0; i < 16; i++) total += msg.words[i];
    state.count += 1;
    state.sum += total;
    state.bits |= msg.words[0];
    state.flips ^= msg.words[1];
    state.mask &= msg.words[2];
    if (msg.words[3] % 2 === 1) state.big += u64(3);
  },
});

/** A numbered value (8 bytes: staged by words, not vectors). */
export const Numbered = defineMessage({
  typeId: 4302,
  name: "Numbered",
  fields: { seq: "u32", value: "u32" },
});

/** What the sequencer saw: the message's number, its count and the number before it. */
export const Sequenced = defineMessage({
  typeId: 4303,
  name: "Sequenced",
  fields: { seq: "u32", count: "u32", previous: "u32" },
});

/** Replies to each message with how many it saw and the number of the one before. */
export const packedSequencer = defineKernel({
  id: "packed-sequencer",
  module: import.meta.url,
  input: Numbered,
  output: Sequenced,
  state: { count: "u32", last: "u32" },
  handler: (msg, state) => {
    state.count += 1;
    const previous = state.last;
    state.last = msg.seq;
    return { seq: msg.seq, count: state.count, previous };
  },
});

/** A numbered value doubled. */
export const Doubled = defineMessage({
  typeId: 4304,
  name: "Doubled",
  fields: { seq: "u32", twice: "u32" },
});

/** Replies to each message with its value doubled; no state. */
export const packedDoubler = defineKernel({
  id: "packed-doubler",
  module: import.meta.url,
  input: Numbered,
  output: Doubled,
  handler: (msg) => {
    return { seq: msg.seq, twice: msg.value * 2 };
  },
});

/** `n` Words messages packed, word j of message i = f(i, j); `first` numbers them on. */
export function packWords(n: number, first = 0): Uint32Array {
  const out = new Uint32Array(n * 16);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 16; j++) out[i * 16 + j] = wordOf(first + i, j);
  }
  return out;
}

/**
 * Word `j` of message `i` of {@linkcode packWords}: 16 bits, so the JS reference (whose integer
 * state fields throw on overflow where CUDA wraps) can add thousands of them.
 */
export function wordOf(i: number, j: number): number {
  return ((Math.imul(i + 1, 0x9e37_79b1) ^ Math.imul(j + 7, 0x85eb_ca77)) >>> 13) & 0xffff;
}

/** The state `packedCounter` reaches from its initial state after messages 0..n-1. */
export function expectedCounter(n: number): {
  count: number;
  sum: number;
  bits: number;
  flips: number;
  mask: number;
  big: bigint;
} {
  let sum = 0;
  let bits = 0;
  let flips = 0;
  let mask = 0xffff_ffff;
  let big = 0n;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < 16; j++) sum = (sum + wordOf(i, j)) >>> 0;
    bits = (bits | wordOf(i, 0)) >>> 0;
    flips = (flips ^ wordOf(i, 1)) >>> 0;
    mask = (mask & wordOf(i, 2)) >>> 0;
    if (wordOf(i, 3) % 2 === 1) big += 3n;
  }
  return { count: n >>> 0, sum, bits, flips, mask, big };
}

/** `n` Numbered messages packed: seq = first + i, value = 3 * seq + 1. */
export function packNumbered(n: number, first = 0): Uint32Array {
  const out = new Uint32Array(n * 2);
  for (let i = 0; i < n; i++) {
    out[2 * i] = first + i;
    out[2 * i + 1] = 3 * (first + i) + 1;
  }
  return out;
}

/** `packedCounter`'s state. */
export interface CounterState {
  count: number;
  sum: number;
  bits: number;
  flips: number;
  mask: number;
  big: bigint;
}

/** `packedCounter`'s state after `words` (packed Words messages) from `s`, as CUDA computes it. */
export function foldCounter(s: CounterState, words: Uint32Array): CounterState {
  let { count, sum, bits, flips, mask, big } = s;
  let odd = 0;
  for (let i = 0; i < words.length; i += 16) {
    for (let j = 0; j < 16; j++) sum = (sum + words[i + j]) >>> 0;
    bits = (bits | words[i]) >>> 0;
    flips = (flips ^ words[i + 1]) >>> 0;
    mask = (mask & words[i + 2]) >>> 0;
    if (words[i + 3] % 2 === 1) odd++;
  }
  count = (count + words.length / 16) >>> 0;
  big = BigInt.asUintN(64, big + 3n * BigInt(odd));
  return { count, sum, bits, flips, mask, big };
}
