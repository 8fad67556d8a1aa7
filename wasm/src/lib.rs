//! RingKernel CPU SIMD core: the CPU backend's hot loops as raw WebAssembly exports.
//!
//! Built for `wasm32-unknown-unknown` with `simd128`, `atomics`, `bulk-memory` and
//! `mutable-globals`, importing a *shared* memory (`env.memory`) that JavaScript creates, so that
//! every worker can instantiate this module over the same bytes. See `docs/simd-core.md`.
//!
//! # Rules every export follows (and why)
//!
//! * **No stack.** Every instance of a module over one shared memory starts with the same
//!   `__stack_pointer` value, so a stack frame in two workers at once would be one frame in
//!   memory. Instead of handing each instance its own stack region, the exports are leaf loops
//!   over raw pointers whose state fits in wasm locals, and `build.sh` links with a stack of
//!   size 0 (any frame would wrap below address 0 and trap rather than corrupt a neighbour) and
//!   refuses a build whose code mentions `__stack_pointer` at all.
//! * **No panics, no bounds checks, no libcore calls.** The prebuilt Debian libcore is not
//!   compiled with `atomics`, and wasm-ld refuses shared memory when any linked object lacks it;
//!   unchecked indexing keeps `panic_bounds_check` (and with it libcore) out of the link.
//!   Violated preconditions trap with `unreachable` instead; the TypeScript wrapper checks them
//!   first and throws typed errors.
//! * **Raw ABI.** Pointers are byte addresses in the shared memory; `n` counts elements, `len`
//!   counts bytes. f32 pointers must be 4-byte aligned, u32 pointers 4-byte aligned. Loads and
//!   stores of `v128` are unaligned-safe, so f32 arrays need no 16-byte alignment.
//! * **Rounding.** Element-wise kernels round exactly like an f32 loop evaluating the same
//!   expression in the same order (wasm SIMD is IEEE round-to-nearest with subnormals), so they
//!   match a JS loop that applies `Math.fround` after each operation bit for bit. Reductions
//!   (`f32_sum`, `f32_dot`) accumulate in f32 over 32 lanes, so they differ from a sequential
//!   (let alone an f64) JS loop by rounding; the tests bound the difference.

#![no_std]

use core::arch::wasm32::{
    f32x4_add, f32x4_extract_lane, f32x4_mul, f32x4_splat, f32x4_sub, unreachable, v128,
};

/// Traps: there is nothing to unwind to and no channel to report through; the JS wrapper has
/// already validated every argument, so reaching this is a bug worth a loud stop.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    unreachable()
}

/// Unaligned v128 load (f32 arrays are only guaranteed 4-byte alignment).
#[inline(always)]
unsafe fn ld(p: *const f32) -> v128 {
    (p as *const v128).read_unaligned()
}

/// Unaligned v128 store.
#[inline(always)]
unsafe fn st(p: *mut f32, v: v128) {
    (p as *mut v128).write_unaligned(v)
}

