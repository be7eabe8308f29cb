//go:build bpflsm

// These tests need a kernel that runs BPF LSM programs (CONFIG_BPF_LSM, bpf
// in lsm=, trampolines allowed), which this project's hosts are not: they
// are built only with -tags bpflsm, which the kernel matrix (test/kernels)
// sets in its Debian 6.12 VM. There a refusal is a failure, never a skip:
//
//	CGO_ENABLED=0 go test -c -tags bpflsm -o guard.test ./preload/guard
//	CI=true ./guard.test -test.v      # as root, in the VM
//
// The VM needs /proc, /sys (with /sys/kernel/btf/vmlinux) and /sys/fs/bpf
// mounted, a writable /tmp (the tests copy the binary there: a copy is not
// the manager), and busybox's rm, mv, rmdir, mkdir, ln, chmod, mount,
// umount and sysctl in PATH.
package guard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/preload"
)

// TestMain lets a copy of the test binary act as root that is not the
// manager (a copy is another inode): GUARD_TEST_OP names what it tries.
func TestMain(m *testing.M) {
	if op := os.Getenv("GUARD_TEST_OP"); op != "" {
		var args []string
		if a := os.Getenv("GUARD_TEST_ARGS"); a != "" {
			args = strings.Split(a, "\n")
		}
		if err := helper(op, args); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", op, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helper performs one operation as a process that is not the manager.
func helper(op string, args []string) error {
	switch op {
	case "pin": // pin the map pinned at args[0] again at args[1]
		m, err := ebpf.LoadPinnedMap(args[0], &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		return m.Pin(args[1])
	case "open-map-rw": // open a map pin for writing
		m, err := ebpf.LoadPinnedMap(args[0], nil)
		if err == nil {
			m.Close()
		}
		return err
	case "open-link": // link pins open only read-write
		l, err := link.LoadPinnedLink(args[0], nil)
		if err == nil {
			l.Close()
		}
		return err
	case "detach-id":
		id, _ := strconv.Atoi(args[0])
		l, err := link.NewFromID(link.ID(id))
		if err != nil {
			return fmt.Errorf("get link %d: %w", id, err)
		}
		defer l.Close()
		return l.Detach()
	case "update-map-id": // put a zero key into the map by id
		id, _ := strconv.Atoi(args[0])
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			return fmt.Errorf("get map %d: %w", id, err)
		}
		defer m.Close()
		info, err := m.Info()
		if err != nil {
			return err
		}
		return m.Put(make([]byte, info.KeySize), make([]byte, info.ValueSize))
	case "prog-write-map": // a program of this process's own writes args[1] to key 0 of the map pinned at args[0] (or of id N: "id:N")
		var m *ebpf.Map
		var err error
		if id, ok := strings.CutPrefix(args[0], "id:"); ok {
			n, _ := strconv.Atoi(id)
			m, err = ebpf.NewMapFromID(ebpf.MapID(n))
		} else {
			m, err = ebpf.LoadPinnedMap(args[0], &ebpf.LoadPinOptions{ReadOnly: true})
		}
		if err != nil {
			return err
		}
		defer m.Close()
		v, _ := strconv.ParseInt(args[1], 0, 64)
		return progWrite(m, v)
	case "mmap-write": // write 1 to the first byte of map id args[0] through a shared writable mmap
		id, _ := strconv.Atoi(args[0])
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			return fmt.Errorf("get map %d: %w", id, err)
		}
		defer m.Close()
		b, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap map %d writable: %w", id, err)
		}
		b[0] = 1
		return unix.Munmap(b)
	case "race-update": // update key 0 of map id args[0] (an array of uint64) to args[1] through an fd swapped in after the bpf hook looked
		id, _ := strconv.Atoi(args[0])
		v, _ := strconv.ParseUint(args[1], 0, 64)
		return raceUpdate(ebpf.MapID(id), make([]byte, 4), binary.NativeEndian.AppendUint64(nil, v))
	case "race-manager": // make this executable a manager of the guard at args[0] by racing an update of its guard_exes, then disable the guard
		st, err := Status(Options{Root: args[0]})
		if err != nil {
			return err
		}
		var self unix.Stat_t
		if err := unix.Stat("/proc/self/exe", &self); err != nil {
			return err
		}
		k := keyOf(&self)
		key := make([]byte, 16)
		binary.NativeEndian.PutUint32(key, k.Dev)
		binary.NativeEndian.PutUint64(key[8:], k.Ino)
		m, err := ebpf.LoadPinnedMap(filepath.Join(st.Pins, "maps", "guard_exes"), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			return err
		}
		id, _ := info.ID()
		if err := raceUpdate(id, key, []byte{1}); err != nil {
			return err
		}
		return Disable(Options{Root: args[0]})
	case "inner-update": // update key 0 of the inner map at key 0 of the map-in-map pinned at args[0]
		outer, err := ebpf.LoadPinnedMap(args[0], &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		defer outer.Close()
		var innerID uint32
		if err := outer.Lookup(uint32(0), &innerID); err != nil {
			return fmt.Errorf("look up the inner map: %w", err)
		}
		inner, err := ebpf.NewMapFromID(ebpf.MapID(innerID))
		if err != nil {
			return fmt.Errorf("get inner map %d: %w", innerID, err)
		}
		defer inner.Close()
		return inner.Put(uint32(0), uint64(7))
	case "write": // open a file for writing and write args[1]
		return os.WriteFile(args[0], []byte(args[1]), 0)
	case "ptrace": // attach to pid args[0]
		pid, _ := strconv.Atoi(args[0])
		err := unix.PtraceSeize(pid)
		if err == nil {
			unix.PtraceDetach(pid)
		}
		return err
	case "mem": // open /proc/PID/mem of pid args[0] for writing
		f, err := os.OpenFile("/proc/"+args[0]+"/mem", os.O_RDWR, 0)
		if err == nil {
			f.Close()
		}
		return err
	case "mount": // mount args[0] (a type, or "bind" of /) on args[1]
		if args[0] == "bind" {
			return unix.Mount("/", args[1], "", unix.MS_BIND, "")
		}
		return unix.Mount("none", args[1], args[0], 0, "")
	case "set-exe": // make args[0] this process's executable link
		f, err := os.Open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Prctl(unix.PR_SET_MM, unix.PR_SET_MM_EXE_FILE, f.Fd(), 0, 0)
	case "set-name": // other prctls still work
		// PR_SET_NAME names the calling thread: stay on it, and read its
		// own comm (the process's is the main thread's).
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("guardtest\x00")[0])), 0, 0, 0); err != nil {
			return err
		}
		comm, err := os.ReadFile("/proc/thread-self/comm")
		if err != nil {
			return err
		}
		if string(comm) != "guardtest\n" {
			return fmt.Errorf("prctl(PR_SET_NAME) returned 0 but comm is %q", comm)
		}
		return nil
	case "unlink":
		return os.Remove(args[0])
	case "rename":
		return os.Rename(args[0], args[1])
	case "disable":
		return Disable(Options{Root: args[0]})
	case "lock":
		return Lock(Options{Root: args[0]})
	case "sync":
		return Sync(Options{Root: args[0]})
	case "exec-traced": // run args[0] traced
		cmd := exec.Command(args[0], "-test.run=^$")
		cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		cmd.Process.Kill()
		cmd.Wait()
		return nil
	}
	return fmt.Errorf("unknown op %q", op)
}

