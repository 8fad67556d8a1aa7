#!/usr/bin/env bash
# Builds wasm/ringkernel_core.wasm (or the path given as $1) from wasm/src/lib.rs, byte for byte
# reproducibly, with Debian's Rust 1.63 (`rustc` + `libstd-rust-dev-wasm32`).
#
# Why /usr/bin/rustc and not cargo: the rustup toolchain that is first on PATH on our machines has
# no wasm32 target and cannot download one; Debian's rustc ships the target's prebuilt core. The
# crate has no dependencies, so plain rustc is all cargo would have run anyway.
#
#   wasm/build.sh                 rebuild the committed module
#   wasm/build.sh /tmp/x.wasm     build elsewhere (test/wasm/simd_core.test.ts compares the two)
#   RUSTC=/path/to/rustc wasm/build.sh   use another rustc (must have wasm32-unknown-unknown)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/ringkernel_core.wasm}"
rustc="${RUSTC:-/usr/bin/rustc}"

if ! [ -x "$rustc" ]; then
  echo "build.sh: $rustc not found (apt-get install rustc libstd-rust-dev-wasm32)" >&2
  exit 2
fi
sysroot="$("$rustc" --print sysroot)"
if ! [ -d "$sysroot/lib/rustlib/wasm32-unknown-unknown/lib" ]; then
  echo "build.sh: $rustc has no wasm32-unknown-unknown target (apt-get install libstd-rust-dev-wasm32)" >&2
  exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Codegen flags shared by the link and by the assembly listing that is checked below.
#   codegen-units=1   one LLVM module: deterministic output and whole-crate inlining
#   +atomics          required for a shared memory; +bulk-memory turns copies into memory.copy
#                     (no compiler_builtins memcpy, which the prebuilt target lacks atomics for)
#   debuginfo=0, remap-path-prefix   keep build paths out of the bytes
flags=(
  --edition=2021
  --crate-name ringkernel_core
  --crate-type=cdylib
  --target wasm32-unknown-unknown
  -C opt-level=3
  -C codegen-units=1
  -C panic=abort
  -C debuginfo=0
  -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals
  "--remap-path-prefix=$here=wasm"
)

# Linker flags (Rust 1.63's rust-lld / wasm-ld 14):
#   --import-memory --shared-memory   import `env.memory` as a shared memory made by JS, so
#                                     workers instantiate over the same bytes; data segments
#                                     become passive, copied in once by __wasm_init_memory
#   --max-memory=4294967296           declare the full 4 GiB maximum: an imported memory's
#                                     maximum must not exceed the declared one, so this admits
#                                     any maximum the JS side picks
#   -zstack-size=0                    no stack region: __stack_pointer starts at 0 and any frame
#                                     would wrap to 0xFFFFFFF0 and trap (the exports use none;
#                                     all instances would otherwise share one stack)
#   strip=symbols                     no name section
"$rustc" "${flags[@]}" -C strip=symbols \
  -C link-arg=--import-memory \
  -C link-arg=--shared-memory \
  -C link-arg=--max-memory=4294967296 \
  -C link-arg=-zstack-size=0 \
  "$here/src/lib.rs" -o "$tmp/ringkernel_core.wasm"

# The no-stack rule is what keeps concurrent instances over one memory apart; enforce it on the
# compiler's own listing rather than trusting review.
"$rustc" "${flags[@]}" --emit=asm "$here/src/lib.rs" -o "$tmp/ringkernel_core.s"
if grep -nE '__stack_pointer|__tls_base' "$tmp/ringkernel_core.s" >&2; then
  echo "build.sh: an export uses the shadow stack or TLS; see 'No stack' in wasm/src/lib.rs" >&2
  exit 1
fi

cp "$tmp/ringkernel_core.wasm" "$out"
chmod 644 "$out" # rustc marks it executable; it is data
echo "built $out ($(wc -c <"$out") bytes) with $("$rustc" --version)"
