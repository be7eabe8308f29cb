package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// leftovers lists what is in dir besides the names given.
func leftovers(t *testing.T, dir string, known ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !contains(known, e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestWrite(t *testing.T) {
	const secret = "root:only\n"
	for _, tc := range []struct {
		name string
		// plant prepares dir and returns the target path.
		plant func(t *testing.T, dir, victim string) string
		want  error // nil: the write succeeds
	}{
		{"new file in a new directory", func(t *testing.T, dir, _ string) string {
			return filepath.Join(dir, "sub", "out.json")
		}, nil},
		{"existing file", func(t *testing.T, dir, _ string) string {
			p := filepath.Join(dir, "out.json")
			mustWrite(t, p, "old")
			return p
		}, nil},
		{"pre-planted PATH.tmp symlink", func(t *testing.T, dir, victim string) string {
			p := filepath.Join(dir, "out.json")
			mustSymlink(t, victim, p+".tmp")
			return p
		}, nil},
		{"target is a symlink", func(t *testing.T, dir, victim string) string {
			p := filepath.Join(dir, "out.json")
			mustSymlink(t, victim, p)
			return p
		}, ErrSymlink},
		{"dangling symlink", func(t *testing.T, dir, _ string) string {
			p := filepath.Join(dir, "out.json")
			mustSymlink(t, filepath.Join(dir, "nowhere"), p)
			return p
		}, ErrSymlink},
		{"target is a directory", func(t *testing.T, dir, _ string) string {
			p := filepath.Join(dir, "out.json")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, ErrNotRegular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "shadow")
			mustWrite(t, victim, secret)
			if err := os.Chmod(victim, 0o600); err != nil {
				t.Fatal(err)
			}
			path := tc.plant(t, dir, victim)
			before := names(t, filepath.Dir(path))
			err := Write(path, []byte("new\n"), 0o644)
			if got, _ := os.ReadFile(victim); string(got) != secret {
				t.Errorf("the victim file was written: %q", got)
			}
			if extra := leftovers(t, filepath.Dir(path), append(before, filepath.Base(path))...); len(extra) > 0 {
				t.Errorf("left behind: %v", extra)
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); string(got) != "new\n" || fi.Mode() != 0o644 {
				t.Errorf("%s: %q mode %v", path, got, fi.Mode())
			}
		})
	}
}

func TestWriteCheckedKeepsTargetOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spec.yaml")
	mustWrite(t, path, "old")
	bad := errors.New("invalid spec")
	var seen string
	err := WriteChecked(path, []byte("new"), 0o644, func(tmp string) error {
		data, _ := os.ReadFile(tmp)
		seen = string(data)
		return bad
	})
	if !errors.Is(err, bad) || seen != "new" {
		t.Fatalf("err %v, check saw %q", err, seen)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("target replaced: %q", got)
	}
	if extra := leftovers(t, dir, "spec.yaml"); len(extra) > 0 {
		t.Errorf("left behind: %v", extra)
	}
}

func TestOpenLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, path, victim string)
		want  error
	}{
		{"new", func(*testing.T, string, string) {}, nil},
		{"existing", func(t *testing.T, path, _ string) { mustWrite(t, path, "one\n") }, nil},
		{"symlink", func(t *testing.T, path, victim string) { mustSymlink(t, victim, path) }, ErrSymlink},
		{"fifo", func(t *testing.T, path, _ string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrNotRegular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hook.log")
			victim := filepath.Join(t.TempDir(), "shadow")
			mustWrite(t, victim, "secret\n")
			tc.plant(t, path, victim)
			var old []byte
			if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
				old, _ = os.ReadFile(path)
			}
			res := make(chan error, 1)
			go func() {
				f, err := OpenLog(path)
				if err == nil {
					_, err = f.WriteString("two\n")
					f.Close()
				}
				res <- err
			}()
			var err error
			select {
			case err = <-res:
			case <-time.After(5 * time.Second):
				t.Fatal("OpenLog blocked")
			}
			if got, _ := os.ReadFile(victim); string(got) != "secret\n" {
				t.Errorf("victim written: %q", got)
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(path)
			if got, _ := os.ReadFile(path); string(got) != string(old)+"two\n" {
				t.Errorf("log: %q", got)
			}
			if tc.name == "new" && fi.Mode() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode())
			}
		})
	}
}

func names(t *testing.T, dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
