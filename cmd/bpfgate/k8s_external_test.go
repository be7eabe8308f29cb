//go:build !k8s

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/spf13/cobra"
)

func init() {
	nonReporting["bpfgate k8s"] = true // hands over to bpfgate-k8s
}

// TestK8sHandsOver: this build has no Kubernetes components; `bpfgate k8s`
// says how to get them, and runs bpfgate-k8s (the -tags k8s build) from
// its own directory with the global flags passed on.
func TestK8sHandsOver(t *testing.T) {
	r := bpfgate(t, "k8s", "device-plugin")
	if r.code == 0 || !strings.Contains(r.stderr, "go build -tags k8s") {
		t.Fatalf("without bpfgate-k8s: %+v", r)
	}
	dir := t.TempDir()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, b := range []struct{ out, tags string }{{"bpfgate", ""}, {"bpfgate-k8s", "k8s"}} {
		if out, err := exec.Command(goTool, "build", "-tags", b.tags, "-o", filepath.Join(dir, b.out), ".").CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.out, err, out)
		}
	}
	lean, err := os.Stat(filepath.Join(dir, "bpfgate"))
	if err != nil {
		t.Fatal(err)
	}
	full, err := os.Stat(filepath.Join(dir, "bpfgate-k8s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bpfgate %d bytes, bpfgate-k8s %d bytes", lean.Size(), full.Size())
	// --json before k8s must reach bpfgate-k8s: its refusal is JSON.
	out, err := exec.Command(filepath.Join(dir, "bpfgate"), "--json", "k8s", "device-plugin", "--devices", "0").Output()
	var e errorJSON
	if err == nil || json.Unmarshal(out, &e) != nil || !strings.Contains(e.Error, "--devices 0") {
		t.Fatalf("through bpfgate-k8s: %v, %q", err, out)
	}
	// Completion after k8s comes from bpfgate-k8s: its subcommands, and
	// a subcommand's flags.
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"k8s", ""}, []string{"device-plugin", "dra", "nri"}},
		{[]string{"k8s", "device-plugin", "--dev"}, []string{"--devices"}},
	} {
		out, err := exec.Command(filepath.Join(dir, "bpfgate"), append([]string{"__complete"}, tc.args...)...).Output()
		for _, w := range tc.want {
			if err != nil || !strings.Contains(string(out), "\n"+w) && !strings.HasPrefix(string(out), w) {
				t.Errorf("completion of %q: %v, %q lacks %s", tc.args, err, out, w)
			}
		}
	}
	// A bpfgate-k8s others may write is not run, not even to complete.
	if err := os.Chmod(filepath.Join(dir, "bpfgate-k8s"), 0o777); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(filepath.Join(dir, "bpfgate"), "--json", "k8s", "device-plugin", "--devices", "0").Output()
	if err == nil || json.Unmarshal(out, &e) != nil || !strings.Contains(e.Error, "refusing to run it") {
		t.Fatalf("a world-writable bpfgate-k8s: %v, %q", err, out)
	}
	if out, err := exec.Command(filepath.Join(dir, "bpfgate"), "__complete", "k8s", "").Output(); err != nil || strings.Contains(string(out), "device-plugin") {
		t.Errorf("completion through a world-writable bpfgate-k8s: %v, %q", err, out)
	}
}

