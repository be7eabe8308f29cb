package ocihook

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/delegate"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// FuzzReadState: any stdin gives a state a hook can use or an error.
func FuzzReadState(f *testing.F) {
	for _, seed := range []string{
		// What runc and crun pass at createRuntime.
		`{"ociVersion":"1.0.2","id":"4b5a3e8f1c2d","status":"created","pid":4242,"bundle":"/var/lib/containers/storage/overlay-containers/4b5a3e8f1c2d/userdata","annotations":{"io.bpfgate.profile":"demo","io.container.manager":"libpod"}}`,
		`{"ociVersion":"1.2.0","id":"abc","status":"creating","pid":1,"bundle":"/run/b"}` + "\n",
		``, `{}`, `null`, `[]`, `{"pid":-1,"bundle":"/b"}`, `{"pid":4194305,"bundle":"/b"}`,
		`{"pid":42,"bundle":"b"}`, `{"pid":"42","bundle":"/b"}`, `{"pid":42,"bundle":"/b","annotations":null}`,
		`{"pid":42,"bundle":"/b"} trailing`, `{"pid":1e3,"bundle":"/b"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ReadState(bytes.NewReader(data))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if st.Pid <= 0 || st.Pid > maxPid || !filepath.IsAbs(st.Bundle) {
			t.Fatalf("accepted pid %d, bundle %q", st.Pid, st.Bundle)
		}
		if len(ShortID(st.ID)) > 12 {
			t.Fatalf("ShortID(%q) too long", st.ID)
		}
		if name, err := ProfileName(st, ""); err == nil && name == "" {
			t.Fatal("empty profile name without an error")
		}
	})
}

// FuzzLoadBundle feeds config.json files to what the hook reads of them:
// LoadBundle, Check and the id mappings.
func FuzzLoadBundle(f *testing.F) {
	for _, seed := range []string{
		// The parts podman writes that the hook reads.
		`{"ociVersion":"1.0.2-dev","process":{"user":{"uid":0,"gid":0},"args":["sh"],"capabilities":{"bounding":["CAP_CHOWN","CAP_BPF","CAP_NET_ADMIN"],"effective":["CAP_BPF"]}},` +
			`"root":{"path":"/var/lib/containers/storage/overlay/abc/merged"},"linux":{"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],` +
			`"gidMappings":[{"containerID":0,"hostID":100000,"size":65536}],"namespaces":[{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"user"}]}}`,
		`{"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":4294967295,"size":2}]}}`,
		`{}`, `null`, `{"root":"x"}`, `{"linux":{"namespaces":{"type":"user"}}}`, `{"process":{"capabilities":{"bounding":[1]}}}`,
		`{"linux":{"uidMappings":[{"containerID":4294967295,"hostID":1,"size":4294967295}]}}`,
	} {
		f.Add([]byte(seed), uint32(0))
	}
	dir := f.TempDir()
	st := &specs.State{ID: "fuzz", Bundle: dir, Pid: 1}
	need := []delegate.Cap{unix.CAP_BPF, unix.CAP_NET_ADMIN}
	f.Fuzz(func(t *testing.T, data []byte, id uint32) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		spec, err := LoadBundle(st)
		if err != nil {
			if !strings.Contains(err.Error(), "container fuzz") {
				t.Fatalf("error does not name the container: %v", err)
			}
			return
		}
		err = Check(&Request{State: st, Spec: spec, Caps: need})
		if err == nil {
			if spec.Linux == nil || !slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace }) {
				t.Fatal("accepted a container without a user namespace")
			}
			for _, c := range need {
				if !slices.Contains(spec.Process.Capabilities.Bounding, c.String()) {
					t.Fatalf("accepted a container without %s", c)
				}
			}
		} else if !errors.Is(err, ErrNoUserNS) && !errors.Is(err, ErrMissingCaps) {
			t.Fatalf("unexpected error: %v", err)
		}
		if spec.Linux == nil {
			return
		}
		for _, maps := range [][]specs.LinuxIDMapping{spec.Linux.UIDMappings, spec.Linux.GIDMappings} {
			h, ok := HostID(maps, id)
			if !ok {
				continue
			}
			// The first mapping that holds id gives h, and h is id's place in it.
			i := slices.IndexFunc(maps, func(m specs.LinuxIDMapping) bool { return id >= m.ContainerID && id-m.ContainerID < m.Size })
			if i < 0 || h < maps[i].HostID || h-maps[i].HostID != id-maps[i].ContainerID {
				t.Fatalf("HostID(%v, %d) = %d", maps, id, h)
			}
		}
	})
}

