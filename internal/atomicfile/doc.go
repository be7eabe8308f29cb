// Package atomicfile writes the files bpfgate produces (CDI specs, hooks.d
// entries, seccomp profiles) and opens its logs without following a link
// another user may have planted.
//
// A file is written to a fresh, unpredictable temporary name in the target's
// directory (os.CreateTemp), synced and renamed over the target, so that a
// reader sees the old file or the new one, never half of it, and no
// predictable PATH.tmp can be pre-planted as a symlink. A target that is
// itself a symlink is refused rather than replaced: the caller names the real
// file.
package atomicfile
