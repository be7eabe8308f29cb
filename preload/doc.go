// Package preload keeps BPF programs loaded and attached from declarative
// manifests, the way the kernel's bpf_preload keeps its two iterators, but
// for any object.
//
// A manifest (YAML, by default in /etc/bpfgate/preload.d) names a BPF ELF
// object, which of its programs to attach and where, which maps keep their
// data across upgrades, and an order. Apply loads each object and pins
// everything it made below a directory of its own:
//
//	/sys/fs/bpf/bpfgate/NAME/maps/MAP
//	/sys/fs/bpf/bpfgate/NAME/progs/PROG
//	/sys/fs/bpf/bpfgate/NAME/links/PROG
//	/sys/fs/bpf/bpfgate/NAME/digest -> sha256-...
//
// The pinned links are what keep the programs attached after bpfgate exits.
// The digest symlink records the manifest and object the tree was built
// from, so Apply leaves an unchanged object running untouched.
//
// A changed object is built beside the old one, in ROOT/@staging/NAME, and
// swapped in with one rename(2) exchange; the old tree is removed after.
// Links that can be updated in place (XDP, TCX, cgroup) are, so an interface
// never goes without its program; others are attached anew before the old
// ones go. Whatever the point at which Apply dies, the next Apply finds at
// most a stale staging tree and removes it first, detaching its links rather
// than waiting for the kernel to release them, and converges: the kernel
// detaches a link whose last fd closed before it was pinned.
//
// Each object succeeds or fails on its own: Apply returns a Result for every
// manifest and an error joining the failures, and a failed object's old
// tree keeps running.
//
// The root is opened once, as a pins.Dir (from "/" without following
// symlinks, checked against the mount table), and every read, pin, rename
// and removal goes through that fd: renaming or swapping a directory above
// the root cannot send Apply, Remove or Status to another filesystem.
package preload
