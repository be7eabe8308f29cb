//go:build bpfgate_faults && cgo && linux

package nsexec

// #cgo CFLAGS: -DNX_FAULTS
import "C"

// Faults says the helpers honour EnvFault: a test build (tag bpfgate_faults).
const Faults = true