/// Adds the four lanes as `(l0 + l1) + (l2 + l3)`.
#[inline(always)]
fn hsum(v: v128) -> f32 {
    (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
        + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
}

/// `p[i] *= a` for `i < n`, in place.
///
/// # Safety
/// `p .. p + 4n` must lie in memory.
#[no_mangle]
pub unsafe extern "C" fn f32_scale(p: *mut f32, n: usize, a: f32) {
    let va = f32x4_splat(a);
    let mut i = 0;
    // Four independent vectors per step so the loop is not bound by its own counter.
    while i + 16 <= n {
        let q = p.add(i);
        st(q, f32x4_mul(ld(q), va));
        st(q.add(4), f32x4_mul(ld(q.add(4)), va));
        st(q.add(8), f32x4_mul(ld(q.add(8)), va));
        st(q.add(12), f32x4_mul(ld(q.add(12)), va));
        i += 16;
    }
    while i + 4 <= n {
        st(p.add(i), f32x4_mul(ld(p.add(i)), va));
        i += 4;
    }
    while i < n {
        *p.add(i) *= a;
        i += 1;
    }
}

/// `dst[i] = a[i] + b[i]` for `i < n`. `dst` may be `a` or `b` itself, but must not partially
/// overlap either (a later block would read what an earlier one wrote).
///
/// # Safety
/// All three ranges of `4n` bytes must lie in memory.
#[no_mangle]
pub unsafe extern "C" fn f32_add(dst: *mut f32, a: *const f32, b: *const f32, n: usize) {
    let mut i = 0;
    while i + 16 <= n {
        let (d, x, y) = (dst.add(i), a.add(i), b.add(i));
        // All loads of a block before its stores, so `dst == a` or `dst == b` is safe.
        let r0 = f32x4_add(ld(x), ld(y));
        let r1 = f32x4_add(ld(x.add(4)), ld(y.add(4)));
        let r2 = f32x4_add(ld(x.add(8)), ld(y.add(8)));
        let r3 = f32x4_add(ld(x.add(12)), ld(y.add(12)));
        st(d, r0);
        st(d.add(4), r1);
        st(d.add(8), r2);
        st(d.add(12), r3);
        i += 16;
    }
    while i + 4 <= n {
        st(dst.add(i), f32x4_add(ld(a.add(i)), ld(b.add(i))));
        i += 4;
    }
    while i < n {
        *dst.add(i) = *a.add(i) + *b.add(i);
        i += 1;
    }
}

/// `y[i] = a * x[i] + y[i]` for `i < n`, as an f32 multiply then an f32 add (two roundings:
/// wasm SIMD has no fused multiply-add outside the relaxed-simd proposal).
///
/// # Safety
/// Both ranges must lie in memory; `y` may equal `x` but must not partially overlap it.
#[no_mangle]
pub unsafe extern "C" fn f32_saxpy(y: *mut f32, x: *const f32, a: f32, n: usize) {
    let va = f32x4_splat(a);
    let mut i = 0;
    while i + 16 <= n {
        let (d, s) = (y.add(i), x.add(i));
        let r0 = f32x4_add(f32x4_mul(va, ld(s)), ld(d));
        let r1 = f32x4_add(f32x4_mul(va, ld(s.add(4))), ld(d.add(4)));
        let r2 = f32x4_add(f32x4_mul(va, ld(s.add(8))), ld(d.add(8)));
        let r3 = f32x4_add(f32x4_mul(va, ld(s.add(12))), ld(d.add(12)));
        st(d, r0);
        st(d.add(4), r1);
        st(d.add(8), r2);
        st(d.add(12), r3);
        i += 16;
    }
    while i + 4 <= n {
        st(
            y.add(i),
            f32x4_add(f32x4_mul(va, ld(x.add(i))), ld(y.add(i))),
        );
        i += 4;
    }
    while i < n {
        *y.add(i) = a * *x.add(i) + *y.add(i);
        i += 1;
    }
}

/// Sum of `a[i] * b[i]` for `i < n`, accumulated in f32.
///
/// Order: eight f32x4 accumulators take blocks of 32 elements (lane `k` of accumulator `j` sums
/// elements `i ≡ 4j + k (mod 32)`); leftover whole vectors go to accumulator 0; the accumulators
/// combine pairwise, the four lanes as `(l0 + l1) + (l2 + l3)`, and the last `n mod 4` products
/// are added one by one. Eight chains hide the f32 add latency; the error bound is
/// `(n/32 + 18) · 2⁻²⁴ · Σ|a[i]·b[i]|` (first order).
///
/// # Safety
/// Both ranges must lie in memory.
#[no_mangle]
pub unsafe extern "C" fn f32_dot(a: *const f32, b: *const f32, n: usize) -> f32 {
    let z = f32x4_splat(0.0);
    let (mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7) = (z, z, z, z, z, z, z, z);
    let mut i = 0;
    while i + 32 <= n {
        let (x, y) = (a.add(i), b.add(i));
        s0 = f32x4_add(s0, f32x4_mul(ld(x), ld(y)));
        s1 = f32x4_add(s1, f32x4_mul(ld(x.add(4)), ld(y.add(4))));
        s2 = f32x4_add(s2, f32x4_mul(ld(x.add(8)), ld(y.add(8))));
        s3 = f32x4_add(s3, f32x4_mul(ld(x.add(12)), ld(y.add(12))));
        s4 = f32x4_add(s4, f32x4_mul(ld(x.add(16)), ld(y.add(16))));
        s5 = f32x4_add(s5, f32x4_mul(ld(x.add(20)), ld(y.add(20))));
        s6 = f32x4_add(s6, f32x4_mul(ld(x.add(24)), ld(y.add(24))));
        s7 = f32x4_add(s7, f32x4_mul(ld(x.add(28)), ld(y.add(28))));
        i += 32;
    }
    while i + 4 <= n {
        s0 = f32x4_add(s0, f32x4_mul(ld(a.add(i)), ld(b.add(i))));
        i += 4;
    }
    let s = f32x4_add(
        f32x4_add(f32x4_add(s0, s1), f32x4_add(s2, s3)),
        f32x4_add(f32x4_add(s4, s5), f32x4_add(s6, s7)),
    );
    let mut r = hsum(s);
    while i < n {
        r += *a.add(i) * *b.add(i);
        i += 1;
    }
    r
}

/// Sum of `p[i]` for `i < n`, accumulated in f32, in the same order as [`f32_dot`] (error bound
/// `(n/32 + 17) · 2⁻²⁴ · Σ|p[i]|`).
///
/// # Safety
/// `p .. p + 4n` must lie in memory.
#[no_mangle]
pub unsafe extern "C" fn f32_sum(p: *const f32, n: usize) -> f32 {
    let z = f32x4_splat(0.0);
    let (mut s0, mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7) = (z, z, z, z, z, z, z, z);
    let mut i = 0;
    while i + 32 <= n {
        let x = p.add(i);
        s0 = f32x4_add(s0, ld(x));
        s1 = f32x4_add(s1, ld(x.add(4)));
        s2 = f32x4_add(s2, ld(x.add(8)));
        s3 = f32x4_add(s3, ld(x.add(12)));
        s4 = f32x4_add(s4, ld(x.add(16)));
        s5 = f32x4_add(s5, ld(x.add(20)));
        s6 = f32x4_add(s6, ld(x.add(24)));
        s7 = f32x4_add(s7, ld(x.add(28)));
        i += 32;
    }
    while i + 4 <= n {
        s0 = f32x4_add(s0, ld(p.add(i)));
        i += 4;
    }
    let s = f32x4_add(
        f32x4_add(f32x4_add(s0, s1), f32x4_add(s2, s3)),
        f32x4_add(f32x4_add(s4, s5), f32x4_add(s6, s7)),
    );
    let mut r = hsum(s);
    while i < n {
        r += *p.add(i);
        i += 1;
    }
    r
}

/// CRC32C (Castagnoli), reflected polynomial.
const POLY: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables: `T[k][b]` advances the CRC over byte `b` followed by `k` zero bytes.
/// Built at compile time so the table lands in a passive data segment that wasm-ld's
/// `__wasm_init_memory` copies in exactly once per memory, whichever instance starts first.
static T: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[0][n] = c;
        n += 1;
    }
    let mut n = 0;
    while n < 256 {
        let mut c = t[0][n];
        let mut k = 1;
        while k < 8 {
            c = t[0][(c & 0xff) as usize] ^ (c >> 8);
            t[k][n] = c;
            k += 1;
        }
        n += 1;
    }
    t
}

