package profile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/delegate"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/boundedio"
)

// A config that is too large, endless or not a file is refused at once,
// with the limit or the file type in the error.
func TestLoadProfilesBounded(t *testing.T) {
	n := delegate.BuiltinNames()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	// Valid YAML all along: only the size is wrong.
	body := "profiles:\n" + strings.Repeat("# padding padding padding padding padding padding\n", MaxConfigSize/50+1)
	if err := os.WriteFile(big, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		is   error
		msg  string
	}{
		{big, boundedio.ErrTooLarge, "big.yaml is larger than 1 MiB: refusing it"},
		{"/dev/zero", boundedio.ErrNotRegular, "/dev/zero is a character device"},
		{fifo, boundedio.ErrNotRegular, "fifo.yaml is a FIFO"},
		{dir, boundedio.ErrNotRegular, "is a directory"},
		{filepath.Join(dir, "missing.yaml"), os.ErrNotExist, "missing.yaml"},
	} {
		start := time.Now()
		_, err := Load(tc.path, n)
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %q", tc.path, err, tc.msg)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %s", tc.path, d)
		}
	}
}

// Values of the wrong YAML type are errors with the file, line and key.
func TestLoadProfilesMistyped(t *testing.T) {
	n := delegate.BuiltinNames()
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{"profiles: 3\n", "config.yaml:1: profiles: want a mapping of profile names"},
		{"[profiles]\n", "config.yaml:1: want a mapping with a 'profiles' key"},
		{"profiles:\n  x:\n    caps: CAP_BPF\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    caps: [[CAP_BPF]]\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    uid: root\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    uid: 4294967296\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    mode: [7]\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    maps: [[hash]]\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    description: {a: b}\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
		{"profiles:\n  x:\n    path: [/a]\n", "config.yaml:3: profiles.x: yaml: unmarshal errors"},
	} {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p, n)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}

// A profile defined twice, or without a name, is refused.
func TestLoadProfilesNames(t *testing.T) {
	n := delegate.BuiltinNames()
	dir := t.TempDir()
	for _, tc := range []struct{ body, want string }{
		{"profiles:\n  a: {cmds: map_create}\n  a: {cmds: prog_load}\n", "config.yaml:3: profiles.a: defined again (first on line 2)"},
		{"profiles:\n  a: {}\nprofiles:\n  a: {}\n", "config.yaml:4: profiles.a: defined again (first on line 2)"},
		{"profiles:\n  \"\": {cmds: map_create}\n", "config.yaml:2: profiles: want a profile name"},
		{"profiles:\n  [a]: {cmds: map_create}\n", "config.yaml:2: profiles: want a profile name"},
	} {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p, n)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}
