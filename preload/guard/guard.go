package guard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/pins"
	"github.com/bpfgate/bpfgate/preload"
)

// Dir is the directory below the protected root where the guard pins its
// links and maps. preload leaves names starting with @ alone.
const Dir = "@guard"

// managerLink is the symlink in Dir naming the manager's executable.
const managerLink = "manager"

var (
	// ErrUnsupported means the kernel refused to load or attach the
	// guard's BPF LSM programs.
	ErrUnsupported = errors.New("the kernel refuses BPF LSM programs")
	// ErrEnabled means a guard is already pinned below the root.
	ErrEnabled = errors.New("the guard is already enabled")
	// ErrNotEnabled means no guard is pinned below the root.
	ErrNotEnabled = errors.New("the guard is not enabled")
	// ErrNotManager means the guard refused the caller: only the
	// executable that enabled it may disable it.
	ErrNotManager = errors.New("only the guard's manager may do this")
	// ErrLocked means the guard has no manager any more (Lock): nothing
	// changes the tree or disables the guard until the next boot.
	ErrLocked = errors.New("the guard is locked until reboot")
)

// Options says what to protect.
type Options struct {
	// Root is the tree to protect; preload.DefaultRoot if empty. It must
	// be a directory on a bpffs, or not exist yet below one.
	Root string
}

func (o Options) root() (string, error) {
	r := o.Root
	if r == "" {
		r = preload.DefaultRoot
	}
	r, err := filepath.Abs(r)
	if err != nil {
		return "", err
	}
	return filepath.Clean(r), nil
}

// hooks are the names of the guard's counters, in the order of enum hook
// in guard.bpf.c.
var hooks = []string{
	"unlink", "rmdir", "rename", "create", "mkdir", "symlink", "link", "setattr",
	"permission", "umount", "mount", "move_mount", "bpf", "file_open", "ptrace", "exec", "prctl",
}

const hookMkdir = 4

// State is what Status finds.
type State struct {
	// Enabled says whether every program of the guard is attached
	// through a link pinned below Root.
	Enabled bool `json:"enabled"`
	// Root is the protected tree and Pins where the guard pins itself.
	Root string `json:"root"`
	Pins string `json:"pins"`
	// Dev is the bpffs's device (major:minor) and Inode the root
	// directory's inode, by which the guard knows the tree.
	Dev   string `json:"dev,omitempty"`
	Inode uint64 `json:"inode,omitempty"`
	// Manager is the executable that may still change the tree and
	// disable the guard, with its device and inode.
	Manager      string `json:"manager,omitempty"`
	ManagerDev   string `json:"manager_dev,omitempty"`
	ManagerInode uint64 `json:"manager_inode,omitempty"`
	// Locked says that the guard is on and has no manager (Lock): until
	// the next boot nobody changes the tree or disables the guard.
	Locked bool `json:"locked,omitempty"`
	// Links are the guard's pinned links.
	Links []LinkState `json:"links,omitempty"`
	// Refused counts the operations the guard refused since it was
	// enabled, per LSM hook.
	Refused map[string]uint64 `json:"refused,omitempty"`
	// Why says why the guard is not enabled.
	Why string `json:"why,omitempty"`
	// LSMs is the kernel's active LSM list, when securityfs shows it.
	LSMs string `json:"lsms,omitempty"`
}

// CallerIsManager says whether the calling process's executable is the
// manager the State names (never, for a locked guard or none).
func (s *State) CallerIsManager() (bool, error) {
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &self); err != nil {
		return false, fmt.Errorf("guard: stat this process's executable: %w", err)
	}
	k := keyOf(&self)
	return s.ManagerInode != 0 && devString(k.Dev) == s.ManagerDev && k.Ino == s.ManagerInode, nil
}

// LinkState is one of the guard's links.
type LinkState struct {
	Hook   string `json:"hook"`
	ID     uint32 `json:"id"`
	ProgID uint32 `json:"prog_id"`
	Prog   string `json:"prog"`
}

type inodeKey = guardInodeKey

