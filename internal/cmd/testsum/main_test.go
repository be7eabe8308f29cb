package main

import (
	"strings"
	"testing"
)

// events builds go test -json lines for package p.
func events(p string, evs ...[3]string) string {
	var b strings.Builder
	for _, e := range evs {
		out := ""
		if e[2] != "" {
			out = `,"Output":` + quote(e[2])
		}
		test := ""
		if e[1] != "" {
			test = `,"Test":"` + e[1] + `"`
		}
		b.WriteString(`{"Action":"` + e[0] + `","Package":"` + p + `"` + test + out + "}\n")
	}
	return b.String()
}

func quote(s string) string {
	r := strings.NewReplacer(`"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

func TestRun(t *testing.T) {
	passing := events("a",
		[3]string{"start", "", ""},
		[3]string{"run", "TestOK", ""},
		[3]string{"output", "TestOK", "=== RUN   TestOK\n"},
		[3]string{"output", "TestOK", "--- PASS: TestOK (0.00s)\n"},
		[3]string{"pass", "TestOK", ""},
		[3]string{"output", "", "PASS\n"},
		[3]string{"output", "", "ok  \ta\t0.01s\n"},
		[3]string{"pass", "", ""},
	)
	skipping := events("b",
		[3]string{"run", "TestRoot", ""},
		[3]string{"output", "TestRoot", "=== RUN   TestRoot\n"},
		[3]string{"output", "TestRoot", "    x_test.go:9: needs root\n"},
		[3]string{"output", "TestRoot", "--- SKIP: TestRoot (0.00s)\n"},
		[3]string{"skip", "TestRoot", ""},
		[3]string{"output", "", "ok  \tb\t0.01s\n"},
		[3]string{"pass", "", ""},
	)
	failing := events("c",
		[3]string{"run", "TestT", ""},
		[3]string{"output", "TestT", "=== RUN   TestT\n"},
		[3]string{"run", "TestT/good", ""},
		[3]string{"output", "TestT/good", "    x_test.go:1: chatter of a passing subtest\n"},
		[3]string{"pass", "TestT/good", ""},
		[3]string{"run", "TestT/bad", ""},
		[3]string{"output", "TestT/bad", "    x_test.go:2: got 1, want 2\n"},
		[3]string{"output", "TestT/bad", "    --- FAIL: TestT/bad (0.00s)\n"},
		[3]string{"fail", "TestT/bad", ""},
		[3]string{"output", "TestT", "--- FAIL: TestT (0.00s)\n"},
		[3]string{"fail", "TestT", ""},
		[3]string{"output", "", "FAIL\n"},
		[3]string{"output", "", "FAIL\tc\t0.01s\n"},
		[3]string{"fail", "", ""},
	)
	crashing := events("d",
		[3]string{"output", "", "TestMain could not start\n"},
		[3]string{"output", "", "FAIL\td\t0.01s\n"},
		[3]string{"fail", "", ""},
	)
	for _, tc := range []struct {
		name   string
		in     string
		ci     bool
		failed bool
		want   []string // in this order
		absent []string
	}{
		{"pass", passing, false, false,
			[]string{"ok  \ta\t0.01s\n", "1 passed, 0 failed, 0 skipped\n"},
			[]string{"PASS", "=== RUN", "skipped:"}},
		{"skip listed", passing + skipping, false, false,
			[]string{"ok  \tb", "skipped:\n  b TestRoot: x_test.go:9: needs root\n", "1 passed, 0 failed, 1 skipped\n"},
			[]string{"CI=true"}},
		{"skip under CI", skipping, true, true,
			[]string{"b TestRoot: x_test.go:9: needs root\n", "CI=true: a skipped test is a failure", "0 passed, 0 failed, 1 skipped\n"},
			nil},
		{"failure shown", passing + failing, false, true,
			[]string{"got 1, want 2\n", "--- FAIL: TestT/bad", "--- FAIL: TestT (", "FAIL\tc\t0.01s\n", "failed:\n  c TestT/bad\n  c TestT\n", "2 passed, 2 failed, 0 skipped\n"},
			[]string{"chatter of a passing subtest"}},
		{"package failure counts", crashing, false, true,
			[]string{"TestMain could not start\n", "d: the package failed with no failed test", "0 passed, 1 failed, 0 skipped\n"},
			nil},
		{"plain lines pass through", "== fuzzing\n" + passing, false, false,
			[]string{"== fuzzing\n", "ok  \ta"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			failed, err := run(strings.NewReader(tc.in), &out, tc.ci)
			if err != nil {
				t.Fatal(err)
			}
			if failed != tc.failed {
				t.Errorf("failed = %v, want %v", failed, tc.failed)
			}
			got := out.String()
			rest := got
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasSuffix(got, tc.want[len(tc.want)-1]) && tc.name != "plain lines pass through" {
				t.Errorf("the counts are not the last line:\n%s", got)
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("output has %q:\n%s", a, got)
				}
			}
		})
	}
}
