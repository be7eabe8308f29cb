package pins

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/sys"
)

// Kind is what a bpffs entry holds.
type Kind string

// The kinds of entry List reports.
const (
	KindMap     Kind = "map"
	KindProgram Kind = "prog"
	KindLink    Kind = "link"
	KindDir     Kind = "dir"
	KindSymlink Kind = "symlink"
)

// Entry is one pin (or directory, or symlink) and what the kernel reports of
// the object behind it.
type Entry struct {
	Path string `json:"path"`
	Kind Kind   `json:"kind,omitempty"`
	// ID is the kernel's id of the object, as bpftool shows it.
	ID uint32 `json:"id,omitempty"`
	// Type is the kernel's name of the map, program or link type, e.g.
	// "hash", "xdp", "iter".
	Type    string          `json:"type,omitempty"`
	Name    string          `json:"name,omitempty"`
	Map     *MapDetails     `json:"map,omitempty"`
	Program *ProgramDetails `json:"prog,omitempty"`
	Link    *LinkDetails    `json:"link,omitempty"`
	// Target is where a symlink points.
	Target string `json:"target,omitempty"`
	// Error says why the object behind a pin could not be read.
	Error string `json:"error,omitempty"`
}

// MapDetails are the essentials of a pinned map.
type MapDetails struct {
	KeySize    uint32 `json:"key_size"`
	ValueSize  uint32 `json:"value_size"`
	MaxEntries uint32 `json:"max_entries"`
	Flags      uint32 `json:"flags"`
}

// ProgramDetails are the essentials of a pinned program.
type ProgramDetails struct {
	Tag string `json:"tag"`
	// Attached is true when a BPF link holds the program. Attachments made
	// without a link (netlink XDP, tc filters, cgroup PROG_ATTACH) are not
	// visible here.
	Attached bool `json:"attached"`
	// Links are the ids of the links that hold the program.
	Links []uint32 `json:"links,omitempty"`
}

// LinkDetails are the essentials of a pinned link: its program and where it
// is attached.
type LinkDetails struct {
	ProgramID  uint32 `json:"prog_id"`
	AttachType string `json:"attach_type,omitempty"`
	Ifindex    uint32 `json:"ifindex,omitempty"`
	CgroupID   uint64 `json:"cgroup_id,omitempty"`
	// Target is where the link is attached, for people: an interface, an
	// iterator target, a tracepoint, a function.
	Target string `json:"target,omitempty"`
}

// Options tune List.
type Options struct {
	// Dirs reports directories too (the tree view needs them).
	Dirs bool
	// Names gives kernel names for types; nil means delegate.KernelNames.
	Names *delegate.Names
}