// kdev turns a stat st_dev into the kernel's s_dev (MKDEV: major<<20 | minor).
func kdev(dev uint64) uint32 { return unix.Major(dev)<<20 | unix.Minor(dev) }

func keyOf(st *unix.Stat_t) inodeKey { return inodeKey{Dev: kdev(st.Dev), Ino: st.Ino} }

func devString(dev uint32) string { return fmt.Sprintf("%d:%d", dev>>20, dev&0xfffff) }

// Enable loads the guard, protects the tree at opts.Root and pins the guard
// in Root/@guard, so that it stays after the caller exits. The calling
// process's executable becomes the manager.
//
// Where the kernel refuses BPF LSM programs, Enable returns ErrUnsupported
// with what the kernel said, and has changed nothing: no pins, maps, links
// or directories are left.
func Enable(opts Options) (*State, error) {
	root, err := opts.root()
	if err != nil {
		return nil, err
	}
	pinDir := filepath.Join(root, Dir)
	if _, err := os.Lstat(pinDir); err == nil {
		return nil, fmt.Errorf("%w at %s: bpfgate preload guard status shows it", ErrEnabled, pinDir)
	}
	exePath, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("guard: find the manager's executable: %w", err)
	}
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return nil, fmt.Errorf("guard: stat the manager's executable: %w", err)
	}

	// Load and attach before touching the filesystem: this is where a
	// kernel without BPF LSM says no, and then nothing was made.
	var objs guardObjects
	if err := loadGuardObjects(&objs, nil); err != nil {
		return nil, unsupported("load", err)
	}
	defer objs.Close()
	progs := programs(&objs.guardPrograms)
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	for _, p := range progs {
		l, err := link.AttachLSM(link.LSMOptions{Program: p.prog})
		if err != nil {
			return nil, unsupported("attach "+p.name, err)
		}
		links = append(links, l)
	}

	// The tree: created if missing (and removed again on failure), and it
	// must be on a bpffs.
	created, err := makeRoot(root)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && created != "" {
			os.RemoveAll(created)
		}
	}()
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	tree := keyOf(&st)

	// Fill the maps: the manager first, so the guard never refuses it.
	one := uint8(1)
	m := &objs.guardMaps
	if err := m.GuardExes.Put(keyOf(&exe), one); err != nil {
		return nil, fmt.Errorf("guard: record the manager: %w", err)
	}
	ids, err := objectIDs(&objs, links)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := m.GuardIds.Put(id, one); err != nil {
			return nil, fmt.Errorf("guard: protect object %#x: %w", id, err)
		}
	}
	if err := m.GuardSbs.Put(tree.Dev, one); err != nil {
		return nil, fmt.Errorf("guard: protect the bpffs: %w", err)
	}
	if err := m.GuardInodes.Put(tree, one); err != nil {
		return nil, fmt.Errorf("guard: protect %s: %w", root, err)
	}

	// The guard is on. Opening the tree shows it the mount the tree is
	// reached through, which it keeps from being unmounted.
	if d, err := os.Open(root); err == nil {
		d.Close()
	}
	// Check that it runs and knows this process as the manager: making
	// its own directory must pass the mkdir hook as the manager's. If not,
	// closing the unpinned links takes it off again.
	before := counter(m.GuardCounts, 2*hookMkdir+1)
	if err := os.Mkdir(pinDir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w at %s", ErrEnabled, pinDir)
		}
		detach(links)
		links = nil
		return nil, fmt.Errorf("guard: the guard refused its own manager (%s, device %s inode %d; the executable's filesystem may report another device than the kernel uses): %w",
			exePath, devString(kdev(exe.Dev)), exe.Ino, err)
	}
	ok2 := false
	defer func() {
		if !ok2 {
			os.RemoveAll(pinDir)
		}
	}()
	if counter(m.GuardCounts, 2*hookMkdir+1) == before {
		return nil, fmt.Errorf("%w: its programs attached but never ran (is bpf in the kernel's lsm= list? active: %s)", ErrUnsupported, activeLSMs())
	}
	if counter(m.GuardMnt, 0) == 0 {
		return nil, fmt.Errorf("guard: the guard did not see through which mount %s is reached, so it could not keep it mounted", root)
	}

	for _, sub := range []string{"links", "maps"} {
		if err := os.Mkdir(filepath.Join(pinDir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("guard: %w", err)
		}
	}
	for name, mp := range mapsByName(m) {
		if mp == m.GuardMnt {
			// Nobody needs it, and a read-only fd of it would do for a
			// program of anyone's to write it (see guard.bpf.c).
			continue
		}
		if err := mp.Pin(filepath.Join(pinDir, "maps", name)); err != nil {
			return nil, fmt.Errorf("guard: pin map %s: %w", name, err)
		}
	}
	for i, l := range links {
		if err := l.Pin(filepath.Join(pinDir, "links", progs[i].hook)); err != nil {
			return nil, fmt.Errorf("guard: pin link %s: %w", progs[i].hook, err)
		}
	}
	if err := os.Symlink(exePath, filepath.Join(pinDir, managerLink)); err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	// What was pinned in the tree before, by id too.
	if err := syncIDs(root, m.GuardIds); err != nil {
		return nil, err
	}
	ok, ok2 = true, true
	return Status(opts)
}

