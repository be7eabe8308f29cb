package ocihook

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/boundedio"
)

func TestReadStateBounded(t *testing.T) {
	huge := `{"id":"abc","pid":42,"bundle":"/b","annotations":{"a":"` + strings.Repeat("x", MaxStateSize) + `"}}`
	for _, tc := range []struct {
		name string
		in   io.Reader
		is   error
		msg  string
	}{
		{"huge", strings.NewReader(huge), boundedio.ErrTooLarge, "the OCI state on stdin is larger than 1 MiB: refusing it"},
		// Valid JSON never ends: the limit ends the read.
		{"endless", io.MultiReader(strings.NewReader(`{"id":"`), endless('x')), boundedio.ErrTooLarge, "larger than 1 MiB"},
		{"pid a string", strings.NewReader(`{"id":"abc","pid":"42","bundle":"/b"}`), nil, "State.pid of type int"},
		{"pid a float", strings.NewReader(`{"id":"abc","pid":4.2,"bundle":"/b"}`), nil, "State.pid of type int"},
		{"annotations a list", strings.NewReader(`{"id":"abc","pid":42,"bundle":"/b","annotations":["a"]}`), nil, "State.annotations"},
		{"pid too large", strings.NewReader(`{"id":"abc","pid":4294968530,"bundle":"/b"}`), nil, "has pid 4294968530, larger than any pid"},
		{"relative bundle", strings.NewReader(`{"id":"abc","pid":42,"bundle":"b"}`), nil, `has bundle "b": the runtime must give an absolute path`},
		{"not an object", strings.NewReader(`[1]`), nil, "cannot unmarshal array"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadState(tc.in)
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}

func TestLoadBundleBounded(t *testing.T) {
	bundle := func(t *testing.T, make func(path string) error) *specs.State {
		dir := t.TempDir()
		if err := make(filepath.Join(dir, "config.json")); err != nil {
			t.Fatal(err)
		}
		return &specs.State{ID: "0123456789abcdef", Bundle: dir}
	}
	write := func(s string) func(string) error {
		return func(p string) error { return os.WriteFile(p, []byte(s), 0o600) }
	}
	for _, tc := range []struct {
		name string
		make func(path string) error
		is   error
		msg  string
	}{
		{"huge", func(p string) error {
			// Sparse: the size alone must refuse it, nothing is read.
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				return err
			}
			return os.Truncate(p, MaxSpecSize+1)
		}, boundedio.ErrTooLarge, "config.json is larger than 16 MiB: refusing it"},
		{"fifo", func(p string) error { return unix.Mkfifo(p, 0o600) }, boundedio.ErrNotRegular, "config.json is a FIFO"},
		{"symlink", func(p string) error {
			if err := os.WriteFile(p+".real", []byte(`{}`), 0o600); err != nil {
				return err
			}
			return os.Symlink(p+".real", p)
		}, boundedio.ErrSymlink, "config.json is a symbolic link"},
		{"root a string", write(`{"root":"/rootfs"}`), nil, "Spec.root of type specs.Root"},
		{"namespaces an object", write(`{"linux":{"namespaces":{"type":"user"}}}`), nil, "namespaces"},
		{"bounding caps numbers", write(`{"process":{"capabilities":{"bounding":[39]}}}`), nil, "bounding"},
		{"uid map negative", write(`{"linux":{"uidMappings":[{"containerID":0,"hostID":-1,"size":1}]}}`), nil, "hostID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := bundle(t, tc.make)
			done := make(chan error, 1)
			go func() { _, err := LoadBundle(st); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("LoadBundle still runs after 5s")
			}
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) ||
				!strings.Contains(err.Error(), "container 0123456789ab") {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
}

func TestReadSeccompBase(t *testing.T) {
	big := filepath.Join(t.TempDir(), "seccomp.json")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, MaxSeccompSize+1); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSeccompBase(big); !errors.Is(err, boundedio.ErrTooLarge) || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Errorf("big: %v", err)
	}
	if _, err := ReadSeccompBase("/dev/zero"); !errors.Is(err, boundedio.ErrNotRegular) {
		t.Errorf("/dev/zero: %v", err)
	}
}

// Unexpected JSON types in a seccomp profile are errors naming the field,
// never panics.
func TestSeccompAllowBPFMistyped(t *testing.T) {
	deny := func(extra string) string {
		return `{"syscalls":[{"names":["bpf","setns"],"action":"SCMP_ACT_ERRNO"` + extra + `}]}`
	}
	for _, tc := range []struct{ in, msg string }{
		{deny(`,"args":5`), "syscalls[0].args: want a list, got a number"},
		{deny(`,"args":{"a":1}`), "syscalls[0].args: want a list, got an object"},
		{deny(`,"excludes":"CAP_BPF"`), "syscalls[0].excludes: want an object, got a string"},
		{deny(`,"excludes":{"caps":"CAP_BPF"}`), "syscalls[0].excludes.caps: want a list of strings, got a string"},
		{deny(`,"excludes":{"caps":[1]}`), "syscalls[0].excludes.caps: want a list of strings, got a list with a number"},
		{`{"syscalls":[{"names":"bpf","action":"SCMP_ACT_ERRNO"}]}`, "syscalls[0].names: want a list of strings, got a string"},
		{`{"syscalls":[{"names":["read"]},{"names":["bpf",true]}]}`, "syscalls[1].names: want a list of strings, got a list with a boolean"},
		{`{"syscalls":[{"names":["bpf"],"action":1}]}`, "syscalls[0].action: want a string, got a number"},
		{`{"syscalls":[null]}`, "syscalls[0]: want an object, got null"},
		{`{"syscalls":["bpf"]}`, "syscalls[0]: want an object, got a string"},
		{`{"syscalls":{"names":["bpf"]}}`, "syscalls: want a list of rules, got an object"},
		{`{"syscalls":null}`, "syscalls: want a list of rules, got null"},
		{`{"defaultAction":"SCMP_ACT_ERRNO"}`, "no syscalls list"},
		{`null`, "no syscalls list"},
		{`"x"`, "cannot unmarshal string"},
		// Runtimes match keys without regard to case.
		{`{"syscalls":[{"Names":["bpf"],"action":"SCMP_ACT_ERRNO"}]}`, `syscalls[0].Names: write it as "names"`},
		{deny(`,"excludes":{"CAPS":["CAP_SYS_ADMIN"]}`), `syscalls[0].excludes.CAPS: write it as "caps"`},
		{`{"SysCalls":[]}`, `SysCalls: write it as "syscalls"`},
	} {
		_, err := SeccompAllowBPF([]byte(tc.in))
		if !errors.Is(err, ErrSeccompFormat) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.msg)
		}
	}
}

