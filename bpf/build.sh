#!/usr/bin/env bash
# Compiles the XDP program (and the tests' stand-in for someone else's XDP program) from
# source. No object file is kept in git: scripts/test and CI run this before `swift test`.
#
#   bpf/build.sh [OUTPUT_DIR]      default OUTPUT_DIR: .build/bpf
#
# Needs clang with the bpf target (Debian's clang 14; scripts/install-deps installs it).
# -g is not for debugging: it emits the BTF that libbpf needs for the `.maps` section and
# that lets `bpftool map dump` print keys and values field by field.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.build/bpf}
mkdir -p "$out"
clang=${CLANG:-clang}
# clang -target bpf does not search the multiarch directory that holds asm/types.h.
multiarch=/usr/include/$(uname -m)-linux-gnu
flags=(-O2 -g -target bpf -Wall -Wextra -Werror -I"$multiarch" -Ibpf)
"$clang" "${flags[@]}" -c bpf/voxedge.bpf.c -o "$out/voxedge.bpf.o.tmp"
mv "$out/voxedge.bpf.o.tmp" "$out/voxedge.bpf.o"
"$clang" "${flags[@]}" -c bpf/tests/foreign.bpf.c -o "$out/foreign.bpf.o.tmp"
mv "$out/foreign.bpf.o.tmp" "$out/foreign.bpf.o"
echo "bpf: built $out/voxedge.bpf.o $out/foreign.bpf.o"