// unsupported explains a refused load or attach.
func unsupported(step string, err error) error {
	var ve *ebpf.VerifierError
	// cilium/ebpf suggests RLIMIT_MEMLOCK on any EPERM without a log; the
	// kernels with BPF tokens charge memory to the cgroup instead, so the
	// hint would mislead here.
	detail := strings.Replace(err.Error(), " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)", "", 1)
	if errors.As(err, &ve) && len(ve.Log) > 0 {
		detail = fmt.Sprintf("%v (verifier: %s)", err, strings.Join(ve.Log, "; "))
	} else if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		detail += " (without a verifier log)"
	}
	return fmt.Errorf("%w: %s: %s. The guard needs a kernel built with CONFIG_BPF_LSM, \"bpf\" in its lsm= list (active: %s), and that allows BPF trampoline programs (lsm, fentry) to root: some kernels refuse them, whatever lockdown says",
		ErrUnsupported, step, detail, activeLSMs())
}

// activeLSMs is the kernel's LSM list, or why it is not known.
func activeLSMs() string {
	b, err := os.ReadFile("/sys/kernel/security/lsm")
	if err != nil {
		return "unknown, securityfs not readable"
	}
	return strings.TrimSpace(string(b))
}

// makeRoot creates the root if missing and returns the topmost directory
// it created ("" if none). The root's parent must be on a bpffs.
func makeRoot(root string) (string, error) {
	var created string
	dir := root
	for {
		if _, err := os.Lstat(dir); err == nil {
			break
		}
		created = dir
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return "", fmt.Errorf("guard: %w", err)
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return "", fmt.Errorf("guard: %s is not on a bpffs: mount one (bpfgate preload apply does) or choose another --root", dir)
	}
	if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
		return "", fmt.Errorf("guard: %s is not a directory", dir)
	}
	if created != "" {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return "", fmt.Errorf("guard: %w", err)
		}
	}
	return created, nil
}

type prog struct {
	hook, name string
	prog       *ebpf.Program
}

// programs lists the guard's programs with the hook each attaches to, in
// a fixed order.
func programs(p *guardPrograms) []prog {
	ps := []prog{
		{"inode_unlink", "guard_unlink", p.GuardUnlink},
		{"inode_rmdir", "guard_rmdir", p.GuardRmdir},
		{"inode_rename", "guard_rename", p.GuardRename},
		{"inode_create", "guard_create", p.GuardCreate},
		{"inode_mkdir", "guard_mkdir", p.GuardMkdir},
		{"inode_symlink", "guard_symlink", p.GuardSymlink},
		{"inode_link", "guard_link", p.GuardLink},
		{"inode_setattr", "guard_setattr", p.GuardSetattr},
		{"inode_permission", "guard_permission", p.GuardPermission},
		{"sb_umount", "guard_umount", p.GuardUmount},
		{"sb_mount", "guard_mount", p.GuardMount},
		{"move_mount", "guard_move_mount", p.GuardMoveMount},
		{"bpf", "guard_bpf", p.GuardBpf},
		{"bpf_map", "guard_bpf_map", p.GuardBpfMap},
		{"file_open", "guard_file_open", p.GuardFileOpen},
		{"ptrace_access_check", "guard_ptrace", p.GuardPtrace},
		{"ptrace_traceme", "guard_traceme", p.GuardTraceme},
		{"bprm_check_security", "guard_exec", p.GuardExec},
		{"task_prctl", "guard_prctl", p.GuardPrctl},
	}
	return ps
}

