// Package pins lists and manages the objects pinned in BPF filesystems:
// maps, programs and links that outlive the process that made them.
//
// List walks one or more bpffs trees and reports, for every pin, what the
// kernel says of the object behind it. Pin, Unpin and Rename change a tree;
// every path they take is checked first: it must lie on a bpffs, must not
// contain "..", and must not pass through a symlink. The checks are enforced
// by the kernel (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS) and
// the change is made relative to the directory fd they return, so a path
// cannot be swapped between the check and the change.
package pins
