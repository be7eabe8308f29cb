// Package floor holds the lower bounds that bench/run.sh times next to
// bpfgate: programs that do a part of what `bpfgate run` does and nothing
// else, so that what any Go implementation must pay is measured, not guessed.
//
//   - gohello: a Go program that exits (the Go runtime's start).
//   - cgohello: the same with a cgo constructor (what linking libc costs).
//   - goexecns: a Go program that runs /bin/true with os/exec in a new user
//     and mount namespace, ids mapped as bpfgate maps them.
package floor