func mapsByName(m *guardMaps) map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		"guard_inodes": m.GuardInodes, "guard_sbs": m.GuardSbs, "guard_ids": m.GuardIds,
		"guard_exes": m.GuardExes, "guard_counts": m.GuardCounts, "guard_mnt": m.GuardMnt,
	}
}

// Kinds of guard_ids keys, as in guard.bpf.c.
const (
	kindLink = 1
	kindMap  = 2
	kindProg = 3
	// kindMapNoFD: maps nobody but the manager gets an fd of by id (the
	// guard's guard_mnt); kindMapROFD: maps nobody but the manager gets a
	// write-mode fd of (the guard's other maps). Set by Enable, kept by
	// Sync.
	kindMapNoFD = 4
	kindMapROFD = 5
)

// Sync makes the guard protect by id, as well as by pin, exactly what is
// pinned below opts.Root: every map, program and link (the guard's own
// included), the programs of the pinned links, and the maps those programs
// use. Without it, a preloaded map could be written, or a preloaded link
// detached, through an fd from its id (bpftool map update id N, link
// detach id N). Enable syncs; bpfgate preload apply and remove sync after
// they change the tree. Only the manager may (ErrNotManager); a locked
// guard has nothing to sync (ErrLocked).
func Sync(opts Options) error {
	st, m, err := openForManager(opts, "guard_ids", "sync")
	if err != nil {
		return err
	}
	defer m.Close()
	return syncIDs(st.Root, m)
}

// openForManager opens the guard's map name for writing, which the guard
// lets only its manager do, for the command verb (bpfgate preload guard
// VERB): the guard must be on and not locked.
func openForManager(opts Options, name, verb string) (*State, *ebpf.Map, error) {
	st, err := Status(opts)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case st.Locked:
		return nil, nil, fmt.Errorf("%w at %s", ErrLocked, st.Pins)
	case !st.Enabled:
		return nil, nil, fmt.Errorf("%w: %s", ErrNotEnabled, strings.TrimPrefix(st.Why, "not enabled: "))
	}
	path := filepath.Join(st.Pins, "maps", name)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, nil, fmt.Errorf("%w: the guard refused to open %s for writing; run bpfgate preload guard %s from %s (device %s inode %d)",
				ErrNotManager, path, verb, st.Manager, st.ManagerDev, st.ManagerInode)
		}
		return nil, nil, fmt.Errorf("guard: %w", err)
	}
	return st, m, nil
}

