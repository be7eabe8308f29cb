//go:build !cgo || !linux

package nsexec

// Available reports whether the C helpers are linked in.
const Available = false
