/**
 * Plain-JavaScript versions of the WebAssembly SIMD core's kernels (`wasm/src/lib.rs`): the test
 * oracle and the benchmark baseline. They are written the way a JS author would write the loop,
 * except that the element-wise kernels apply `Math.fround` where the wasm code rounds to f32, so
 * that their results agree with the SIMD core bit for bit (JS arithmetic is f64; an f32 add, sub
 * or mul of f32 inputs evaluated in f64 and rounded once gives the correctly rounded f32 result,
 * because 53 ≥ 2·24 + 2 makes the double rounding innocuous).
 *
 * The reductions (`dotJs`, `sumJs`) accumulate in f64 in index order — the natural JS loop and a
 * more accurate one than the core's f32 lanes — so they are the reference the core's rounding error
 * is measured against, not a bit-exact twin.
 * @module
 */

const fround = Math.fround;

/** `x[i] *= a` in place; `a` is rounded to f32 first, as the wasm export receives it. */
export function scaleJs(x: Float32Array, a: number): void {
  const af = fround(a);
  for (let i = 0; i < x.length; i++) x[i] = x[i] * af;
}

/** `dst[i] = a[i] + b[i]` over `dst.length` elements. */
export function addJs(dst: Float32Array, a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = a[i] + b[i];
}

/** `y[i] = a·x[i] + y[i]`, rounding the product to f32 before the add as the wasm core does. */
export function saxpyJs(y: Float32Array, x: Float32Array, a: number): void {
  const af = fround(a);
  for (let i = 0; i < y.length; i++) y[i] = fround(af * x[i]) + y[i];
}

/** Σ a[i]·b[i], accumulated in f64 in index order. */
export function dotJs(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Σ x[i], accumulated in f64 in index order. */
export function sumJs(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  return s;
}

/** The byte-at-a-time CRC32C table (reflected Castagnoli polynomial 0x82F63B78). */
const CRC_TABLE = /* @__PURE__ */ (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/**
 * CRC32C of `bytes`, continuing from `seed` (the CRC of the preceding bytes; 0 for none). One
 * byte per step on purpose: an oracle structurally unlike the slicing-by-8 code it checks.
 */
export function crc32cJs(bytes: Uint8Array, seed = 0): number {
  let c = ~seed;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * One CRC32C per message of a batch at a fixed stride: message `i` is `lens[i]` bytes at
 * `data[i·stride]`. Returns the checksums.
 */
export function crc32cBatchJs(data: Uint8Array, stride: number, lens: Uint32Array): Uint32Array {
  const out = new Uint32Array(lens.length);
  for (let i = 0; i < lens.length; i++) {
    out[i] = crc32cJs(data.subarray(i * stride, i * stride + lens[i]));
  }
  return out;
}

/**
 * One 5-point stencil step on a `w × h` row-major grid: interior cells get
 * `m + c·((up + down) + (left + right) − 4m)` in f32, in that order; border cells are copied.
 */
export function stencil5Js(
  src: Float32Array,
  dst: Float32Array,
  w: number,
  h: number,
  c: number,
): void {
  const cf = fround(c);
  if (w < 3 || h < 3) {
    dst.set(src.subarray(0, w * h));
    return;
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const m = src[i];
      if (y === 0 || y === h - 1 || x === 0 || x === w - 1) {
        dst[i] = m;
        continue;
      }
      const t = fround(
        fround(fround(src[i - w] + src[i + w]) + fround(src[i - 1] + src[i + 1])) - fround(4 * m),
      );
      dst[i] = m + fround(cf * t);
    }
  }
}