// syncIDs puts into ids (guard_ids) the keys of what is pinned below root,
// and takes out those of objects no longer pinned. What it cannot read is
// an error, after the rest is synced: protection it could not extend is
// never taken away.
func syncIDs(root string, ids *ebpf.Map) error {
	want := map[uint64]bool{}
	var errs []error
	// A map-in-map's maps and a program array's programs are reached
	// through it, and so are protected like it: else a program's map
	// could be written by the inner map's id, which the program reaches.
	var addMap, addProg func(id uint32)
	addMap = func(id uint32) {
		key := kindMap<<32 | uint64(id)
		if want[key] {
			return
		}
		want[key] = true
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			errs = append(errs, fmt.Errorf("map %d: %w", id, err))
			return
		}
		defer m.Close()
		var inner func(uint32)
		switch m.Type() {
		case ebpf.ArrayOfMaps, ebpf.HashOfMaps:
			inner = addMap
		case ebpf.ProgramArray:
			inner = addProg
		default:
			return
		}
		// The kernel gives the ids of what the slots hold.
		var ids []uint32
		var k any
		for {
			next, err := m.NextKeyBytes(k)
			if err != nil {
				errs = append(errs, fmt.Errorf("map %d: %w", id, err))
				break
			}
			if next == nil {
				break
			}
			k = next
			v, err := m.LookupBytes(next)
			if err != nil {
				errs = append(errs, fmt.Errorf("map %d: %w", id, err))
				break
			}
			if len(v) == 4 {
				ids = append(ids, binary.NativeEndian.Uint32(v))
			}
		}
		for _, i := range ids {
			inner(i)
		}
	}
	addProg = func(progID uint32) {
		key := kindProg<<32 | uint64(progID)
		if want[key] {
			return
		}
		want[key] = true
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(progID))
		if err != nil {
			errs = append(errs, fmt.Errorf("program %d: %w", progID, err))
			return
		}
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			errs = append(errs, fmt.Errorf("program %d: %w", progID, err))
			return
		}
		mapIDs, _ := info.MapIDs()
		for _, id := range mapIDs {
			addMap(uint32(id))
		}
	}
	err := pins.List([]string{root}, pins.Options{}, func(e *pins.Entry) error {
		if e.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", e.Path, e.Error))
			return nil
		}
		switch e.Kind {
		case pins.KindMap:
			addMap(e.ID)
		case pins.KindProgram:
			addProg(e.ID)
		case pins.KindLink:
			want[kindLink<<32|uint64(e.ID)] = true
			if e.Link != nil && e.Link.ProgramID != 0 {
				addProg(e.Link.ProgramID)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	one := uint8(1)
	for key := range want {
		if err := ids.Update(key, one, ebpf.UpdateAny); err != nil {
			errs = append(errs, fmt.Errorf("protect %s %d: %w", kindName(key>>32), uint32(key), err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("guard: sync %s: %w", root, errors.Join(errs...))
	}
	var stale []uint64
	var key uint64
	var v uint8
	it := ids.Iterate()
	for it.Next(&key, &v) {
		if !want[key] && key>>32 != kindMapNoFD && key>>32 != kindMapROFD {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("guard: sync %s: %w", root, err)
	}
	for _, key := range stale {
		if err := ids.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("guard: sync %s: forget %s %d: %w", root, kindName(key>>32), uint32(key), err)
		}
	}
	return nil
}

func kindName(k uint64) string {
	switch k {
	case kindLink:
		return "link"
	case kindMap:
		return "map"
	case kindProg:
		return "program"
	case kindMapNoFD:
		return "map (no fd by id)"
	case kindMapROFD:
		return "map (read-only fds)"
	}
	return fmt.Sprintf("kind %d", k)
}

// objectIDs are the guard_ids keys of the guard's maps, programs and links.
func objectIDs(objs *guardObjects, links []link.Link) ([]uint64, error) {
	var out []uint64
	for name, m := range mapsByName(&objs.guardMaps) {
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("guard: map %s: %w", name, err)
		}
		id, _ := info.ID()
		out = append(out, kindMap<<32|uint64(id))
		switch m {
		case objs.GuardMnt:
			out = append(out, kindMapNoFD<<32|uint64(id))
		case objs.GuardCounts:
			// programs write it; a forged count misleads, nothing more
		default:
			out = append(out, kindMapROFD<<32|uint64(id))
		}
	}
	for _, p := range programs(&objs.guardPrograms) {
		info, err := p.prog.Info()
		if err != nil {
			return nil, fmt.Errorf("guard: program %s: %w", p.name, err)
		}
		id, _ := info.ID()
		out = append(out, kindProg<<32|uint64(id))
	}
	for _, l := range links {
		info, err := l.Info()
		if err != nil {
			return nil, fmt.Errorf("guard: link: %w", err)
		}
		out = append(out, kindLink<<32|uint64(info.ID))
	}
	return out, nil
}

func counter(m *ebpf.Map, i uint32) uint64 {
	var v uint64
	if err := m.Lookup(i, &v); err != nil {
		return 0
	}
	return v
}

// Disable unpins the guard below opts.Root, which detaches it. Only the
// manager (the executable that enabled it) may: for anyone else the guard
// refuses, and Disable returns ErrNotManager. The kernel detaches unpinned
// links asynchronously; Disable waits (up to 5 s) until the guard's
// programs are gone, and so no longer run.
func Disable(opts Options) error {
	root, err := opts.root()
	if err != nil {
		return err
	}
	pinDir := filepath.Join(root, Dir)
	if _, err := os.Lstat(pinDir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w at %s", ErrNotEnabled, pinDir)
		}
		return fmt.Errorf("guard: %w", err)
	}
	st, _ := Status(opts)
	if st != nil && st.Locked {
		return fmt.Errorf("%w: %s stays until the next boot", ErrLocked, pinDir)
	}
	if err := os.RemoveAll(pinDir); err != nil {
		if errors.Is(err, unix.EPERM) {
			who := "the executable that enabled it"
			if st != nil && st.Manager != "" {
				who = fmt.Sprintf("%s (device %s inode %d)", st.Manager, st.ManagerDev, st.ManagerInode)
			}
			return fmt.Errorf("%w: the guard refused to unpin %s; run bpfgate preload guard disable from %s: %v", ErrNotManager, pinDir, who, err)
		}
		return fmt.Errorf("guard: unpin %s: %w", pinDir, err)
	}
	if st == nil {
		return nil
	}
	// An unpinned link's id goes at once, but the kernel detaches it in
	// a work item after: wait for the programs, which it puts after.
	var progs []ebpf.ProgramID
	for _, l := range st.Links {
		progs = append(progs, ebpf.ProgramID(l.ProgID))
	}
	if !gone(progs, openProgram, time.Now().Add(5*time.Second)) {
		return fmt.Errorf("guard: unpinned %s, but the kernel still holds its programs after 5 s; they go when their last reference does", pinDir)
	}
	return nil
}

// Status reports whether the guard is enabled below opts.Root, what it
// protects and who manages it, or why it is not enabled. It changes nothing.
func Status(opts Options) (*State, error) {
	root, err := opts.root()
	if err != nil {
		return nil, err
	}
	pinDir := filepath.Join(root, Dir)
	s := &State{Root: root, Pins: pinDir, LSMs: activeLSMs()}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err == nil {
		k := keyOf(&st)
		s.Dev, s.Inode = devString(k.Dev), k.Ino
	}
	if _, err := os.Lstat(pinDir); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("guard: %w", err)
		}
		s.Why = "not enabled: nothing is pinned at " + pinDir
		if err := probe(); err != nil {
			s.Why += "; and enable would fail here: " + err.Error()
		}
		return s, nil
	}
	if target, err := os.Readlink(filepath.Join(pinDir, managerLink)); err == nil {
		s.Manager = target
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "maps", "guard_exes"), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
		var k inodeKey
		var v uint8
		it := m.Iterate()
		if it.Next(&k, &v) {
			s.ManagerDev, s.ManagerInode = devString(k.Dev), k.Ino
		} else if it.Err() == nil {
			s.Locked = true
		}
		m.Close()
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "maps", "guard_counts"), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
		for i, h := range hooks {
			if n := counter(m, uint32(2*i)); n > 0 {
				if s.Refused == nil {
					s.Refused = map[string]uint64{}
				}
				s.Refused[h] = n
			}
		}
		m.Close()
	}
	// Link pins open only read-write, which the guard refuses to anyone
	// but the manager: find the links by the ids the guard protects.
	have := map[string]bool{}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, "maps", "guard_ids"), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
		var k uint64
		var v uint8
		for it := m.Iterate(); it.Next(&k, &v); {
			if k>>32 != kindLink {
				continue
			}
			if ls, ok := linkState(uint32(k)); ok {
				s.Links = append(s.Links, ls)
			}
		}
		m.Close()
	}
	for _, l := range s.Links {
		if _, err := os.Lstat(filepath.Join(pinDir, "links", l.Hook)); err == nil {
			have[l.Hook] = true
		}
	}
	var missing []string
	for _, p := range programs(&guardPrograms{}) {
		if !have[p.hook] {
			missing = append(missing, p.hook)
		}
	}
	slices.SortFunc(s.Links, func(a, b LinkState) int { return strings.Compare(a.Hook, b.Hook) })
	if len(missing) > 0 {
		s.Locked = false
		s.Why = fmt.Sprintf("partly pinned at %s: no link for %s; bpfgate preload guard disable, then enable, repairs it", pinDir, strings.Join(missing, ", "))
		return s, nil
	}
	s.Enabled = true
	if !s.Locked {
		return s, nil
	}
	s.Manager = ""
	return s, nil
}