// TestHookBinary: bpfgate-k8s names the lean bpfgate next to it as the
// hook, but only one that only root can have written; any other binary
// names itself.
func TestHookBinary(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		exe  string
		lean func(path string) error // makes DIR/bpfgate, or nil for none
		want string                  // "exe" or "lean"
	}{
		{"bpfgate itself", "bpfgate", nil, "exe"},
		{"bpfgate-k8s with a lean bpfgate", "bpfgate-k8s", writeMode(0o755), "lean"},
		{"bpfgate-k8s alone", "bpfgate-k8s", nil, "exe"},
		{"lean bpfgate writable by its group", "bpfgate-k8s", writeMode(0o775), "exe"},
		{"lean bpfgate writable by anyone", "bpfgate-k8s", writeMode(0o757), "exe"},
		{"lean bpfgate not executable", "bpfgate-k8s", writeMode(0o644), "exe"},
		{"lean bpfgate owned by another user", "bpfgate-k8s", func(p string) error {
			if err := writeMode(0o755)(p); err != nil {
				return err
			}
			return os.Chown(p, 65534, 65534)
		}, "exe"},
		{"lean bpfgate a directory", "bpfgate-k8s", func(p string) error { return os.Mkdir(p, 0o755) }, "exe"},
		// Only root can have made it in a directory only root can write,
		// as bpfgate-k8s itself.
		{"lean bpfgate a symlink to a root binary", "bpfgate-k8s", func(p string) error { return os.Symlink("/bin/true", p) }, "lean"},
		{"lean bpfgate a symlink to another user's binary", "bpfgate-k8s", func(p string) error {
			other := p + ".other"
			if err := writeMode(0o755)(other); err != nil {
				return err
			}
			if err := os.Chown(other, 65534, 65534); err != nil {
				return err
			}
			return os.Symlink(other, p)
		}, "exe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			exe, lean := filepath.Join(dir, tc.exe), filepath.Join(dir, "bpfgate")
			if tc.exe != "bpfgate" {
				if err := writeMode(0o755)(exe); err != nil {
					t.Fatal(err)
				}
			}
			if tc.lean != nil {
				if err := tc.lean(lean); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]string{"exe": exe, "lean": lean}[tc.want]
			if got := hookBinary(exe); got != want {
				t.Errorf("hookBinary(%s) = %s, want %s", exe, got, want)
			}
		})
	}
}

func writeMode(mode os.FileMode) func(string) error {
	return func(p string) error {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o600); err != nil {
			return err
		}
		return os.Chmod(p, mode)
	}
}

// TestCheckK8sBinaryDir: a bpfgate-k8s that root owns is still not run
// from a directory others may write, where they could swap it (or a
// symlink to any root-owned program) in between the check and the exec.
func TestCheckK8sBinaryDir(t *testing.T) {
	testutil.RequireRoot(t) // needs files owned by root
	base := t.TempDir()
	mk := func(dir string, mode os.FileMode) string {
		t.Helper()
		d := filepath.Join(base, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, "bpfgate-k8s")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		path string
		ok   bool
	}{
		{"private directory", mk("private", 0o755), true},
		{"sticky shared directory", mk("sticky", os.ModeSticky|0o777), true},
		{"world-writable directory", mk("open", 0o777), false},
		{"group-writable directory", mk("group", 0o775), false},
		{"below a world-writable directory", mk("open2/sub", 0o755), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "below a world-writable directory" {
				if err := os.Chmod(filepath.Join(base, "open2"), 0o777); err != nil {
					t.Fatal(err)
				}
			}
			_, err := checkK8sBinary(tc.path)
			if (err == nil) != tc.ok || err != nil && !strings.Contains(err.Error(), "refusing to run") {
				t.Errorf("checkK8sBinary(%s): %v, want ok %v", tc.path, err, tc.ok)
			}
		})
	}
	t.Run("symlink in a world-writable directory", func(t *testing.T) {
		d := filepath.Join(base, "links")
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o777)
		link := filepath.Join(d, "bpfgate-k8s")
		if err := os.Symlink(filepath.Join(base, "private", "bpfgate-k8s"), link); err != nil {
			t.Fatal(err)
		}
		if _, err := checkK8sBinary(link); err == nil {
			t.Errorf("checkK8sBinary(%s) let a link others may replace through", link)
		}
	})
}

func TestParseCompletions(t *testing.T) {
	for _, tc := range []struct {
		in    string
		comps []string
		d     cobra.ShellCompDirective
	}{
		{"dra\tDRA driver\nnri\n:4\n", []string{"dra\tDRA driver", "nri"}, cobra.ShellCompDirectiveNoFileComp},
		{":0\n", nil, cobra.ShellCompDirectiveDefault},
		{"", nil, cobra.ShellCompDirectiveNoFileComp},
		{"dra\nno directive\n", nil, cobra.ShellCompDirectiveNoFileComp},
		{"dra\n:x\n", nil, cobra.ShellCompDirectiveNoFileComp},
	} {
		comps, d := parseCompletions(tc.in)
		if !slices.Equal(comps, tc.comps) || d != tc.d {
			t.Errorf("parseCompletions(%q) = %q, %v; want %q, %v", tc.in, comps, d, tc.comps, tc.d)
		}
	}
}
