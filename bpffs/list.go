package bpffs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/bpfgate/bpfgate/delegate"
)

// Info describes one bpffs mount.
type Info struct {
	ID         int          `json:"id"`
	Path       string       `json:"path"`
	Root       string       `json:"root"`
	Source     string       `json:"source"`
	Options    string       `json:"options"`       // per-mount options, e.g. rw,relatime
	Super      string       `json:"super_options"` // the filesystem's options, as the kernel prints them
	UID        uint32       `json:"uid"`
	GID        uint32       `json:"gid"`
	Mode       uint32       `json:"mode"`
	Delegation delegate.Set `json:"delegation"`
}

// Mounts lists the bpffs mounts of the caller's mount namespace.
func Mounts(names *delegate.Names) ([]Info, error) {
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("bpf"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return infos(ms, names)
}

// MountsOf lists the bpffs mounts in the mount namespace of process pid.
func MountsOf(pid int, names *delegate.Names) ([]Info, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo of pid %d: %w", pid, err)
	}
	defer f.Close()
	ms, err := mountinfo.GetMountsFromReader(f, mountinfo.FSTypeFilter("bpf"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo of pid %d: %w", pid, err)
	}
	return infos(ms, names)
}

func infos(ms []*mountinfo.Info, names *delegate.Names) ([]Info, error) {
	out := make([]Info, 0, len(ms))
	for _, m := range ms {
		in, err := ParseInfo(m, names)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// ParseInfo decodes a mountinfo entry of a bpffs.
func ParseInfo(m *mountinfo.Info, names *delegate.Names) (Info, error) {
	in := Info{ID: m.ID, Path: m.Mountpoint, Root: m.Root, Source: m.Source,
		Options: m.Options, Super: m.VFSOptions, Mode: 0o1777}
	for _, opt := range strings.Split(m.VFSOptions, ",") {
		key, val, _ := strings.Cut(opt, "=")
		switch key {
		case "uid", "gid", "mode":
			base := 10
			if key == "mode" {
				base = 8
			}
			v, err := strconv.ParseUint(val, base, 32)
			if err != nil {
				return Info{}, fmt.Errorf("mount %s: option %s: %w", m.Mountpoint, opt, err)
			}
			switch key {
			case "uid":
				in.UID = uint32(v)
			case "gid":
				in.GID = uint32(v)
			default:
				// The root of a bpffs is always sticky, and the kernel
				// leaves that bit out of mode=.
				in.Mode = uint32(v) | 0o1000
			}
		}
	}
	if names != nil {
		set, err := names.ParseOptions(m.VFSOptions)
		if err != nil {
			return Info{}, fmt.Errorf("mount %s: %w", m.Mountpoint, err)
		}
		in.Delegation = set
	}
	return in, nil
}

// Visible drops mounts hidden by a later mount on the same path: mountinfo
// lists stacked mounts bottom first, and only the top one is reachable. On
// a systemd host, `bpfgate run` stacks the delegated bpffs on /sys/fs/bpf.
// path gives a mount's mountpoint, so raw mountinfo entries work too.
func Visible[T any](mounts []T, path func(T) string) []T {
	top := map[string]int{}
	for i, m := range mounts {
		top[path(m)] = i
	}
	out := make([]T, 0, len(top))
	for i, m := range mounts {
		if top[path(m)] == i {
			out = append(out, m)
		}
	}
	return out
}

// MountPath is the path of an Info, for Visible.
func MountPath(m Info) string { return m.Path }