// Lock takes the manager away from the guard below opts.Root: from then
// on the guard refuses to every process what it refused to all but the
// manager, so nothing changes the tree, applies or removes preloaded
// objects, or disables the guard, until the next boot. Only the manager
// may lock (ErrNotManager); a locked guard returns ErrLocked. It cannot be
// undone.
//
// The guard knows its manager by a map of executables, which only the
// manager may write: Lock empties it, and its last deletion is the last
// write anyone can make.
func Lock(opts Options) error {
	_, m, err := openForManager(opts, "guard_exes", "lock")
	if err != nil {
		return err
	}
	defer m.Close()
	var keys []inodeKey
	var k inodeKey
	var v uint8
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("guard: lock: read the managers: %w", err)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("guard: lock: remove manager %s inode %d: %w", devString(k.Dev), k.Ino, err)
		}
	}
	if st, err := Status(opts); err != nil || !st.Locked {
		if err == nil {
			err = errors.New("status does not say locked")
		}
		return fmt.Errorf("guard: lock: the guard still has a manager after its map of managers was emptied: %w", err)
	}
	return nil
}

// linkState describes the live link id, if it runs one of the guard's
// programs.
func linkState(id uint32) (LinkState, bool) {
	l, err := link.NewFromID(link.ID(id))
	if err != nil {
		return LinkState{}, false
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return LinkState{}, false
	}
	ls := LinkState{ID: id, ProgID: uint32(info.Program)}
	pr, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return LinkState{}, false
	}
	defer pr.Close()
	pi, err := pr.Info()
	if err != nil {
		return LinkState{}, false
	}
	ls.Prog = pi.Name
	for _, p := range programs(&guardPrograms{}) {
		if p.name == pi.Name {
			ls.Hook = p.hook
			return ls, true
		}
	}
	return LinkState{}, false
}

