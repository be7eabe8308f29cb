// Package preloadexample holds the BPF objects bpfgate ships as examples of
// preloading: iterators that print every map and program when read, and an
// XDP packet counter. Their manifests (*.yaml) make this directory a
// preload.d:
//
//	bpfgate preload apply --dir examples/preload
//
// The objects are compiled from C with clang through bpf2go and committed,
// so building needs no clang. To change them, edit the .bpf.c files and run
// go generate here (needs clang and libbpf-dev).
package preloadexample

//go:generate go tool bpf2go -tags linux -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" Counter counter.bpf.c
//go:generate go tool bpf2go -tags linux -cflags "-O2 -g -Wall -I/usr/include/x86_64-linux-gnu" Iterators iterators.bpf.c
