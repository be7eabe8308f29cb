package audit

// The tracer is compiled from audit.bpf.c with clang through bpf2go, at the
// cilium/ebpf version go.mod pins; the object and its Go bindings are
// committed, so building needs no clang. To change it, edit bpf/audit.bpf.c and
// run go generate here (needs clang, llvm-strip and libbpf-dev).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -type event -type filter tracer bpf/audit.bpf.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
