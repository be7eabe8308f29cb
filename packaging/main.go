// Command mkdeb writes bpfgate's .debs with nfpm used as a library, from
// nfpm.yaml (bpfgate) or nfpm-k8s.yaml (bpfgate-k8s) and a directory that
// stage.sh filled.
//
// It lives in a module of its own so that nfpm and its dependencies stay out
// of the module graph of programs that import bpfgate's packages.
//
// The package's version, architecture and libc dependency are read from the
// binary itself (its embedded build information and ELF symbol versions),
// so they cannot disagree with what is inside.
package main

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the "deb" packager
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	var o options
	flag.StringVar(&o.config, "config", "packaging/nfpm.yaml", "nfpm configuration")
	flag.StringVar(&o.stage, "stage", "dist/stage", "directory filled by packaging/stage.sh")
	flag.StringVar(&o.out, "out", "dist", "directory the .deb is written to")
	flag.StringVar(&o.root, "root", ".", "repository root: paths in the configuration are relative to it")
	flag.StringVar(&o.binary, "binary", "bpfgate", "the binary in -stage the package's architecture and libc dependency are read from (bpfgate-k8s for nfpm-k8s.yaml)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "mkdeb: no arguments expected; see -help")
		os.Exit(2)
	}
	path, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

type options struct {
	config, stage, out, root, binary string
}

// build writes the .deb and returns its path.
func build(o options) (string, error) {
	stage, err := filepath.Abs(o.stage)
	if err != nil {
		return "", err
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return "", err
	}
	// The version is bpfgate's, for every package of the build: a package
	// of another binary (bpfgate-k8s) depends on bpfgate of its version.
	meta, err := inspect(filepath.Join(stage, "bpfgate"))
	if err != nil {
		return "", err
	}
	if o.binary != "" && o.binary != "bpfgate" {
		if filepath.Base(o.binary) != o.binary {
			return "", fmt.Errorf("-binary %q: want a file name in %s", o.binary, stage)
		}
		own, err := inspect(filepath.Join(stage, o.binary))
		if err != nil {
			return "", err
		}
		if own.version != meta.version {
			return "", fmt.Errorf("%w: %s is version %s and bpfgate %s: build both from one checkout (packaging/stage.sh does)", errNotPackageable, o.binary, own.version, meta.version)
		}
		meta.arch, meta.libcDepends = own.arch, own.libcDepends
	}
	vars := map[string]string{
		"VERSION":      meta.version,
		"ARCH":         meta.arch,
		"LIBC_DEPENDS": meta.libcDepends,
		"STAGE":        stage,
	}
	text, err := os.ReadFile(o.config)
	if err != nil {
		return "", err
	}
	// nfpm expands variables in a few fields only; expand the whole file,
	// and refuse names mkdeb does not know (a typo would be an empty path).
	var unknown []string
	expanded := os.Expand(string(text), func(k string) string {
		v, ok := vars[k]
		if !ok {
			unknown = append(unknown, "$"+k)
		}
		return v
	})
	if unknown != nil {
		return "", fmt.Errorf("%s: unknown variables %s (mkdeb sets VERSION, ARCH, LIBC_DEPENDS, STAGE)", o.config, strings.Join(unknown, ", "))
	}
	cfg, err := nfpm.ParseWithEnvMapping(strings.NewReader(expanded), func(k string) string { return vars[k] })
	if err != nil {
		return "", fmt.Errorf("%s: %w", o.config, err)
	}
	info, err := cfg.Get("deb")
	if err != nil {
		return "", err
	}
	// A static binary depends on nothing: drop the empty entry.
	deps := info.Depends[:0]
	for _, d := range info.Depends {
		if d != "" {
			deps = append(deps, d)
		}
	}
	info.Depends = deps
	// The same commit gives the same package: every file carries the time
	// of SOURCE_DATE_EPOCH (which nfpm reads) or else of the commit, not
	// the time it was checked out or generated.
	if _, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); !ok && !meta.commitTime.IsZero() {
		info.MTime = meta.commitTime
	}
	if !info.MTime.IsZero() {
		for _, c := range info.Contents {
			if c.FileInfo == nil {
				c.FileInfo = &files.ContentFileInfo{}
			}
			if c.FileInfo.MTime.IsZero() {
				c.FileInfo.MTime = info.MTime
			}
		}
	}
	// Globs and relative sources in the configuration are relative to the
	// repository root.
	if err := os.Chdir(o.root); err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", fmt.Errorf("%s: %w", o.config, err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(out, pkg.ConventionalFileName(info))
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	err = pkg.Package(info, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, os.Rename(f.Name(), path)
}