/// Table lookup without a bounds check (callers mask the index to 0..=255).
#[inline(always)]
unsafe fn tb(k: usize, i: u32) -> u32 {
    *T.get_unchecked(k).get_unchecked(i as usize)
}

/// The CRC register (pre-inverted) advanced over `len` bytes at `p`.
///
/// Plain slicing-by-8. Table CRC in wasm is bound by instruction count (about five per byte:
/// extract, scale, load, xor), not by the latency of its dependency chain: three interleaved
/// streams merged with zeros tables, and four batch messages in lockstep, were both tried and
/// measured within noise of this loop while tripling the static tables, so they were dropped.
/// simd128 has no carry-less multiply (the instruction fast CRC folding needs).
#[inline(always)]
unsafe fn crc_update(mut c: u32, p: *const u8, len: usize) -> u32 {
    let mut i = 0;
    while i + 8 <= len {
        let lo = c ^ (p.add(i) as *const u32).read_unaligned();
        let hi = (p.add(i + 4) as *const u32).read_unaligned();
        c = tb(7, lo & 0xff)
            ^ tb(6, (lo >> 8) & 0xff)
            ^ tb(5, (lo >> 16) & 0xff)
            ^ tb(4, lo >> 24)
            ^ tb(3, hi & 0xff)
            ^ tb(2, (hi >> 8) & 0xff)
            ^ tb(1, (hi >> 16) & 0xff)
            ^ tb(0, hi >> 24);
        i += 8;
    }
    while i < len {
        c = tb(0, (c ^ *p.add(i) as u32) & 0xff) ^ (c >> 8);
        i += 1;
    }
    c
}