type lab struct {
	t       *testing.T
	parent  string // a tmpfs the bpffs is mounted on
	mnt     string // the test's bpffs
	root    string // the protected tree, mnt/bpfgate
	scratch string // an unprotected directory on the same bpffs
	copy    string // a copy of this test binary: root, but not the manager
	opts    Options
	locked  bool // the guard was locked: it and its mounts stay until reboot
}

// newLab mounts a bpffs with a preload-like tree and a scratch directory,
// and enables the guard on the tree, as this process (the manager).
func newLab(t *testing.T) *lab {
	testutil.RequireRoot(t)
	// The bpffs is mounted on a tmpfs of its own, so that the test can try
	// to unmount the bpffs's parent lazily.
	parent := testutil.PublicDir(t)
	if err := unix.Mount("tmpfs", parent, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, parent: parent, mnt: filepath.Join(parent, "bpf")}
	t.Cleanup(func() {
		if !l.locked {
			unix.Unmount(parent, unix.MNT_DETACH)
		}
	})
	if err := os.Mkdir(l.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", l.mnt, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l.locked {
			return
		}
		if err := unix.Unmount(l.mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("cleanup: unmount the bpffs: %v", err)
		}
	})
	l.root = filepath.Join(l.mnt, "bpfgate")
	l.scratch = filepath.Join(l.mnt, "scratch")
	l.opts = Options{Root: l.root}
	for _, d := range []string{"demo/maps", "demo/links", "../scratch"} {
		if err := os.MkdirAll(filepath.Join(l.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l.newMap("demo/maps/counts")
	l.newMap("../scratch/other")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l.copy = filepath.Join(t.TempDir(), "copy-of-the-manager")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(l.copy, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()

	st, err := Enable(l.opts)
	if err != nil {
		t.Fatalf("Enable on a kernel that should run BPF LSM programs (%s): %v", kernelRelease(), err)
	}
	t.Cleanup(func() {
		if l.locked {
			return
		}
		if _, err := os.Lstat(filepath.Join(l.root, Dir)); err == nil {
			if err := Disable(l.opts); err != nil {
				t.Errorf("cleanup: Disable: %v", err)
			}
		}
	})
	if !st.Enabled || len(st.Links) != len(programs(&guardPrograms{})) {
		t.Fatalf("after Enable, Status says: %+v", st)
	}
	return l
}

func kernelRelease() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

func (l *lab) newMap(rel string) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		l.t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(filepath.Join(l.root, rel)); err != nil {
		l.t.Fatal(err)
	}
}

// refused runs argv (a tool, or "copy" for the copy of this binary with
// GUARD_TEST_OP=argv[1]) and wants it to fail with the error want.
func (l *lab) refused(want string, argv ...string) {
	l.t.Helper()
	out, err := l.run(argv...)
	if err == nil {
		l.t.Errorf("%q as root (not the manager) succeeded: %s", argv, out)
		return
	}
	if !strings.Contains(strings.ToLower(out), want) {
		l.t.Errorf("%q failed, but not with %q: %v: %s", argv, want, err, out)
	}
}

func (l *lab) allowed(argv ...string) {
	l.t.Helper()
	if out, err := l.run(argv...); err != nil {
		l.t.Errorf("%q: %v: %s", argv, err, out)
	}
}

func (l *lab) run(argv ...string) (string, error) {
	var cmd *exec.Cmd
	if argv[0] == "copy" {
		cmd = exec.Command(l.copy)
		cmd.Env = append(os.Environ(), "GUARD_TEST_OP="+argv[1], "GUARD_TEST_ARGS="+strings.Join(argv[2:], "\n"))
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (l *lab) exists(rel string) {
	l.t.Helper()
	if _, err := os.Lstat(filepath.Join(l.root, rel)); err != nil {
		l.t.Errorf("%s is gone: %v", rel, err)
	}
}

func (l *lab) p(rel string) string { return filepath.Join(l.root, rel) }

// mapID is the id of the map pinned at rel.
func (l *lab) mapID(rel string) ebpf.MapID {
	l.t.Helper()
	m, err := ebpf.LoadPinnedMap(l.p(rel), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		l.t.Fatal(err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		l.t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// protectedIDs are the keys of guard_ids.
func (l *lab) protectedIDs() map[uint64]bool {
	l.t.Helper()
	m, err := ebpf.LoadPinnedMap(l.p(Dir+"/maps/guard_ids"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		l.t.Fatal(err)
	}
	defer m.Close()
	ids := map[uint64]bool{}
	var k uint64
	var v uint8
	for it := m.Iterate(); it.Next(&k, &v); {
		ids[k] = true
	}
	return ids
}

// guardIDs finds the ids of one of the guard's links and maps.
func (l *lab) guardIDs() (linkID, exesID uint32) {
	st, err := Status(l.opts)
	if err != nil || len(st.Links) == 0 {
		l.t.Fatalf("Status: %+v %v", st, err)
	}
	return st.Links[0].ID, uint32(l.mapID(Dir + "/maps/guard_exes"))
}

// TestGuardRefusesRoot: every way root (a process that is not the manager)
// could change the tree, the guard or switch it off returns EPERM, and the
// tree is as it was.
func TestGuardRefusesRoot(t *testing.T) {
	l := newLab(t)
	linkID, exesID := l.guardIDs()
	exe, _ := os.Executable()
	self := strconv.Itoa(os.Getpid())
	ftraceBefore, _ := os.ReadFile("/proc/sys/kernel/ftrace_enabled")
	countsID := l.mapID("demo/maps/counts")
	decoy := filepath.Join(filepath.Dir(exe), "decoy")
	if err := os.WriteFile(decoy, []byte("not the manager"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(decoy) })

	tests := []struct {
		name string
		argv []string
		want string // the error, if not EPERM
	}{
		{name: "rm a pin", argv: []string{"rm", l.p("demo/maps/counts")}},
		{name: "mv a pin out", argv: []string{"mv", l.p("demo/maps/counts"), l.scratch + "/stolen"}},
		{name: "mv a pin in", argv: []string{"mv", l.scratch + "/other", l.p("demo/maps/intruder")}},
		{name: "mv the tree", argv: []string{"mv", l.root, l.mnt + "/elsewhere"}},
		{name: "rm -rf the tree", argv: []string{"rm", "-rf", l.root}},
		{name: "rmdir", argv: []string{"rmdir", l.p("demo/links")}},
		{name: "mkdir", argv: []string{"mkdir", l.p("demo/intruder")}},
		{name: "symlink", argv: []string{"ln", "-s", "/", l.p("demo/intruder")}},
		{name: "pin into the tree", argv: []string{"copy", "pin", l.scratch + "/other", l.p("demo/maps/intruder")}},
		{name: "chmod", argv: []string{"chmod", "777", l.p("demo/maps/counts")}},
		{name: "chmod the root", argv: []string{"chmod", "777", l.root}},
		{name: "open a preloaded map for writing", argv: []string{"copy", "open-map-rw", l.p("demo/maps/counts")}},
		{name: "umount", argv: []string{"umount", l.mnt}},
		{name: "umount -l", argv: []string{"umount", "-l", l.mnt}},
		{name: "umount -l the bpffs's parent", argv: []string{"umount", "-l", l.parent}},
		{name: "mount over the tree", argv: []string{"copy", "mount", "tmpfs", l.root}},
		{name: "mount over the bpffs", argv: []string{"copy", "mount", "tmpfs", l.mnt}},
		{name: "bind over a directory", argv: []string{"copy", "mount", "bind", l.p("demo/links")}},
		{name: "open a guard link pin (detach pinned)", argv: []string{"copy", "open-link", l.p(Dir + "/links/inode_unlink")}},
		{name: "detach a guard link by id", argv: []string{"copy", "detach-id", strconv.Itoa(int(linkID))}},
		{name: "update a guard map by id", argv: []string{"copy", "update-map-id", strconv.Itoa(int(exesID))}},
		{name: "open a guard map pin for writing", argv: []string{"copy", "open-map-rw", l.p(Dir + "/maps/guard_exes")}},
		// pinned before enable, which protects it by id too
		{name: "update a preloaded map by id", argv: []string{"copy", "update-map-id", strconv.Itoa(int(countsID))}},
		{name: "sync", argv: []string{"copy", "sync", l.root}, want: ErrNotManager.Error()},
		{name: "rm the guard's pins", argv: []string{"rm", "-rf", l.p(Dir)}},
		{name: "sysctl kernel.ftrace_enabled=0", argv: []string{"sysctl", "-w", "kernel.ftrace_enabled=0"}},
		{name: "write ftrace_enabled", argv: []string{"copy", "write", "/proc/sys/kernel/ftrace_enabled", "0\n"}},
		{name: "chmod the manager's executable", argv: []string{"chmod", "700", exe}},
		{name: "ptrace the manager", argv: []string{"copy", "ptrace", self}},
		// ptrace_may_access fails, and proc turns that into EACCES
		{name: "write the manager's memory", argv: []string{"copy", "mem", self}, want: "permission denied"},
		{name: "exec the manager traced", argv: []string{"copy", "exec-traced", exe}},
		// without the guard: EBUSY, the copy's own file is still mapped
		{name: "prctl PR_SET_MM_EXE_FILE to the manager", argv: []string{"copy", "set-exe", exe}},
		// Freeing the manager's inode would let a new file get its number
		// and be the manager. Last: without the guard, they succeed.
		{name: "unlink the manager's executable", argv: []string{"copy", "unlink", exe}},
		{name: "rename over the manager's executable", argv: []string{"copy", "rename", decoy, exe}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.t = t
			want := tt.want
			if want == "" {
				want = "operation not permitted"
			}
			l.refused(want, tt.argv...)
		})
	}
	l.t = t
	for _, rel := range []string{"demo/maps/counts", "demo/links", Dir + "/links/inode_unlink", Dir + "/maps/guard_exes"} {
		l.exists(rel)
	}
	if b, err := os.ReadFile(exe); err != nil || string(b) == "not the manager" {
		t.Errorf("the manager's executable was replaced or removed: %v", err)
	}
	for _, rel := range []string{"demo/maps/intruder", "demo/intruder"} {
		if _, err := os.Lstat(l.p(rel)); err == nil {
			t.Errorf("%s was made", rel)
		}
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/ftrace_enabled"); string(now) != string(ftraceBefore) {
		t.Errorf("ftrace_enabled was %q, now %q", ftraceBefore, now)
	}
	st, err := Status(l.opts)
	if err != nil || !st.Enabled {
		t.Fatalf("after the attempts, Status: %+v %v", st, err)
	}
	// Removing and creating in the tree are refused first by
	// inode_permission (MAY_WRITE on the directory), before the unlink,
	// rmdir, mkdir and create hooks.
	for _, h := range []string{"unlink", "rename", "setattr", "permission", "umount", "mount", "bpf", "file_open", "ptrace", "exec", "prctl"} {
		if st.Refused[h] == 0 {
			t.Errorf("no refusal counted for %s: %v", h, st.Refused)
		}
	}

	// Other prctl(2) calls still do what they say.
	l.allowed("copy", "set-name")

	// Another mount of the same bpffs (a container's bind mount) may come
	// and go: the tree's own mount keeps the bpffs alive.
	other := filepath.Join(l.parent, "other")
	l.allowed("mkdir", other)
	l.allowed("mount", "--bind", l.mnt, other)
	l.allowed("umount", other)

	// Unprotected paths of the same bpffs are not affected.
	l.allowed("rm", l.scratch+"/other")
	l.allowed("mkdir", l.scratch+"/d")
	l.allowed("rmdir", l.scratch+"/d")
}

// TestGuardManager: the manager still changes the tree: preload applies
// and removes objects, and plain pins, renames and removals work.
func TestGuardManager(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	// The guard's own object serves as a preloaded object: its programs
	// attach with empty maps, so this second copy refuses nothing.
	if err := os.WriteFile(filepath.Join(dir, "guard.o"), _GuardBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	manifest := "object: guard.o\nprograms:\n  - name: guard_mkdir\n    attach: lsm\nmaps:\n  - name: guard_counts\n    keep: true\n"
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	ms, err := preload.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	popts := preload.Options{Root: l.root}
	if rs, err := preload.Apply(ms, popts); err != nil {
		t.Fatalf("preload apply by the manager: %v %+v", err, rs)
	}
	l.exists("extra/links/guard_mkdir")
	// bpfgate preload apply syncs the guard after applying; the library
	// caller does it itself. Then the new link, its program, the kept map
	// and the program's other maps are protected by id too.
	if err := Sync(l.opts); err != nil {
		t.Fatalf("Sync by the manager: %v", err)
	}
	ln, err := link.LoadPinnedLink(l.p("extra/links/guard_mkdir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	linfo, err := ln.Info()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(linfo.Program))
	if err != nil {
		t.Fatal(err)
	}
	pinfo, err := prog.Info()
	prog.Close()
	if err != nil {
		t.Fatal(err)
	}
	usedMaps, _ := pinfo.MapIDs()
	keptID := l.mapID("extra/maps/guard_counts")
	if len(usedMaps) < 2 || !slices.Contains(usedMaps, keptID) {
		t.Fatalf("the program uses maps %v, want guard_counts (%d) and more", usedMaps, keptID)
	}
	ids := l.protectedIDs()
	extra := []uint64{kindLink<<32 | uint64(linfo.ID), kindProg<<32 | uint64(linfo.Program)}
	for _, id := range usedMaps {
		extra = append(extra, kindMap<<32|uint64(id))
	}
	for _, k := range extra {
		if !ids[k] {
			t.Errorf("after Sync, %s %d is not protected by id", kindName(k>>32), uint32(k))
		}
	}
	l.refused("operation not permitted", "copy", "detach-id", strconv.Itoa(int(linfo.ID)))
	for _, id := range usedMaps {
		l.refused("operation not permitted", "copy", "update-map-id", strconv.Itoa(int(id)))
	}
	l.exists("extra/links/guard_mkdir")
	// An upgrade: a changed manifest is built in @staging and swapped in.
	if err := os.WriteFile(filepath.Join(dir, "extra.yaml"), []byte(manifest+"order: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ms, err = preload.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	rs, err := preload.Apply(ms, popts)
	if err != nil || len(rs) != 1 || rs[0].Action != preload.Replaced {
		t.Fatalf("preload upgrade by the manager: %v %+v", err, rs)
	}
	states, err := preload.Status(ms, popts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		switch {
		case s.Name == "extra" && s.State != preload.StateApplied, strings.HasPrefix(s.Name, "@"):
			t.Errorf("preload status with the guard on: %+v", s)
		}
	}
	if err := preload.Remove("extra", popts); err != nil {
		t.Fatalf("preload remove by the manager: %v", err)
	}
	if err := Sync(l.opts); err != nil {
		t.Fatalf("Sync after remove: %v", err)
	}
	ids = l.protectedIDs()
	for _, k := range []uint64{kindMap<<32 | uint64(keptID)} {
		if ids[k] {
			t.Errorf("after remove and Sync, %s %d is still protected", kindName(k>>32), uint32(k))
		}
	}
	if !ids[kindMap<<32|uint64(l.mapID("demo/maps/counts"))] || len(ids) < len(programs(&guardPrograms{})) {
		t.Errorf("after remove and Sync, the rest is not protected: %v", ids)
	}
	if _, err := os.Lstat(l.p("extra")); err == nil {
		t.Error("preload remove left the tree")
	}
	if err := os.Rename(l.p("demo/maps/counts"), l.p("demo/maps/renamed")); err != nil {
		t.Errorf("rename by the manager: %v", err)
	}
	if err := os.Remove(l.p("demo/maps/renamed")); err != nil {
		t.Errorf("unlink by the manager: %v", err)
	}
	if err := os.Remove(l.p("demo/links")); err != nil {
		t.Errorf("rmdir by the manager: %v", err)
	}
}

// TestGuardDisable: a process that is not the manager cannot disable the
// guard; the manager can, and then root may do everything again.
func TestGuardDisable(t *testing.T) {
	l := newLab(t)
	st, err := Status(l.opts)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if st.Manager != exe || st.ManagerInode == 0 || st.Dev == "" || st.Inode == 0 {
		t.Errorf("Status does not say what is protected and by whom: %+v", st)
	}
	var ids []link.ID
	for _, ls := range st.Links {
		ids = append(ids, link.ID(ls.ID))
	}

	if err := Disable(l.opts); err != nil {
		t.Fatalf("Disable by the manager: %v", err)
	}
	for _, id := range ids {
		if ln, err := link.NewFromID(id); err == nil {
			ln.Close()
			t.Errorf("link %d still exists after Disable", id)
		}
	}
	st, err = Status(l.opts)
	if err != nil || st.Enabled || !strings.Contains(st.Why, "not enabled") {
		t.Errorf("Status after Disable: %+v %v", st, err)
	}
	l.allowed("chmod", "700", l.p("demo/maps/counts"))
	l.allowed("copy", "open-map-rw", l.p("demo/maps/counts"))
	l.allowed("mv", l.p("demo/maps/counts"), l.scratch+"/moved")
	l.allowed("mkdir", l.p("demo/new"))
	l.allowed("rm", "-rf", l.root)
	l.allowed("copy", "write", "/proc/sys/kernel/ftrace_enabled", "1\n")
}

// TestGuardDisableRefusedToRoot: Disable from another executable (a copy)
// is refused with ErrNotManager, and the guard stays.
func TestGuardDisableRefusedToRoot(t *testing.T) {
	l := newLab(t)
	out, err := l.run("copy", "disable", l.root)
	if err == nil || !strings.Contains(out, ErrNotManager.Error()) {
		t.Errorf("disable by a copy of the manager: %v: %s", err, out)
	}
	if st, err := Status(l.opts); err != nil || !st.Enabled {
		t.Errorf("after a refused disable: %+v %v", st, err)
	}
	if _, err := Enable(l.opts); !errors.Is(err, ErrEnabled) {
		t.Errorf("a second Enable: %v, want ErrEnabled", err)
	}
}

// TestGuardLock: Lock takes the manager away. A copy of the manager may not
// lock; after the manager locks, its own renames, unlinks, preload remove,
// Disable and ftrace_enabled writes are refused like anyone's, Status says
// locked, and a second Lock says ErrLocked. It cannot be undone: the guard
// and the test's mounts stay until the VM powers off, so test/kernels runs
// this test alone, in a VM of its own, and the other runs skip it.
func TestGuardLock(t *testing.T) {
	l := newLab(t)
	out, err := l.run("copy", "lock", l.root)
	if err == nil || !strings.Contains(out, ErrNotManager.Error()) {
		t.Errorf("lock by a copy of the manager: %v: %s", err, out)
	}
	if st, err := Status(l.opts); err != nil || st.Locked || st.Manager == "" {
		t.Fatalf("after a refused lock: %+v %v", st, err)
	}
	l.locked = true
	if err := Lock(l.opts); err != nil {
		t.Fatalf("Lock by the manager: %v", err)
	}
	st, err := Status(l.opts)
	if err != nil || !st.Enabled || !st.Locked || st.Manager != "" || st.ManagerInode != 0 {
		t.Errorf("Status after Lock: %+v %v", st, err)
	}
	for what, err := range map[string]error{
		"rename":  os.Rename(l.p("demo/maps/counts"), l.p("demo/maps/renamed")),
		"unlink":  os.Remove(l.p("demo/maps/counts")),
		"mkdir":   os.Mkdir(l.p("demo/new"), 0o755),
		"remove":  preload.Remove("demo", preload.Options{Root: l.root}),
		"ftrace":  os.WriteFile("/proc/sys/kernel/ftrace_enabled", []byte("1\n"), 0),
		"unmount": unix.Unmount(l.mnt, unix.MNT_DETACH),
	} {
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("%s by the former manager after Lock: %v, want EPERM", what, err)
		}
	}
	l.exists("demo/maps/counts")
	if err := Disable(l.opts); !errors.Is(err, ErrLocked) {
		t.Errorf("Disable of a locked guard: %v, want ErrLocked", err)
	}
	if err := Lock(l.opts); !errors.Is(err, ErrLocked) {
		t.Errorf("a second Lock: %v, want ErrLocked", err)
	}
	l.refused("operation not permitted", "rm", "-rf", l.root)
	l.refused(ErrLocked.Error(), "copy", "disable", l.root)
	if st, err := Status(l.opts); err != nil || !st.Enabled || !st.Locked {
		t.Errorf("the guard after all that: %+v %v", st, err)
	}
}

// progWrite loads a socket filter of its own that stores v at key 0 of m
// (an array with 8-byte values), and runs it once. The kernel lets a
// program use a map through any fd of it, a read-only one too; only
// BPF_F_RDONLY_PROG on the map keeps programs from writing it.
func progWrite(m *ebpf.Map, v int64) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.LoadImm(asm.R1, v, asm.DWord),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("load a program writing the map: %w", err)
	}
	defer prog.Close()
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		return fmt.Errorf("run it: %w", err)
	}
	return nil
}

// raceUpdate tries, for up to 10 s, BPF_MAP_UPDATE_ELEM of key to value
// on an fd number that holds a map of its own when the bpf hook reads it,
// and the map id (an fd from its id) when the kernel takes it: another
// thread swaps them with dup2. It returns nil once the map holds value, an
// error if it never did.
func raceUpdate(id ebpf.MapID, key, value []byte) error {
	target, err := ebpf.NewMapFromID(id)
	if err != nil {
		return fmt.Errorf("get map %d: %w", id, err)
	}
	defer target.Close()
	decoy, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: uint32(len(key)), ValueSize: uint32(len(value)), MaxEntries: 4})
	if err != nil {
		return err
	}
	defer decoy.Close()
	slot, err := unix.Dup(decoy.FD())
	if err != nil {
		return err
	}
	defer unix.Close(slot)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer close(done)
		for !stop.Load() {
			unix.Dup2(target.FD(), slot)
			unix.Dup2(decoy.FD(), slot)
		}
	}()
	defer func() { stop.Store(true); <-done }()
	attr := struct {
		mapFD uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}{mapFD: uint32(slot), key: uint64(uintptr(unsafe.Pointer(&key[0]))), value: uint64(uintptr(unsafe.Pointer(&value[0])))}
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		unix.Syscall(unix.SYS_BPF, 2 /* BPF_MAP_UPDATE_ELEM */, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if n%64 == 0 {
			if got, err := target.LookupBytes(key); err == nil && bytes.Equal(got, value) {
				return nil
			}
		}
	}
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return fmt.Errorf("map %d never held %x at %x: %w", id, value, key, unix.EPERM)
}

// readU64 is key 0 of the array pinned at rel, as the manager reads it.
func (l *lab) readU64(rel string) uint64 {
	l.t.Helper()
	m, err := ebpf.LoadPinnedMap(l.p(rel), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		l.t.Fatal(err)
	}
	defer m.Close()
	var v uint64
	if err := m.Lookup(uint32(0), &v); err != nil {
		l.t.Fatal(err)
	}
	return v
}

// TestGuardProgramWrites: a program of root's own may not write the
// guard's record of the tree's mount, which only the guard's programs
// write (and so cannot be BPF_F_RDONLY_PROG): with a bogus one there, the
// tree's bpffs could be unmounted, and every pin in it, the guard's links
// included, would go.
func TestGuardProgramWrites(t *testing.T) {
	l := newLab(t)
	id := l.guardMapID("guard_mnt")
	if _, err := os.Lstat(l.p(Dir + "/maps/guard_mnt")); err == nil {
		l.refused("operation not permitted", "copy", "prog-write-map", l.p(Dir+"/maps/guard_mnt"), "1")
	}
	l.refused("operation not permitted", "copy", "prog-write-map", "id:"+strconv.Itoa(int(id)), "1")
	l.refused("operation not permitted", "umount", "-l", l.mnt)
	if st, err := Status(l.opts); err != nil || !st.Enabled {
		t.Fatalf("after the attempts, Status: %+v %v", st, err)
	}
}

// guardMapID finds the id of the guard's map name through its programs.
func (l *lab) guardMapID(name string) ebpf.MapID {
	l.t.Helper()
	st, err := Status(l.opts)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, ls := range st.Links {
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(ls.ProgID))
		if err != nil {
			l.t.Fatal(err)
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			l.t.Fatal(err)
		}
		ids, _ := info.MapIDs()
		for _, id := range ids {
			m, err := ebpf.NewMapFromID(id)
			if err != nil {
				continue
			}
			mi, err := m.Info()
			m.Close()
			if err == nil && mi.Name == name {
				return id
			}
		}
	}
	l.t.Fatalf("no map %s among the guard programs' maps", name)
	return 0
}

// TestGuardRaceManager: the bpf hook looks at an fd's object before the
// kernel does, so another thread's dup2 in between would let root's update
// of guard_exes through, making root's executable a manager (which undoes
// Lock too). Write-mode fds of the guard's own maps are refused to all but
// the manager, and a read-only fd cannot update.
func TestGuardRaceManager(t *testing.T) {
	l := newLab(t)
	l.refused("operation not permitted", "copy", "race-manager", l.root)
	if st, err := Status(l.opts); err != nil || !st.Enabled {
		t.Fatalf("after the race, Status: %+v %v", st, err)
	}
}

// TestGuardInnerMaps: the maps inside a map-in-map pinned in the tree are
// protected by id too, once synced.
func TestGuardInnerMaps(t *testing.T) {
	l := newLab(t)
	innerSpec := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1}
	inner, err := ebpf.NewMap(innerSpec)
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	outer, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: innerSpec})
	if err != nil {
		t.Fatal(err)
	}
	defer outer.Close()
	if err := outer.Put(uint32(0), inner); err != nil {
		t.Fatal(err)
	}
	if err := outer.Pin(l.p("demo/maps/outer")); err != nil {
		t.Fatal(err)
	}
	if err := Sync(l.opts); err != nil {
		t.Fatal(err)
	}
	l.refused("operation not permitted", "copy", "inner-update", l.p("demo/maps/outer"))
	var v uint64
	if err := inner.Lookup(uint32(0), &v); err != nil || v != 0 {
		t.Errorf("the inner map holds %d (%v), want 0", v, err)
	}
}

// TestGuardMmap: a BPF_F_MMAPABLE map of the tree is not written through
// a shared writable mapping of an fd from its id (the guard gives no
// write-mode fd of it).
func TestGuardMmap(t *testing.T) {
	l := newLab(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: 1 << 10 /* BPF_F_MMAPABLE */})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(l.p("demo/maps/mmapable")); err != nil {
		t.Fatal(err)
	}
	if err := Sync(l.opts); err != nil {
		t.Fatal(err)
	}
	id := l.mapID("demo/maps/mmapable")
	l.refused("operation not permitted", "copy", "mmap-write", strconv.Itoa(int(id)))
	if v := l.readU64("demo/maps/mmapable"); v != 0 {
		t.Errorf("the mmapable map holds %#x", v)
	}
}

// TestGuardRaceTreeMap: the bpf hook reads the fd's object before the
// kernel does; another thread's dup2 in between would make the kernel
// update a protected map, had the racer a write-mode fd of it.
func TestGuardRaceTreeMap(t *testing.T) {
	l := newLab(t)
	id := l.mapID("demo/maps/counts")
	l.refused("operation not permitted", "copy", "race-update", strconv.Itoa(int(id)), "0x5678")
	if v := l.readU64("demo/maps/counts"); v != 0 {
		t.Errorf("the preloaded map holds %#x", v)
	}
}