// Roots returns the mountpoints of the bpffs instances visible to the
// caller, one per filesystem: a bpffs mounted twice is listed once.
func Roots() ([]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("bpf"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	mounts = bpffs.Visible(mounts, func(m *mountinfo.Info) string { return m.Mountpoint })
	seen := map[[2]int]bool{}
	var roots []string
	for _, m := range mounts {
		dev := [2]int{m.Major, m.Minor}
		if seen[dev] {
			continue
		}
		seen[dev] = true
		roots = append(roots, m.Mountpoint)
	}
	return roots, nil
}

// List walks each root (a bpffs directory or a single pin) in name order
// and calls fn for every entry. An object that cannot be read is reported
// with Error set; the walk goes on. fn's error stops the walk.
//
// Each root's mount is opened once from "/", without following symlinks,
// and checked against the mount table; the walk then goes from directory
// fd to directory fd, never by path, and never into another mount: a
// directory renamed or swapped for a symlink during the walk cannot lead
// it anywhere else. A symlink is reported, never followed.
func List(roots []string, opts Options, fn func(*Entry) error) error {
	names := opts.Names
	if names == nil {
		var err error
		if names, err = delegate.KernelNames(); err != nil {
			return err
		}
	}
	// Open every root before the first entry, so a typo in the last one
	// does not come after half a listing.
	fds := make([]int, 0, len(roots))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, root := range roots {
		d, l, err := openRoot(root)
		if err != nil {
			return err
		}
		fd, err := d.openEntry(l.Rel)
		d.Close()
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	w := walker{names: names, dirs: opts.Dirs, fn: fn}
	for i, root := range roots {
		if err := w.node(fds[i], filepath.Clean(root)); err != nil {
			return err
		}
	}
	return nil
}

// List walks name below d as the function List does.
func (d *Dir) List(name string, opts Options, fn func(*Entry) error) error {
	rel, err := d.rel(name)
	if err != nil {
		return err
	}
	names := opts.Names
	if names == nil {
		if names, err = delegate.KernelNames(); err != nil {
			return err
		}
	}
	fd, err := d.openEntry(rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	w := walker{names: names, dirs: opts.Dirs, fn: fn}
	return w.node(fd, d.show(rel))
}

type walker struct {
	names *delegate.Names
	dirs  bool
	fn    func(*Entry) error
	// progLinks maps program ids to the links holding them, read once.
	progLinks map[uint32][]uint32
}

// node reports the entry that fd (O_PATH, not following symlinks) holds,
// and walks it if it is a directory.
func (w *walker) node(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	e := &Entry{Path: path}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return w.dir(fd, path)
	case unix.S_IFLNK:
		e.Kind = KindSymlink
		if t, err := readlinkFD(fd); err != nil {
			e.Error = err.Error()
		} else {
			e.Target = t
		}
		return w.fn(e)
	}
	if err := w.describe(e, fd); err != nil {
		e.Error = err.Error()
	}
	return w.fn(e)
}

func (w *walker) dir(fd int, dir string) error {
	if w.dirs {
		if err := w.fn(&Entry{Path: dir, Kind: KindDir}); err != nil {
			return err
		}
	}
	names, err := readNames(fd)
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, name := range names {
		path := filepath.Join(dir, name)
		cfd, err := unix.Openat2(fd, name, &unix.OpenHow{
			Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveFlags})
		switch {
		case errors.Is(err, unix.ENOENT):
			continue // removed since the directory was read
		case errors.Is(err, unix.EXDEV):
			err = w.fn(&Entry{Path: path, Kind: KindDir, Error: "another filesystem is mounted here; list it by its own path"})
		case err != nil:
			err = w.fn(&Entry{Path: path, Error: err.Error()})
		default:
			err = w.node(cfd, path)
			unix.Close(cfd)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// describe gets the object pinned at the inode fd holds and fills e from
// the kernel's info.
func (w *walker) describe(e *Entry, fd int) error {
	// Read-only opens work for pins the caller may only read; links take no
	// such flag, so they are opened again without it.
	obj, err := loadFD(fd, &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, unix.EINVAL) {
		obj, err = loadFD(fd, nil)
	}
	if err != nil {
		return err
	}
	defer obj.Close()
	switch o := obj.(type) {
	case *ebpf.Map:
		e.Kind = KindMap
		return w.describeMap(e, o)
	case *ebpf.Program:
		e.Kind = KindProgram
		return w.describeProgram(e, o)
	case link.Link:
		e.Kind = KindLink
		return w.describeLink(e, o)
	}
	return fmt.Errorf("unknown object %T", obj)
}

func (w *walker) describeMap(e *Entry, m *ebpf.Map) error {
	// cilium/ebpf's Map.Info also reads /proc/self/fdinfo, which costs more
	// than the rest of the walk together; the kernel's info struct is enough.
	info, err := sys.MapObjInfo(m.FD())
	if err != nil {
		return fmt.Errorf("map info: %w", err)
	}
	e.ID = info.ID
	e.Type = typeName(w.names, delegate.Maps, info.Type)
	e.Name = unix.ByteSliceToString(info.Name[:])
	e.Map = &MapDetails{KeySize: info.KeySize, ValueSize: info.ValueSize,
		MaxEntries: info.MaxEntries, Flags: info.Flags}
	return nil
}

func (w *walker) describeProgram(e *Entry, p *ebpf.Program) error {
	info, err := sys.ProgObjInfo(p.FD())
	if err != nil {
		return fmt.Errorf("program info: %w", err)
	}
	e.ID = info.ID
	e.Type = typeName(w.names, delegate.Progs, info.Type)
	e.Name = unix.ByteSliceToString(info.Name[:])
	if w.progLinks == nil {
		w.progLinks = linksByProgram()
	}
	links := w.progLinks[info.ID]
	e.Program = &ProgramDetails{Tag: hex.EncodeToString(info.Tag[:]), Attached: len(links) > 0, Links: links}
	return nil
}

func (w *walker) describeLink(e *Entry, l link.Link) error {
	info, err := l.Info()
	if err != nil {
		return fmt.Errorf("link info: %w", err)
	}
	e.ID = uint32(info.ID)
	e.Type = LinkTypeName(info.Type)
	d := &LinkDetails{ProgramID: uint32(info.Program)}
	e.Link = d
	if p, err := ebpf.NewProgramFromID(info.Program); err == nil {
		if pi, err := sys.ProgObjInfo(p.FD()); err == nil {
			e.Name = unix.ByteSliceToString(pi.Name[:])
		}
		p.Close()
	}
	attachName := func(a uint32) string { return typeName(w.names, delegate.Attachs, a) }
	switch {
	case info.XDP() != nil:
		d.Ifindex = info.XDP().Ifindex
		d.Target = ifaceName(d.Ifindex)
	case info.TCX() != nil:
		d.Ifindex = info.TCX().Ifindex
		d.AttachType = attachName(uint32(info.TCX().AttachType))
		d.Target = ifaceName(d.Ifindex)
	case info.Netkit() != nil:
		d.Ifindex = info.Netkit().Ifindex
		d.AttachType = attachName(uint32(info.Netkit().AttachType))
		d.Target = ifaceName(d.Ifindex)
	case info.Cgroup() != nil:
		d.CgroupID = info.Cgroup().CgroupId
		d.AttachType = attachName(uint32(info.Cgroup().AttachType))
		d.Target = fmt.Sprintf("cgroup id %d", d.CgroupID)
	case info.NetNs() != nil:
		d.AttachType = attachName(uint32(info.NetNs().AttachType))
		d.Target = fmt.Sprintf("netns inode %d", info.NetNs().NetnsInode)
	case info.Tracing() != nil:
		t := info.Tracing()
		d.AttachType = attachName(uint32(t.AttachType))
		d.Target = fmt.Sprintf("btf id %d", t.TargetBtfId)
		if t.TargetObjectId != 0 {
			d.Target += fmt.Sprintf(" of object %d", t.TargetObjectId)
		}
	case info.RawTracepoint() != nil:
		d.Target = info.RawTracepoint().Name
	case info.PerfEvent() != nil:
		pe := info.PerfEvent()
		switch {
		case pe.Tracepoint() != nil:
			d.Target = "tracepoint " + pe.Tracepoint().Tracepoint
		case pe.Kprobe() != nil:
			d.Target = "kprobe " + pe.Kprobe().Function
		case pe.Uprobe() != nil:
			d.Target = "uprobe " + pe.Uprobe().File
		}
	case info.KprobeMulti() != nil:
		d.Target = fmt.Sprintf("%d functions", info.KprobeMulti().Count)
	case info.Type == link.IterType:
		if fl, ok := l.(interface{ FD() int }); ok {
			if t, err := sys.IterLinkTarget(fl.FD()); err == nil {
				d.Target = t
			}
		}
	}
	return nil
}

// linksByProgram reads every link in the system once and maps program ids
// to the ids of the links that hold them.
func linksByProgram() map[uint32][]uint32 {
	out := map[uint32][]uint32{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			continue
		}
		out[uint32(info.Program)] = append(out[uint32(info.Program)], uint32(info.ID))
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

func typeName(names *delegate.Names, k delegate.Kind, v uint32) string {
	if n := names.ShortName(k, v); n != "" {
		return n
	}
	return fmt.Sprintf("type %d", v)
}

// linkTypes are the kernel's names of enum bpf_link_type, as bpftool prints
// them. Link types are not part of the delegation enums bpfgate caches, and
// they only ever grow at the end.
var linkTypes = []string{"unspec", "raw_tracepoint", "tracing", "cgroup", "iter",
	"netns", "xdp", "perf_event", "kprobe_multi", "struct_ops", "netfilter", "tcx",
	"uprobe_multi", "netkit", "sockmap"}

// LinkTypeName is the kernel's name of a link type.
func LinkTypeName(t link.Type) string {
	if int(t) < len(linkTypes) {
		return linkTypes[t]
	}
	return fmt.Sprintf("type %d", t)
}

func ifaceName(ifindex uint32) string {
	if ifindex == 0 {
		return "detached"
	}
	if ifi, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		return ifi.Name
	}
	return fmt.Sprintf("ifindex %d", ifindex)
}

// unwrapPathError drops the path cilium/ebpf adds, since Entry has it.
func unwrapPathError(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