// FuzzSeccompAllowBPF: the rewrite never panics, refuses what is not a
// profile with ErrSeccompFormat, and what it writes is a profile under
// which containers with CAP_BPF may call bpf(2), which a second rewrite
// leaves unchanged.
func FuzzSeccompAllowBPF(f *testing.F) {
	for _, seed := range []string{
		`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
		  {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
		  {"names":["bpf","setns"],"action":"SCMP_ACT_ALLOW","args":[],"comment":"","includes":{"caps":["CAP_SYS_ADMIN"]},"excludes":{}},
		  {"names":["bpf","setns"],"action":"SCMP_ACT_ERRNO","args":[],"comment":"","includes":{},"excludes":{"caps":["CAP_SYS_ADMIN"]},"errnoRet":1,"errno":"EPERM"}]}`,
		`{"syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":18446744073709551615,"op":"SCMP_CMP_EQ"}]}]}`,
		`{"syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ERRNO","args":5}]}`,
		`{"syscalls":[{"names":["bpf"],"action":"SCMP_ACT_ERRNO","excludes":{"caps":"CAP_BPF"}}]}`,
		`{"syscalls":[{"names":"bpf"}]}`, `{"syscalls":[null]}`, `{"syscalls":null}`, `{"syscalls":[]}`,
		`{}`, `null`, `[]`, `"x"`, `{"syscalls":[{"names":["bpf","bpf"],"action":"SCMP_ACT_KILL","excludes":null}]}`,
	} {
		f.Add([]byte(seed))
	}
	// The profile podman really uses, where it is installed.
	if data, err := os.ReadFile(DefaultSeccompBase); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, base []byte) {
		out, err := SeccompAllowBPF(base)
		if err != nil {
			if !errors.Is(err, ErrSeccompFormat) {
				t.Fatalf("error without ErrSeccompFormat: %v", err)
			}
			return
		}
		var prof struct {
			Syscalls []map[string]json.RawMessage `json:"syscalls"`
		}
		if err := json.Unmarshal(out, &prof); err != nil {
			t.Fatalf("output is not a profile: %v\n%s", err, out)
		}
		allows := 0
		for i, rule := range prof.Syscalls {
			raw, _ := json.Marshal(rule)
			if bytes.Equal(raw, allowBPFRule) {
				allows++
				continue
			}
			var action string
			var args []json.RawMessage
			json.Unmarshal(rule["action"], &action)
			json.Unmarshal(rule["args"], &args)
			if !slices.Contains(stringsOf(rule["names"]), "bpf") || action == "SCMP_ACT_ALLOW" || len(args) > 0 {
				continue
			}
			// A rule that denies bpf: the rewrite checked and extended its
			// excludes.
			var excl struct {
				Caps []string `json:"caps"`
			}
			if err := json.Unmarshal(rule["excludes"], &excl); err != nil ||
				!slices.Contains(excl.Caps, "CAP_BPF") || !slices.Contains(excl.Caps, "CAP_SYS_ADMIN") {
				t.Fatalf("rule %d still denies bpf to CAP_BPF containers (%v):\n%s", i, err, raw)
			}
		}
		if allows == 0 {
			t.Fatalf("no bpfgate allow rule:\n%s", out)
		}
		again, err := SeccompAllowBPF(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second rewrite: %v\n%s\n---\n%s", err, out, again)
		}
	})
}

func stringsOf(raw json.RawMessage) []string {
	var l []string
	json.Unmarshal(raw, &l)
	return l
}
