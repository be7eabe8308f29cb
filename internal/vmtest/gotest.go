package vmtest

import (
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// Build builds package pkg ("./launch", "./cmd/bpfgate": relative to the
// module's root) into a temporary directory of tb and returns the
// program's path: its test binary (go test -c) when test is set.
func Build(tb testing.TB, pkg string, test bool) string {
	tb.Helper()
	return BuildWith(tb, pkg, test, "")
}

// BuildWith is Build with build tags (comma-separated, "" for none) and
// environment settings (e.g. "CGO_ENABLED=0") for the go command.
func BuildWith(tb testing.TB, pkg string, test bool, tags string, env ...string) string {
	tb.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(tb.TempDir(), path.Base(pkg))
	args := []string{"build", "-o", out}
	if test {
		out += ".test"
		args = []string{"test", "-c", "-o", out}
	}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	args = append(args, pkg)
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = testutil.RepoRoot(tb)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// GoTestRun is the Run that runs the test binary bin of package pkg on k
// with args, as `go test` would: in the package's directory (/work/PKG in
// the VM, with a copy of its testdata). Set more fields before Exec.
func GoTestRun(tb testing.TB, k Kern, pkg, bin string, args ...string) Run {
	tb.Helper()
	dir := path.Join("/work", strings.TrimPrefix(path.Clean(pkg), "./"))
	files := map[string]string{"/vm/bin/" + filepath.Base(bin): bin}
	testdata := filepath.Join(testutil.RepoRoot(tb), pkg, "testdata")
	if _, err := os.Stat(testdata); err == nil {
		files[path.Join(dir, "testdata")] = testdata
	}
	return Run{Kernel: k, Dir: dir, Files: files,
		Command: append([]string{"/vm/bin/" + filepath.Base(bin)}, args...)}
}

// GoTest builds the test binary of package pkg (see Build), runs it on k
// with args (see GoTestRun) and returns the result; it fails tb when the VM
// does not report the binary's exit status. The test binary's own failure
// is Result.ExitCode, for the caller to judge.
func GoTest(tb testing.TB, k Kern, pkg string, args ...string) Result {
	tb.Helper()
	r := GoTestRun(tb, k, pkg, Build(tb, pkg, true), args...)
	accel, why := Accel(k)
	tb.Logf("%s: %s in a VM (%s: %s)", k.Name, pkg, accel, why)
	res, err := r.Exec(context.Background())
	if err != nil {
		tb.Fatalf("%v\noutput:\n%s", err, res.Output)
	}
	return res
}

// Summary is what a `-test.v` run of a Go test binary reported, top-level
// tests only (subtests are in their parent's result).
type Summary struct {
	Passed, Failed, Skipped []string
	// Why holds each skipped test's message.
	Why map[string]string
}

var (
	resultLine = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(`)
	// With -test.v a test's log comes between the line that names it and
	// its result.
	nameLine = regexp.MustCompile(`^=== (?:RUN|NAME|CONT|PAUSE)\s+(\S+)$`)
)

// Parse reads the output of a Go test binary run with -test.v.
func Parse(out string) Summary {
	s := Summary{Why: map[string]string{}}
	logs := map[string][]string{}
	current := ""
	for _, l := range strings.Split(out, "\n") {
		if m := nameLine.FindStringSubmatch(l); m != nil {
			current, _, _ = strings.Cut(m[1], "/")
			continue
		}
		m := resultLine.FindStringSubmatch(l)
		if m == nil {
			if current != "" && strings.HasPrefix(l, "    ") {
				logs[current] = append(logs[current], strings.TrimSpace(l))
			}
			continue
		}
		switch m[1] {
		case "PASS":
			s.Passed = append(s.Passed, m[2])
		case "FAIL":
			s.Failed = append(s.Failed, m[2])
		case "SKIP":
			s.Skipped = append(s.Skipped, m[2])
			s.Why[m[2]] = strings.Join(logs[m[2]], " ")
		}
		current = ""
	}
	return s
}