// detach closes links that are not pinned and waits (up to 5 s) until the
// kernel has freed them, so that the guard is off when it returns.
func detach(links []link.Link) {
	var ids []link.ID
	for _, l := range links {
		if info, err := l.Info(); err == nil {
			ids = append(ids, info.ID)
		}
		l.Close()
	}
	gone(ids, openLink, time.Now().Add(5*time.Second))
}

// gone waits until open fails for each of ids (the object is gone), or the
// deadline passed, and says which is the case.
func gone[ID any](ids []ID, open func(ID) (io.Closer, error), deadline time.Time) bool {
	for _, id := range ids {
		for {
			c, err := open(id)
			if err != nil {
				break
			}
			c.Close()
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return true
}

func openLink(id link.ID) (io.Closer, error) { return link.NewFromID(id) }

func openProgram(id ebpf.ProgramID) (io.Closer, error) { return ebpf.NewProgramFromID(id) }

// probe loads one of the guard's programs, without attaching it, to learn
// whether the kernel takes BPF LSM programs at all.
func probe() error {
	spec, err := loadGuard()
	if err != nil {
		return err
	}
	var p struct {
		Mkdir *ebpf.Program `ebpf:"guard_mkdir"`
	}
	if err := spec.LoadAndAssign(&p, nil); err != nil {
		return unsupported("load", err)
	}
	return p.Mkdir.Close()
}
