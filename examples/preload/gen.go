// Package preloadexample holds the BPF objects bpfgate ships as examples of
// preloading: iterators that print every map and program when read, and an
// XDP packet counter. Their manifests (*.yaml) make this directory a
// preload.d:
//
//	bpfgate preload apply --dir examples/preload
//
// The objects are compiled from C with clang and committed, so building
// needs no clang; preload loads them by file, so no Go bindings are made.
// To change them, edit the .bpf.c files and run go generate here (needs
// clang, llvm and libbpf-dev).
package preloadexample

//go:generate sh -c "clang -target bpfel -O2 -g -Wall -I/usr/include/x86_64-linux-gnu -c counter.bpf.c -o counter_bpfel.o && llvm-strip -g counter_bpfel.o"
//go:generate sh -c "clang -target bpfel -O2 -g -Wall -I/usr/include/x86_64-linux-gnu -c iterators.bpf.c -o iterators_bpfel.o && llvm-strip -g iterators_bpfel.o"
