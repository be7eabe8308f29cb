package preload

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadFile feeds manifests to ReadFile: it never panics, every error
// points into the manifest (ErrManifest), and what it accepts has valid,
// distinct names that stay in the object's pin directory, an object path
// and a digest.
func FuzzReadFile(f *testing.F) {
	for _, seed := range []string{
		// examples/preload/counter.yaml and iterators.yaml.
		"# An XDP program counting what lo receives.\nobject: counter_bpfel.o\norder: 50\nprograms:\n  - name: count_packets\n" +
			"    attach: xdp\n    interface: lo\nmaps:\n  - name: counts\n    keep: true\n",
		"object: iterators_bpfel.o\norder: 10\nprograms:\n  - name: dump_bpf_map\n  - name: dump_bpf_prog\n",
		// The end-to-end tests' manifest.
		"object: x.o\nprograms:\n  - name: xdp_count\n    interface: veth0\n  - name: tcx_count\n    interface: veth0\n    direction: egress\n" +
			"  - name: tp_count\n  - name: cgroup_count\n    cgroup: /sys/fs/cgroup/unified/t\n  - name: iter_count\n  - name: unattached\n" +
			"    attach: none\n  - name: kprobe_count\n    attach: kprobe\n    target: do_sys_open\nmaps:\n  - name: counts\n    keep: true\n",
		"name: ../../etc\nobject: x.o\n", "name: a.b\nobject: x.o\n", "object: x.o\nprograms:\n  - name: a\n  - name: a\n",
		"object: x.o\nprogram:\n  - name: x\n", "order: 3\n", "", "object: /nonexistent/x.o\n", "object: x.o\norder: -1\n",
		"object: x.o\nmaps: [{name: m, keep: yes}]\n", "object: &o x.o\nname: *o\n", "object: x.o\nprograms: [{name: [a]}]\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.o"), []byte("not really ELF: only its bytes are read here"), 0o644); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"counter_bpfel.o", "iterators_bpfel.o"} {
		if err := os.Link(filepath.Join(dir, "x.o"), filepath.Join(dir, name)); err != nil {
			f.Fatal(err)
		}
	}
	path := filepath.Join(dir, "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := ReadFile(path)
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) && !errors.Is(err, ErrManifest) {
				t.Fatalf("error does not point into the manifest: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the manifest: %v", err)
			}
			return
		}
		if err := checkName(m.Name); err != nil {
			t.Fatalf("accepted name %q: %v", m.Name, err)
		}
		if !filepath.IsAbs(m.Object) || !strings.HasPrefix(m.Digest, "sha256-") || len(m.Digest) != len("sha256-")+64 {
			t.Fatalf("accepted object %q, digest %q", m.Object, m.Digest)
		}
		for _, names := range [][]string{progNames(m.Programs), mapNames(m.Maps)} {
			seen := map[string]bool{}
			for _, n := range names {
				if err := checkName(n); err != nil || seen[n] {
					t.Fatalf("accepted entry name %q twice or invalid: %v", n, err)
				}
				if filepath.Join("/pins", n) != "/pins/"+n {
					t.Fatalf("entry name %q leaves the pin directory", n)
				}
				seen[n] = true
			}
		}
	})
}

func progNames(ps []Program) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func mapNames(ms []Map) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}
