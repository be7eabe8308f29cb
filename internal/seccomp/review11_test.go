package seccomp

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hostileSeccomp is a config.json seccomp section as large as the OCI hook
// reads (16 MiB): a rule for bpf per value of a condition bpfgate cannot
// judge, each allowing, so that every rule is looked at for every command.
func hostileSeccomp(t testing.TB, size int) *specs.LinuxSeccomp {
	var b strings.Builder
	b.WriteString(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"names":["bpf"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":%d,"op":"SCMP_CMP_EQ"}]}`, i)
	}
	b.WriteString(`]}`)
	var s specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(b.String()), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// The OCI hook evaluates the container's config.json as root before the
// container starts: however it is written, that takes little time, and
// what it says stays short.
func TestEvalOCIHostileSize(t *testing.T) {
	s := hostileSeccomp(t, 16<<20)
	start := time.Now()
	done := make(chan *OCIResult, 1)
	go func() {
		res, err := EvalOCI(s)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case res := <-done:
		took := time.Since(start)
		t.Logf("%d rules: %v", len(s.Syscalls), took)
		if took > 3*time.Second {
			t.Errorf("%d rules took %v", len(s.Syscalls), took)
		}
		if res == nil {
			return
		}
		if res.Allowed() {
			t.Errorf("allowed: %v", res)
		}
		if n := len(strings.Join(res.Rules, "; ") + strings.Join(res.Unknown, ", ")); n > 8<<10 {
			t.Errorf("the rules and conditions it quotes take %d bytes", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("EvalOCI of %d rules still runs after 10 s", len(s.Syscalls))
	}
}

// A condition runc refuses is refused here too, and its operator, which
// the config's author chose, is not printed raw (doctor prints the rules).
func TestEvalOCIBadCondition(t *testing.T) {
	for _, tc := range []struct {
		name string
		arg  specs.LinuxSeccompArg
		want string
	}{
		{"operator with escapes", specs.LinuxSeccompArg{Index: 1, Op: "\x1b]0;owned\a"}, `seccomp operator "\x1b]0;owned\a"`},
		{"index 6", specs.LinuxSeccompArg{Index: 6, Op: specs.OpEqualTo}, "argument index 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"bpf"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{tc.arg}}}}
			res, err := EvalOCI(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\x1b\a") {
				t.Errorf("EvalOCI: %+v, %v; want an error with %q", res, err, tc.want)
			}
			if _, _, err := OCIAction(s, "bpf", 0); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OCIAction: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// A profile that fails one command a token user needs is not passed as
// allowing bpf(2): raw_tracepoint_open attaches the trace profile's raw_tp
// programs, iter_create reads its iterators, and libbpf freezes every
// .rodata map (map_freeze) and walks maps with get_next_key.
func TestEvalOCIEveryCommandUsed(t *testing.T) {
	for _, cmd := range []struct {
		name string
		nr   uint64
	}{{"map_delete_elem", 3}, {"map_get_next_key", 4}, {"prog_detach", 9}, {"raw_tracepoint_open", 17},
		{"map_freeze", 22}, {"link_update", 29}, {"iter_create", 33}, {"link_detach", 34}} {
		t.Run(cmd.name, func(t *testing.T) {
			s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"bpf"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: cmd.nr, Op: specs.OpEqualTo}}}}}
			res, err := EvalOCI(s)
			if err != nil || res.Allowed() || !strings.Contains(res.String(), cmd.name) {
				t.Errorf("config.json: %v (%v); want %s blocked", res, err, cmd.name)
			}
			// The same as a classic BPF filter: bpf(2) with this command fails.
			f, err := NewFilter([]unix.SockFilter{
				{Code: clsLD | sizeW | modeABS, K: 0},
				{Code: clsJMP | jmpJEQ | srcK, Jt: 0, Jf: 3, K: nrBPFx86_64},
				{Code: clsLD | sizeW | modeABS, K: 16},
				{Code: clsJMP | jmpJEQ | srcK, Jt: 0, Jf: 1, K: uint32(cmd.nr)},
				{Code: clsRET | retK, K: uint32(Errno) | 1},
				{Code: clsRET | retK, K: uint32(Allow)},
			})
			if err != nil {
				t.Fatal(err)
			}
			v, err := EvalBPF([]*Filter{f})
			if err != nil || v.Allowed() || !strings.Contains(v.String(), cmd.name) {
				t.Errorf("filter: %v (%v); want %s blocked", v, err, cmd.name)
			}
		})
	}
}

// config.json sections against the filters libseccomp builds from them
// (testdata/libseccomp, see gen.c there), bpf(2) rules in both orders:
// an unconditional rule beats every conditional one, whatever the order,
// and of conditional rules the order does not decide either. Where
// OCIAction allows a command, the real filter must allow it; where it is
// sure (it reports nothing it cannot judge), it must agree.
func TestOCIActionAgainstLibseccomp(t *testing.T) {
	jsons, err := filepath.Glob("testdata/libseccomp/*.json")
	if err != nil || len(jsons) == 0 {
		t.Fatal("no testdata", err)
	}
	for _, path := range jsons {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var s specs.LinuxSeccomp
			if err := json.Unmarshal(data, &s); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(strings.TrimSuffix(path, ".json") + ".bpf")
			if err != nil {
				t.Fatal(err)
			}
			f, err := DecodeFilter(raw)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range Cmds {
				real := f.Run(BPFData(c.Value))
				got, unknown, err := OCIAction(&s, "bpf", uint64(c.Value))
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case got.Allows() && !real.Allows():
					t.Errorf("%s: config.json says %v, the filter does %v", c.Name, got, real)
				case len(unknown) == 0 && got.Allows() != real.Allows():
					t.Errorf("%s: config.json says %v for sure, the filter does %v", c.Name, got, real)
				}
			}
		})
	}
}
