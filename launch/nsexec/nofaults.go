//go:build !bpfgate_faults || !cgo || !linux

package nsexec

// Faults says the helpers honour EnvFault: only test builds (tag
// bpfgate_faults) do.
const Faults = false
