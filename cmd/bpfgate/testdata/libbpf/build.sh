#!/bin/sh
# Rebuilds the committed BPF object (clang with the BPF target, libbpf headers).
set -eu
cd "$(dirname "$0")"
clang -target bpf -O2 -g -I/usr/include/"$(uname -m)"-linux-gnu -c count.bpf.c -o count.bpf.o
llvm-strip -g count.bpf.o 2>/dev/null || true
