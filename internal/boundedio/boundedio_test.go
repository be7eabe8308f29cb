package boundedio

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Repeat([]byte("x"), n), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", 10), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		flags   Flag
		size    int
		wantErr error
		msg     string
	}{
		{name: "empty", path: write("empty", 0)},
		{name: "below", path: write("below", 99), size: 99},
		{name: "at the limit", path: write("at", 100), size: 100},
		{name: "over", path: write("over", 101), wantErr: ErrTooLarge, msg: "over is larger than 100 bytes: refusing it"},
		{name: "dev zero", path: "/dev/zero", wantErr: ErrNotRegular, msg: "/dev/zero is a character device"},
		{name: "fifo", path: fifo, wantErr: ErrNotRegular, msg: "fifo is a FIFO"},
		{name: "directory", path: dir, wantErr: ErrNotRegular, msg: "is a directory"},
		{name: "missing", path: filepath.Join(dir, "missing"), wantErr: os.ErrNotExist},
		{name: "symlink followed", path: link, size: 10},
		{name: "symlink refused", path: link, flags: NoFollow, wantErr: ErrSymlink, msg: "link is a symbolic link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() {
				defer close(done)
				data, err = ReadFileFlags(tc.path, 100, tc.flags)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("ReadFile(%s) still runs after 5s", tc.path)
			}
			if tc.wantErr == nil {
				if err != nil || len(data) != tc.size {
					t.Fatalf("got %d bytes, %v; want %d bytes", len(data), err, tc.size)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

// A regular file that reports a small size but has more (it grew after the
// fstat; /proc files report 0) is still cut at the limit.
func TestReadFileGrows(t *testing.T) {
	_, err := ReadFile("/proc/self/mountinfo", 10)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 10 || tl.Name != "/proc/self/mountinfo" {
		t.Fatalf("got %v, want a *TooLargeError naming the file and 10 bytes", err)
	}
}

func TestReadAll(t *testing.T) {
	for _, tc := range []struct {
		n, limit int
		tooLarge bool
	}{{0, 0, false}, {1, 0, true}, {5, 10, false}, {10, 10, false}, {11, 10, true}, {1 << 20, 10, true}} {
		data, err := ReadAll(bytes.NewReader(make([]byte, tc.n)), int64(tc.limit), "the state on stdin")
		if tc.tooLarge {
			if !errors.Is(err, ErrTooLarge) || err.Error() != "the state on stdin is larger than "+FormatSize(int64(tc.limit))+": refusing it" {
				t.Errorf("%d bytes, limit %d: got %v", tc.n, tc.limit, err)
			}
			continue
		}
		if err != nil || len(data) != tc.n {
			t.Errorf("%d bytes, limit %d: got %d bytes, %v", tc.n, tc.limit, len(data), err)
		}
	}
}

// An endless stream ends at the limit, not when memory runs out.
func TestReadAllEndless(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ReadAll(f, 1<<20, "/dev/zero"); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1 MiB") {
		t.Fatalf("got %v", err)
	}
}

// A decoder reading a stream gets the limit error, not a confusing EOF.
func TestNewReaderDecoder(t *testing.T) {
	big := `{"id": "` + strings.Repeat("a", 200) + `"}`
	var v map[string]any
	err := json.NewDecoder(NewReader(strings.NewReader(big), 100, "the OCI state")).Decode(&v)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "the OCI state is larger than 100 bytes") {
		t.Fatalf("got %v", err)
	}
	small := `{"id": "x"}`
	if err := json.NewDecoder(NewReader(strings.NewReader(small), int64(len(small)), "s")).Decode(&v); err != nil {
		t.Fatalf("exact size: %v", err)
	}
	// Once over the limit, the reader stays failed.
	r := NewReader(strings.NewReader("abc"), 1, "s")
	io.ReadAll(r)
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("second read: %v", err)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{1: "1 byte", 100: "100 bytes", 1024: "1 KiB", 1 << 20: "1 MiB",
		256 << 20: "256 MiB", 1<<20 + 1: "1048577 bytes", 3 << 10: "3 KiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
