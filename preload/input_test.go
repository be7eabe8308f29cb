package preload_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/preload"
)

// within fails the test if f runs longer than 5s: a FIFO must not block.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("still running after 5s")
		return nil
	}
}

func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// Manifests and objects that are too large, endless or not files are
// refused at once, with the limit or the file type and the manifest's key.
func TestReadFileBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dir string) string // returns the manifest
		is   error
		msg  []string
	}{
		{"huge manifest", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "huge.yaml")
			sparse(t, p, preload.MaxManifestSize+1)
			return p
		}, boundedio.ErrTooLarge, []string{"huge.yaml is larger than 1 MiB: refusing it"}},
		{"fifo manifest", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "fifo.yaml")
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, boundedio.ErrNotRegular, []string{"fifo.yaml is a FIFO"}},
		{"huge object", func(t *testing.T, dir string) string {
			sparse(t, filepath.Join(dir, "huge.o"), preload.MaxObjectSize+1)
			return manifest(t, dir, "object: huge.o\n")
		}, boundedio.ErrTooLarge, []string{"m.yaml:1: object:", "huge.o is larger than 256 MiB: refusing it"}},
		{"fifo object", func(t *testing.T, dir string) string {
			if err := unix.Mkfifo(filepath.Join(dir, "fifo.o"), 0o600); err != nil {
				t.Fatal(err)
			}
			return manifest(t, dir, "object: fifo.o\n")
		}, boundedio.ErrNotRegular, []string{"m.yaml:1: object:", "fifo.o is a FIFO"}},
		{"endless object", func(t *testing.T, dir string) string {
			return manifest(t, dir, "order: 1\nobject: /dev/zero\n")
		}, boundedio.ErrNotRegular, []string{"m.yaml:2: object:", "/dev/zero is a character device"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.make(t, t.TempDir())
			err := within(t, func() error { _, err := preload.ReadFile(path); return err })
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}
}

// Check reads the object again: it is bounded there too.
func TestCheckBounded(t *testing.T) {
	dir := t.TempDir()
	obj := filepath.Join(dir, "x.o")
	if err := os.WriteFile(obj, []byte("small"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := preload.ReadFile(manifest(t, dir, "object: x.o\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Replaced by a FIFO after the manifest was read.
	os.Remove(obj)
	if err := unix.Mkfifo(obj, 0o600); err != nil {
		t.Fatal(err)
	}
	err = within(t, func() error { _, err := preload.Check([]*preload.Manifest{m}); return err })
	if !errors.Is(err, boundedio.ErrNotRegular) || !strings.Contains(err.Error(), "m.yaml:1: object:") {
		t.Fatalf("got %v", err)
	}
}

// Values of the wrong YAML type are errors with the file, line and key.
func TestReadFileMistyped(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"object: [a.o]\n", "m.yaml:1: yaml: unmarshal errors"},
		{"object: x.o\norder: first\n", "m.yaml:1: yaml: unmarshal errors"},
		{"object: x.o\nname: {a: b}\n", "m.yaml:1: yaml: unmarshal errors"},
		{"object: x.o\nprograms: count\n", "m.yaml:1: yaml: unmarshal errors"},
		{"object: x.o\nprograms:\n  - count\n", "m.yaml:3: programs[0]: want a mapping"},
		{"object: x.o\nprograms:\n  - name: [count]\n", "m.yaml:3: programs[0]: yaml: unmarshal errors"},
		{"object: x.o\nmaps:\n  - name: counts\n    keep: maybe\n", "m.yaml:3: maps[0]: yaml: unmarshal errors"},
		{"object: x.o\nmaps: {counts: {keep: true}}\n", "m.yaml:1: yaml: unmarshal errors"},
		{"- object: x.o\n", "m.yaml:1: want a mapping with at least 'object'"},
		{"object: x.o\norder: 99999999999999999999\n", "m.yaml:1: yaml: unmarshal errors"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "x.o"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := preload.ReadFile(manifest(t, dir, tc.body))
		if !errors.Is(err, preload.ErrManifest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}

func manifest(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
