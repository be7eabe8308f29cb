// Package pins lists and manages the objects pinned in BPF filesystems:
// maps, programs and links that outlive the process that made them.
//
// List walks one or more bpffs trees and reports, for every pin, what the
// kernel says of the object behind it. Pin, Unpin and Rename change a tree.
// Every path they take is checked: it must lie on a bpffs, must not
// contain "..", and must not pass through a symlink, above the mount or
// below it.
//
// The checks are made by the kernel, on file descriptors. The root of the
// bpffs is opened once, from "/" with openat2's RESOLVE_NO_SYMLINKS, and
// confirmed to be the root of the mount that the mount table lists at that
// path (statx's mount id, fstatfs's BPF_FS_MAGIC). Everything below is
// resolved from that fd with RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS and
// RESOLVE_NO_XDEV, and every change is made relative to a directory fd, so
// a user who owns a directory above the mount cannot redirect an operation
// to another filesystem by swapping that directory for a symlink. Dir holds
// such a directory open for callers that make many changes below it.
package pins