// Fields the rewrite does not look at come out as they were, large numbers
// included, and a second rewrite changes nothing.
func TestSeccompAllowBPFKeeps(t *testing.T) {
	base := `{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64"}],"syscalls":[
	  {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]},
	  {"names":["bpf"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]},
	  {"names":["bpf","setns"],"action":"SCMP_ACT_ERRNO","errnoRet":1,"excludes":{"caps":["CAP_SYS_ADMIN"],"arches":["x86"]}}]}`
	once, err := SeccompAllowBPF([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(once), "18446744073709551615"); n != 2 {
		t.Errorf("large args values changed (%d left):\n%s", n, once)
	}
	for _, want := range []string{`"archMap"`, `"arches"`, `"errnoRet": 1`} {
		if !strings.Contains(string(once), want) {
			t.Errorf("%s lost:\n%s", want, once)
		}
	}
	twice, err := SeccompAllowBPF(once)
	if err != nil || string(twice) != string(once) {
		t.Errorf("second rewrite changed the profile (%v):\n%s\n---\n%s", err, once, twice)
	}
}

// endless is a stream of one byte that never ends.
type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

// A mapping past the last id does not wrap around to host root.
func TestHostIDNoWrap(t *testing.T) {
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 4294967295, Size: 2}, {ContainerID: 10, HostID: 4294967290, Size: 100}}
	for _, tc := range []struct {
		in, want uint32
		ok       bool
	}{{0, 4294967295, true}, {1, 0, false}, {15, 4294967295, true}, {16, 0, false}, {109, 0, false}} {
		if got, ok := HostID(maps, tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("HostID(%d) = %d %v, want %d %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
