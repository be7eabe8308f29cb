// Package boundedio reads files and streams that come from outside bpfgate
// (config files, OCI state and config.json, manifests, BPF objects) with a
// size limit, so that a huge or endless input (/dev/zero, a FIFO nobody
// writes to) fails at once with an error that names the limit, instead of
// growing memory or blocking.
//
// Where a regular file is expected, anything else (a FIFO, a device, a
// directory, a socket) is refused before a single byte is read.
package boundedio