type binaryMeta struct {
	version     string
	arch        string
	libcDepends string
	commitTime  time.Time
}

var errNotPackageable = errors.New("binary cannot be packaged")

// inspect reads what the package says about the binary from the binary.
func inspect(bin string) (binaryMeta, error) {
	var m binaryMeta
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return m, fmt.Errorf("%w: %s: no Go build information (%v): build it with packaging/stage.sh", errNotPackageable, bin, err)
	}
	var goos, goarch, cgo string
	for _, s := range bi.Settings {
		switch s.Key {
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		case "CGO_ENABLED":
			cgo = s.Value
		case "vcs.time":
			m.commitTime, _ = time.Parse(time.RFC3339, s.Value)
		}
	}
	if goos != "linux" {
		return m, fmt.Errorf("%w: %s is built for %q, not linux", errNotPackageable, bin, goos)
	}
	if cgo != "1" {
		// Without cgo there are no C helpers and `bpfgate run` refuses to
		// start workloads: such a package would be broken.
		return m, fmt.Errorf("%w: %s is built without cgo: build it with CGO_ENABLED=1 (packaging/stage.sh does)", errNotPackageable, bin)
	}
	if m.arch, err = debianArch(goarch); err != nil {
		return m, err
	}
	if m.version, err = debianVersion(bi.Main.Version); err != nil {
		return m, err
	}
	f, err := elf.Open(bin)
	if err != nil {
		return m, err
	}
	defer f.Close()
	m.libcDepends, err = libcDepends(f)
	return m, err
}

// debianArch maps GOARCH to the Debian architecture name.
func debianArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "s390x", "loong64":
		return goarch, nil
	case "386":
		return "i386", nil
	case "ppc64le":
		return "ppc64el", nil
	case "mips64le":
		return "mips64el", nil
	}
	return "", fmt.Errorf("%w: no Debian architecture for GOARCH=%q", errNotPackageable, goarch)
}

var (
	pseudoVersion = regexp.MustCompile(`^v(\d+\.\d+\.\d+)-(?:0\.)?(\d{14})-([0-9a-f]{12})(\+dirty)?$`)
	tagVersion    = regexp.MustCompile(`^v(\d+\.\d+\.\d+)(?:-([0-9A-Za-z.-]+))?(\+dirty)?$`)
)

// debianVersion turns a Go module version into a Debian upstream version
// that sorts the same way: a pre-release or pseudo-version sorts before its
// base ("~"), and a build from an unknown commit is 0.0.0~devel.
func debianVersion(v string) (string, error) {
	if v == "" || v == "(devel)" {
		return "0.0.0~devel", nil
	}
	if m := pseudoVersion.FindStringSubmatch(v); m != nil {
		return m[1] + "~git" + m[2] + "." + m[3] + dirty(m[4]), nil
	}
	if m := tagVersion.FindStringSubmatch(v); m != nil {
		s := m[1]
		if m[2] != "" {
			s += "~" + strings.ReplaceAll(m[2], "-", ".")
		}
		return s + dirty(m[3]), nil
	}
	return "", fmt.Errorf("%w: module version %q is not a tag or pseudo-version", errNotPackageable, v)
}

func dirty(s string) string {
	if s != "" {
		return "+dirty"
	}
	return ""
}

// libcDepends is the libc6 dependency of a dynamically linked binary: the
// newest GLIBC_x.y symbol version it uses. It refuses libraries outside
// libc6, which the package would have to depend on too.
func libcDepends(f *elf.File) (string, error) {
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", err
	}
	if len(libs) == 0 {
		return "", nil // static
	}
	for _, l := range libs {
		switch {
		case l == "libc.so.6", strings.HasPrefix(l, "ld-linux"), l == "libpthread.so.0", l == "libdl.so.2", l == "libresolv.so.2", l == "libm.so.6", l == "librt.so.1":
		default:
			return "", fmt.Errorf("%w: it links %s, which libc6 does not provide: add its package to nfpm.yaml", errNotPackageable, l)
		}
	}
	syms, err := f.ImportedSymbols()
	if err != nil {
		return "", err
	}
	var major, minor int
	for _, s := range syms {
		v, ok := strings.CutPrefix(s.Version, "GLIBC_")
		if !ok {
			continue
		}
		a, b, _ := strings.Cut(v, ".")
		b, _, _ = strings.Cut(b, ".")
		x, err1 := strconv.Atoi(a)
		y, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil {
			continue
		}
		if x > major || x == major && y > minor {
			major, minor = x, y
		}
	}
	if major == 0 {
		return "libc6", nil
	}
	return fmt.Sprintf("libc6 (>= %d.%d)", major, minor), nil
}
