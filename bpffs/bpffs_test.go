package bpffs_test

import (
	"errors"
	"os"
	"testing"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"golang.org/x/sys/unix"
)

func u32(v uint32) *uint32 { return &v }

func TestMountOptionsAndList(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	set, err := names.SetFlags("map_create:prog_load", "any", "xdp", "xdp")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := bpffs.Mount(dir, bpffs.Options{Delegation: set, UID: u32(1234), GID: u32(4321), Mode: u32(0o750)}); err != nil {
		t.Fatal(err)
	}
	defer bpffs.Unmount(dir)
	if ok, err := bpffs.IsBPFFS(dir); !ok || err != nil {
		t.Fatalf("IsBPFFS: %v %v", ok, err)
	}
	ms, err := bpffs.Mounts(names)
	if err != nil {
		t.Fatal(err)
	}
	var got *bpffs.Info
	for i := range ms {
		if ms[i].Path == dir {
			got = &ms[i]
		}
	}
	if got == nil {
		t.Fatalf("%s not listed in %+v", dir, ms)
	}
	if got.UID != 1234 || got.GID != 4321 || got.Mode != 0o1750 || names.Canonical(got.Delegation) != names.Canonical(set) {
		t.Fatalf("listed as %+v", got)
	}
	// The mode listed is the root's, sticky bit included.
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil || st.Mode&0o7777 != got.Mode {
		t.Errorf("root mode %o (%v), listed %o", st.Mode&0o7777, err, got.Mode)
	}
	if want := "rw,uid=1234,gid=4321,mode=750," + names.FormatOptions(set); got.Super != want {
		t.Fatalf("super options %q, want %q", got.Super, want)
	}
}

func TestMountErrors(t *testing.T) {
	testutil.RequireRoot(t)
	before, _ := os.ReadDir("/proc/self/fd")
	err := bpffs.Mount("/nonexistent/bpfgate", bpffs.Options{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing mount point: %v", err)
	}
	after, _ := os.ReadDir("/proc/self/fd")
	if len(before) != len(after) {
		t.Errorf("fds leaked: %d before, %d after", len(before), len(after))
	}
	if err := bpffs.CheckTokenSupport(); err != nil {
		t.Errorf("token support on this kernel: %v", err)
	}
}
