#!/bin/sh
# Rebuilds hooks.bpf.o, the object the preload tests load. Needs clang and
# libbpf-dev; the object is committed so the tests do not.
set -e
cd "$(dirname "$0")"
clang -O2 -g -Wall -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c hooks.bpf.c -o hooks.bpf.o
