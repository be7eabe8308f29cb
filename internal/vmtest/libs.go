package vmtest

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// libDirs are where Debian's loader finds the libraries of amd64 programs.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// sharedLibs returns the dynamic loader and every shared library the ELF
// program at file needs, directly or not, as absolute host paths (nil for
// a static program). A library that cannot be found is an error: the
// program would not start in the VM.
func sharedLibs(file string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var walk func(string, bool) error
	walk = func(f string, top bool) error {
		ef, err := elf.Open(f)
		if err != nil {
			if top {
				var fe *elf.FormatError
				if errors.As(err, &fe) {
					return nil // a script or data: nothing to link
				}
			}
			return fmt.Errorf("read %s: %w", f, err)
		}
		defer ef.Close()
		if top {
			for _, p := range ef.Progs {
				if p.Type != elf.PT_INTERP {
					continue
				}
				b := make([]byte, p.Filesz)
				if _, err := p.ReadAt(b, 0); err != nil {
					return fmt.Errorf("read the interpreter of %s: %w", f, err)
				}
				interp := string(b[:len(b)-1])
				if !seen[interp] {
					seen[interp] = true
					out = append(out, interp)
				}
			}
		}
		needed, err := ef.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("read the libraries of %s: %w", f, err)
		}
		for _, lib := range needed {
			found := ""
			for _, d := range libDirs {
				if _, err := os.Stat(filepath.Join(d, lib)); err == nil {
					found = filepath.Join(d, lib)
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, which is in none of %v", f, lib, libDirs)
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			if err := walk(found, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(file, true); err != nil {
		return nil, err
	}
	return out, nil
}