/// CRC32C of `len` bytes at `p`, continuing from `seed` (the CRC of the preceding bytes; 0 for
/// none) — the same chaining contract as `crc32c` in `src/core/checksum.ts`.
///
/// # Safety
/// `p .. p + len` must lie in memory.
#[no_mangle]
pub unsafe extern "C" fn crc32c(p: *const u8, len: usize, seed: u32) -> u32 {
    !crc_update(!seed, p, len)
}

/// One CRC32C (seed 0) per message of a batch laid out at a fixed stride, the way a queue's
/// slots are: message `i` is `lens[i]` bytes at `base + i * stride`, and its CRC goes to
/// `out[i]`. Traps if a length exceeds the stride (a corrupt length word must not make the
/// checksum read the neighbouring slot).
///
/// # Safety
/// `base .. base + count * stride`, `lens[..count]` and `out[..count]` must lie in memory;
/// `lens` and `out` 4-byte aligned.
#[no_mangle]
pub unsafe extern "C" fn crc32c_batch(
    base: *const u8,
    stride: usize,
    lens: *const u32,
    count: usize,
    out: *mut u32,
) {
    let mut i = 0;
    while i < count {
        let len = *lens.add(i) as usize;
        if len > stride {
            unreachable();
        }
        *out.add(i) = !crc_update(!0, base.add(i * stride), len);
        i += 1;
    }
}

/// One explicit-Euler step of a 2D 5-point stencil on a `w × h` row-major f32 grid:
/// `dst = src + c · ((up + down) + (left + right) − 4·src)` on interior cells, evaluated in f32
/// in exactly that order; border cells are copied unchanged. With `c = (v·dt/dx)²` this is the
/// Laplacian update at the heart of a wave or heat step. Grids narrower or shorter than 3 are all
/// border.
///
/// # Safety
/// `src` and `dst` must each hold `w · h` floats in memory and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn stencil5_f32(src: *const f32, dst: *mut f32, w: usize, h: usize, c: f32) {
    if w < 3 || h < 3 {
        core::ptr::copy_nonoverlapping(src, dst, w * h);
        return;
    }
    core::ptr::copy_nonoverlapping(src, dst, w);
    let last = (h - 1) * w;
    core::ptr::copy_nonoverlapping(src.add(last), dst.add(last), w);
    let vc = f32x4_splat(c);
    let four = f32x4_splat(4.0);
    let mut y = 1;
    while y + 1 < h {
        let row = src.add(y * w);
        let up = row.sub(w);
        let down = row.add(w);
        let out = dst.add(y * w);
        *out = *row;
        *out.add(w - 1) = *row.add(w - 1);
        let mut x = 1;
        while x + 4 < w {
            let m = ld(row.add(x));
            let t = f32x4_sub(
                f32x4_add(
                    f32x4_add(ld(up.add(x)), ld(down.add(x))),
                    f32x4_add(ld(row.add(x - 1)), ld(row.add(x + 1))),
                ),
                f32x4_mul(four, m),
            );
            st(out.add(x), f32x4_add(m, f32x4_mul(vc, t)));
            x += 4;
        }
        while x + 1 < w {
            let m = *row.add(x);
            let t = ((*up.add(x) + *down.add(x)) + (*row.add(x - 1) + *row.add(x + 1))) - 4.0 * m;
            *out.add(x) = m + c * t;
            x += 1;
        }
        y += 1;
    }
}
