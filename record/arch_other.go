//go:build !amd64 && !arm64

package record

// nativeArch matches no call: launch records bpf() only on amd64 and arm64.
const nativeArch = 0
