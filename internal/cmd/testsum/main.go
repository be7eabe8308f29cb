// Command testsum reads `go test -json` output on stdin and prints what a
// plain `go test` would (the per-package ok/FAIL lines, the output of
// failed tests), then every skipped test with its reason, and last a line
// `N passed, N failed, N skipped` over all its input. Lines that are not
// JSON pass through unchanged, so several go test runs (and echo) can share
// one pipe.
//
// Every test, subtest, example and fuzz target counts once. A package that
// fails with no failed test (a build failure, a crash in TestMain) counts as
// one failure. The exit status is 1 if anything failed, or if anything was
// skipped while CI=true: CI must run every test.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of test2json's output (go doc test2json).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	ImportPath  string
	FailedBuild string
}

// line is a test's output line, kept until the test's top-level test ends.
type line struct {
	test, text string
}

type pkgState struct {
	lines  []line
	status map[string]string // test name -> pass, fail, skip
	failed bool              // a test in it failed
}

type summary struct {
	out                     io.Writer
	pkgs                    map[string]*pkgState
	passed, failed, skipped int
	skips, failures         []string
}

func newSummary(out io.Writer) *summary {
	return &summary{out: out, pkgs: map[string]*pkgState{}}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{status: map[string]string{}}
		s.pkgs[name] = p
	}
	return p
}

// progress lines are what -v adds to go test's output.
func progress(text string) bool {
	t := strings.TrimSpace(text)
	for _, prefix := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- SKIP"} {
		if strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}

func top(test string) string {
	name, _, _ := strings.Cut(test, "/")
	return name
}

func (s *summary) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
		return
	case "build-fail":
		return
	}
	p := s.pkg(e.Package)
	if e.Test == "" {
		switch e.Action {
		case "output":
			// A plain go test prints PASS only with -v.
			if e.Output != "PASS\n" && !progress(e.Output) {
				fmt.Fprint(s.out, e.Output)
			}
		case "fail":
			if !p.failed {
				s.failed++
				why := "the package failed with no failed test"
				if e.FailedBuild != "" {
					why = "build failed"
				}
				s.failures = append(s.failures, e.Package+": "+why)
			}
			delete(s.pkgs, e.Package)
		case "pass", "skip":
			delete(s.pkgs, e.Package)
		}
		return
	}
	switch e.Action {
	case "output":
		p.lines = append(p.lines, line{e.Test, e.Output})
		return
	case "pass":
		s.passed++
	case "fail":
		s.failed++
		p.failed = true
		s.failures = append(s.failures, e.Package+" "+e.Test)
	case "skip":
		s.skipped++
		s.skips = append(s.skips, e.Package+" "+e.Test+": "+s.reason(p, e.Test))
	default:
		return
	}
	p.status[e.Test] = e.Action
	if e.Test != top(e.Test) {
		return
	}
	// The top-level test ended: print what a plain go test would of it and
	// its subtests, and forget them.
	var keep []line
	for _, l := range p.lines {
		if top(l.test) != e.Test {
			keep = append(keep, l)
			continue
		}
		if e.Action == "fail" && p.status[l.test] != "pass" && p.status[l.test] != "skip" && !progress(l.text) {
			fmt.Fprint(s.out, l.text)
		}
	}
	p.lines = keep
}

// reason is what a skipped test logged: its t.Skip message.
func (s *summary) reason(p *pkgState, test string) string {
	var msgs []string
	for _, l := range p.lines {
		if l.test == test && !progress(l.text) {
			if t := strings.TrimSpace(l.text); t != "" {
				msgs = append(msgs, t)
			}
		}
	}
	if len(msgs) == 0 {
		return "no reason given"
	}
	return strings.Join(msgs, " ")
}

// finish prints the lists and the counts and says whether the run failed.
func (s *summary) finish(ci bool) bool {
	if len(s.skips) > 0 {
		fmt.Fprintf(s.out, "\nskipped:\n")
		for _, l := range s.skips {
			fmt.Fprintln(s.out, "  "+l)
		}
		if ci {
			fmt.Fprintln(s.out, "CI=true: a skipped test is a failure: install what it needs (scripts/deps.sh) and run it as root")
		}
	}
	if len(s.failures) > 0 {
		fmt.Fprintf(s.out, "\nfailed:\n")
		for _, l := range s.failures {
			fmt.Fprintln(s.out, "  "+l)
		}
	}
	fmt.Fprintf(s.out, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	return s.failed > 0 || ci && s.skipped > 0
}

func run(in io.Reader, out io.Writer, ci bool) (bool, error) {
	s := newSummary(out)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for sc.Scan() {
		text := sc.Text()
		var e event
		if !strings.HasPrefix(text, "{") || json.Unmarshal([]byte(text), &e) != nil || e.Action == "" {
			fmt.Fprintln(out, text)
			continue
		}
		s.handle(e)
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return s.finish(ci), nil
}

func main() {
	failed, err := run(os.Stdin, os.Stdout, os.Getenv("CI") == "true")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
