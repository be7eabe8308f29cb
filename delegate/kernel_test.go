package delegate_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// kernelShows mounts a bpffs with the raw option string through mount(2),
// so the kernel parses it itself, and returns the super options it shows.
func kernelShows(t *testing.T, dir, opts string) (string, error) {
	t.Helper()
	if err := unix.Mount("bpf", dir, "bpf", 0, opts); err != nil {
		return "", err
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil || len(ms) != 1 {
		t.Fatalf("mountinfo for %s: %v (%d entries)", dir, err, len(ms))
	}
	return delegateOptions(ms[0].VFSOptions), nil
}

// delegateOptions keeps the delegate_* options of a super option string.
func delegateOptions(super string) string {
	var out []string
	for _, o := range strings.Split(super, ",") {
		if strings.HasPrefix(o, "delegate_") {
			out = append(out, o)
		}
	}
	return strings.Join(out, ",")
}

// randomOptions writes delegate options in the kernel's own syntax: names in
// random case without prefix, "any", and numbers (only first in a list,
// where the kernel's replace-not-OR quirk cannot change the meaning).
func randomOptions(r *rand.Rand, names *delegate.Names) string {
	var opts []string
	for range 1 + r.IntN(5) {
		k := delegate.Kinds[r.IntN(4)]
		list := names.List(k)
		var words []string
		if r.IntN(4) == 0 {
			v := r.Uint64() >> r.IntN(64)
			switch r.IntN(3) {
			case 0:
				words = append(words, fmt.Sprintf("%d", v))
			case 1:
				words = append(words, fmt.Sprintf("0x%x", v))
			default:
				words = append(words, fmt.Sprintf("0%o", v))
			}
		}
		for range r.IntN(6) {
			w := list[r.IntN(len(list))]
			if r.IntN(2) == 0 {
				w = strings.ToUpper(w)
			}
			words = append(words, w)
		}
		if r.IntN(30) == 0 {
			words = append(words, "any")
		}
		if len(words) == 0 {
			words = []string{list[0]}
		}
		opts = append(opts, k.Option()+"="+strings.Join(words, ":"))
	}
	return strings.Join(opts, ",")
}

// TestPrintMatchesKernel is the differential test: for many generated option
// strings, what bpfgate parses and prints equals what the kernel shows.
func TestPrintMatchesKernel(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	cases := []string{
		"delegate_cmds=0x3,delegate_cmds=prog_load",
		"delegate_cmds=any,delegate_maps=any,delegate_progs=any,delegate_attachs=any",
		"delegate_attachs=0x8000000000000000",
		"delegate_maps=cgroup_storage:percpu_cgroup_storage",
		"delegate_cmds=prog_run",
		"delegate_cmds=0xffffffffff",
		"delegate_cmds=010",
		"delegate_progs=any,delegate_maps=0",
	}
	for range 300 {
		cases = append(cases, randomOptions(r, names))
	}
	for _, opts := range cases {
		shown, err := kernelShows(t, dir, opts)
		if err != nil {
			t.Fatalf("kernel rejected %q: %v", opts, err)
		}
		set, err := names.ParseOptions(opts)
		if err != nil {
			t.Fatalf("bpfgate rejected %q, the kernel took it: %v", opts, err)
		}
		if got := names.FormatOptions(set); got != shown {
			t.Fatalf("options %q\nkernel shows  %q\nbpfgate prints %q", opts, shown, got)
		}
	}
}

// TestRejectsWhatKernelRejects: bpfgate refuses the words the kernel refuses.
func TestRejectsWhatKernelRejects(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, opts := range []string{
		"delegate_cmds=bogus", "delegate_cmds=", "delegate_cmds=prog_load::map_create",
		"delegate_cmds=-1", "delegate_cmds=0x", "delegate_cmds=08", "delegate_maps=prog_load",
		"delegate_cmds=18446744073709551616", "delegate_attachs=xdp:", "delegate_cmds=1 ",
	} {
		if _, err := kernelShows(t, dir, opts); err == nil {
			t.Fatalf("kernel accepted %q; the test expects a rejection", opts)
		}
		if _, err := names.ParseOptions(opts); err == nil {
			t.Errorf("bpfgate accepted %q, which the kernel rejects", opts)
		}
	}
}

// TestKernelNumberQuirk documents the kernel parser's replace-not-OR quirk,
// and shows that bpfgate's own mounts are immune to it.
func TestKernelNumberQuirk(t *testing.T) {
	testutil.RequireRoot(t)
	names, err := delegate.KernelNames()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	shown, err := kernelShows(t, dir, "delegate_cmds=prog_load:0x1")
	if err != nil {
		t.Fatal(err)
	}
	if shown != "delegate_cmds=map_create" {
		t.Logf("this kernel ORs numbers after names (shows %q): the quirk is fixed", shown)
	}
	set, err := names.ParseOptions("delegate_cmds=prog_load:0x1")
	if err != nil {
		t.Fatal(err)
	}
	if err := bpffs.Mount(dir, bpffs.Options{Delegation: set}); err != nil {
		t.Fatal(err)
	}
	defer bpffs.Unmount(dir)
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil || len(ms) != 1 {
		t.Fatal(err)
	}
	if got := delegateOptions(ms[0].VFSOptions); got != "delegate_cmds=map_create:prog_load" {
		t.Fatalf("bpffs.Mount shows %q", got)
	}
}
