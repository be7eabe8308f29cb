package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// listing is every path in a .deb, with its mode; it fails the test when
// a file does not belong to root.
func listing(t *testing.T, deb string) map[string]string {
	t.Helper()
	modes := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "", "dpkg-deb", "-c", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: odd line %q", line)
		}
		path := strings.TrimPrefix(f[len(f)-1], ".")
		modes[path] = f[0]
		if f[1] != "root/root" {
			t.Errorf("%s: %s belongs to %s, not root/root", filepath.Base(deb), path, f[1])
		}
	}
	return modes
}

// TestBuildDeb builds the .debs as `make deb` does and checks what they
// hold.
func TestBuildDeb(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatal("dpkg-deb is needed to read the package: apt-get install dpkg")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	out := strings.Fields(run(t, root, "packaging/build-deb.sh", dist))
	if len(out) < 2 {
		t.Fatalf("build-deb.sh printed %q, want two .debs", out)
	}
	deb, k8sDeb := out[len(out)-2], out[len(out)-1]
	for _, d := range []struct{ path, name string }{{deb, "bpfgate_"}, {k8sDeb, "bpfgate-k8s_"}} {
		if filepath.Dir(d.path) != dist || !strings.HasPrefix(filepath.Base(d.path), d.name) || !strings.HasSuffix(d.path, ".deb") {
			t.Fatalf("build-deb.sh printed %q, not a %s*.deb in %s", d.path, d.name, dist)
		}
	}

	// Every file, with its mode.
	modes := listing(t, deb)
	want := map[string]string{
		"/usr/bin/bpfgate": "-rwxr-xr-x",
		"/usr/lib/systemd/system/bpfgate-preload.service":   "-rw-r--r--",
		"/usr/share/bash-completion/completions/bpfgate":    "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_bpfgate":        "-rw-r--r--",
		"/usr/share/fish/vendor_completions.d/bpfgate.fish": "-rw-r--r--",
		"/usr/share/doc/bpfgate/README.md":                  "-rw-r--r--",
		"/usr/share/man/man1/bpfgate.1.gz":                  "-rw-r--r--",
		"/usr/share/man/man1/bpfgate-version.1.gz":          "-rw-r--r--",
		"/usr/share/man/man1/bpfgate-run.1.gz":              "-rw-r--r--",
		"/usr/share/man/man1/bpfgate-preload-apply.1.gz":    "-rw-r--r--",
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(docs) == 0 {
		t.Fatalf("no docs/*.md in %s: %v", root, err)
	}
	for _, d := range docs {
		want["/usr/share/doc/bpfgate/docs/"+filepath.Base(d)] = "-rw-r--r--"
	}
	for path, mode := range want {
		if got, ok := modes[path]; !ok {
			t.Errorf("the package has no %s", path)
		} else if got != mode {
			t.Errorf("%s has mode %s, want %s", path, got, mode)
		}
	}
	// One page per command: as many pages as `bpfgate man` writes.
	mans := t.TempDir()
	run(t, root, filepath.Join(dist, "stage", "bpfgate"), "man", mans)
	pages, _ := os.ReadDir(mans)
	var inDeb []string
	for path := range modes {
		if name, ok := strings.CutPrefix(path, "/usr/share/man/man1/"); ok && name != "" {
			inDeb = append(inDeb, strings.TrimSuffix(name, ".gz"))
		}
	}
	var generated []string
	for _, p := range pages {
		// bpfgate k8s's page is bpfgate-k8s's: the k8s build's.
		if p.Name() != "bpfgate-k8s.1" {
			generated = append(generated, p.Name())
		}
	}
	slices.Sort(inDeb)
	if !slices.Equal(inDeb, generated) || len(generated) < 10 {
		t.Errorf("man pages in the package:\n%v\nbpfgate man writes:\n%v", inDeb, generated)
	}
	// Nothing outside /usr: no stray staging paths.
	for path := range modes {
		if !strings.HasPrefix(path, "/usr/") && path != "/" {
			t.Errorf("unexpected path %s", path)
		}
	}

	// The control fields.
	fields := run(t, root, "dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends")
	for _, re := range []string{`(?m)^Package: bpfgate$`, `(?m)^Version: \d+\.\d+\.\d+\S*-1$`, `(?m)^Architecture: \S+$`, `(?m)^Depends: libc6 \(>= 2\.\d+\)$`} {
		if !regexp.MustCompile(re).MatchString(fields) {
			t.Errorf("control fields do not match %s:\n%s", re, fields)
		}
	}
	version := strings.TrimSpace(run(t, root, "dpkg-deb", "-f", deb, "Version"))
	arch := strings.TrimSpace(run(t, root, "dpkg-deb", "-f", deb, "Architecture"))

	// bpfgate-k8s: the -tags k8s build and the pages of the k8s
	// commands, nothing bpfgate's package has (dpkg would refuse to
	// install both), depending on bpfgate of exactly its version.
	k8sModes := listing(t, k8sDeb)
	if got := k8sModes["/usr/bin/bpfgate-k8s"]; got != "-rwxr-xr-x" {
		t.Errorf("bpfgate-k8s: /usr/bin/bpfgate-k8s has mode %q, want -rwxr-xr-x", got)
	}
	k8sMans := t.TempDir()
	run(t, root, filepath.Join(dist, "stage", "bpfgate-k8s"), "man", k8sMans)
	k8sPages, _ := filepath.Glob(filepath.Join(k8sMans, "bpfgate-k8s*.1"))
	if len(k8sPages) < 4 {
		t.Errorf("bpfgate-k8s man writes %d pages of k8s commands: %v", len(k8sPages), k8sPages)
	}
	for _, p := range k8sPages {
		if got := k8sModes["/usr/share/man/man1/"+filepath.Base(p)+".gz"]; got != "-rw-r--r--" {
			t.Errorf("bpfgate-k8s: %s.gz has mode %q", filepath.Base(p), got)
		}
	}
	for path, mode := range k8sModes {
		if _, ok := modes[path]; ok && !strings.HasPrefix(mode, "d") {
			t.Errorf("%s is in both packages", path)
		}
		if !strings.HasPrefix(path, "/usr/") && path != "/" {
			t.Errorf("bpfgate-k8s: unexpected path %s", path)
		}
	}
	k8sFields := run(t, root, "dpkg-deb", "-f", k8sDeb, "Package", "Version", "Architecture", "Depends", "Description")
	for _, want := range []string{
		"Package: bpfgate-k8s\n", "Version: " + version + "\n", "Architecture: " + arch + "\n",
		"Depends: bpfgate (= " + version + "), libc6 (>= 2.",
		"Description: Kubernetes device plugin, DRA driver and NRI plugin for bpfgate\n",
	} {
		if !strings.Contains(k8sFields, want) {
			t.Errorf("bpfgate-k8s's control fields do not say %q:\n%s", want, k8sFields)
		}
	}

	// The packaged unit runs the packaged binary.
	x := t.TempDir()
	run(t, root, "dpkg-deb", "-x", deb, x)
	unit, err := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/bpfgate-preload.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/bin/bpfgate preload apply\n") || strings.Contains(string(unit), "/usr/local/bin") {
		t.Errorf("the packaged unit does not run /usr/bin/bpfgate:\n%s", unit)
	}
	if got := run(t, root, filepath.Join(x, "usr/bin/bpfgate"), "completion", "bash"); got != string(must(os.ReadFile(filepath.Join(x, "usr/share/bash-completion/completions/bpfgate")))) {
		t.Error("the bash completion differs from what the packaged binary generates")
	}
	// The packaged bpfgate runs the packaged bpfgate-k8s, next to it.
	run(t, root, "dpkg-deb", "-x", k8sDeb, x)
	help := run(t, root, filepath.Join(x, "usr/bin/bpfgate"), "k8s", "--help")
	for _, cmd := range []string{"device-plugin", "dra", "nri"} {
		if !regexp.MustCompile(`(?m)^  ` + cmd + ` `).MatchString(help) {
			t.Errorf("bpfgate k8s --help does not list %s:\n%s", cmd, help)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestDebianVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"(devel)", "0.0.0~devel"},
		{"", "0.0.0~devel"},
		{"v1.2.3", "1.2.3"},
		{"v1.2.3+dirty", "1.2.3+dirty"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v0.0.0-20260102030405-0123456789ab", "0.0.0~git20260102030405.0123456789ab"},
		{"v0.0.0-20260102030405-0123456789ab+dirty", "0.0.0~git20260102030405.0123456789ab+dirty"},
		{"v1.2.4-0.20260102030405-0123456789ab", "1.2.4~git20260102030405.0123456789ab"},
		{"v1.2.4-rc.1.0.20260102030405-0123456789ab", "1.2.4~rc.1.0.20260102030405.0123456789ab"},
	} {
		got, err := debianVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("debianVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"1.2.3", "v1.2", "vX", "v1.2.3 ; rm"} {
		if _, err := debianVersion(bad); !errors.Is(err, errNotPackageable) {
			t.Errorf("debianVersion(%q): %v, want errNotPackageable", bad, err)
		}
	}
}

// TestDebianVersionOrder checks with dpkg itself that the versions sort as
// their Go versions do, so an upgrade is never taken for a downgrade.
func TestDebianVersionOrder(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg is needed to compare versions: apt-get install dpkg")
	}
	ascending := []string{
		"(devel)",
		"v0.0.0-20260102030405-0123456789ab",
		"v0.0.0-20260102030406-0123456789ab",
		"v1.2.3-rc.1",
		"v1.2.3",
		"v1.2.4-0.20260102030405-0123456789ab",
		"v1.2.4",
	}
	for i := 1; i < len(ascending); i++ {
		a, _ := debianVersion(ascending[i-1])
		b, _ := debianVersion(ascending[i])
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg does not sort %s (%s) before %s (%s)", a, ascending[i-1], b, ascending[i])
		}
	}
}

// TestInspectRefusesNoCgo: a binary without cgo has no sandbox helpers, and
// a package of it would install a bpfgate whose run refuses to start.
func TestInspectRefusesNoCgo(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/hello\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cgo  string
		fail bool
	}{{"0", true}, {"1", false}} {
		bin := filepath.Join(dir, "hello"+tc.cgo)
		cmd := exec.Command("go", "build", "-o", bin, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+tc.cgo)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		_, err := inspect(bin)
		if tc.fail != errors.Is(err, errNotPackageable) {
			t.Errorf("CGO_ENABLED=%s: inspect: %v", tc.cgo, err)
		}
	}
}
