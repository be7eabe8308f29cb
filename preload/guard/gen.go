package guard

//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel,bpfeb -type inode_key guard guard.bpf.c -- -O2 -g -Wall -I/usr/include/x86_64-linux-gnu
