package vmtest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// archive is an initramfs in the making: the kernel unpacks a "newc" cpio
// archive, which needs parent directories before their entries.
type archive struct {
	dirs  map[string]bool
	files map[string]entry
}

type entry struct {
	mode    uint32 // permission bits
	host    string // file to copy, or
	content []byte // the content itself
	link    string // symlink target when not empty
}

func newArchive() *archive {
	return &archive{dirs: map[string]bool{"": true}, files: map[string]entry{}}
}

// clean makes name relative to the archive's root ("bin/busybox").
func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func (a *archive) dir(name string) {
	name = clean(name)
	for ; name != "" && name != "." && !a.dirs[name]; name = path.Dir(name) {
		a.dirs[name] = true
	}
}

func (a *archive) add(name string, e entry) {
	name = clean(name)
	a.dir(path.Dir(name))
	a.files[name] = e
}

// write writes the archive: directories first (shortest first), then the
// rest in name order, and the trailer.
func (a *archive) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	ino := uint32(1)
	header := func(name string, mode uint32, size int) error {
		ino++
		// newc: magic, then 13 fields of 8 hex digits, the name with its
		// NUL, padded to 4 bytes; the data padded to 4 bytes.
		_, err := fmt.Fprintf(bw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
			ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0, name)
		if err != nil {
			return err
		}
		return pad(bw, 6+13*8+len(name)+1)
	}
	dirs := make([]string, 0, len(a.dirs))
	for d := range a.dirs {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	sort.Slice(dirs, func(i, j int) bool {
		if ci, cj := strings.Count(dirs[i], "/"), strings.Count(dirs[j], "/"); ci != cj {
			return ci < cj
		}
		return dirs[i] < dirs[j]
	})
	for _, d := range dirs {
		if err := header(d, 0o040000|0o755, 0); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(a.files))
	for n := range a.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := a.files[n]
		var data []byte
		mode := uint32(0o100000) | e.mode
		switch {
		case e.link != "":
			mode, data = 0o120000|0o777, []byte(e.link)
		case e.host != "":
			b, err := os.ReadFile(e.host)
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			data = b
		default:
			data = e.content
		}
		if err := header(n, mode, len(data)); err != nil {
			return err
		}
		if _, err := bw.Write(data); err != nil {
			return err
		}
		if err := pad(bw, len(data)); err != nil {
			return err
		}
	}
	if err := header("TRAILER!!!", 0, 0); err != nil {
		return err
	}
	return bw.Flush()
}

func pad(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
