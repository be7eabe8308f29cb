//go:build cgo && linux

package nsexec

// #cgo CFLAGS: -Wall -O2
import "C"

// Available reports whether the C helpers are linked in.
const Available = true
