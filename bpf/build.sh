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
# Each object is written under a name of this process and renamed into place, so a test
# process that runs this while another one loads the object never sees half a file.
for source in bpf/voxedge.bpf.c bpf/voxedge_loadgen.bpf.c bpf/tests/foreign.bpf.c; do
    object="$out/$(basename "$source" .c).o"
    "$clang" "${flags[@]}" -c "$source" -o "$object.$$"
    mv -f "$object.$$" "$object"
done
echo "bpf: built $out/voxedge.bpf.o $out/voxedge_loadgen.bpf.o $out/foreign.bpf.o"
