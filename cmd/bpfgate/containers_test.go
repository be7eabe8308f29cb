package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bpfgateIn runs the CLI with stdin.
func bpfgateIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), asBPFGate+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, stdout.String(), stderr.String()}
}

// hookState is an OCI state whose bundle holds an empty config.json.
func hookState(t *testing.T) string {
	t.Helper()
	bundle := t.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(`{"ociVersion":"1.0.2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return `{"ociVersion":"1.0.2","id":"0123456789abcdef","status":"creating","pid":1,"bundle":"` + bundle + `"}`
}

// TestPolicyFailsClosed: a config file that exists defines exactly the
// allowed profiles, for containers (oci-hook, cdi generate) and for run.
func TestPolicyFailsClosed(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	broken := filepath.Join(dir, "broken.yaml")
	one := filepath.Join(dir, "one.yaml")
	for path, body := range map[string]string{
		empty:  "profiles: {}\n",
		broken: "profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hsah]\n",
		one:    "profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hash]\n",
	} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noneMsg := "the host policy allows no profiles: " + empty + " defines none"
	brokenMsg := "broken.yaml:4: profiles.counter.maps"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string // on stderr, with exit status 1
	}{
		{"run, empty policy", "", []string{"--config", empty, "run", "--profile", "demo", "--", "true"}, noneMsg},
		{"run, trace under an empty policy", "", []string{"--config", empty, "run", "--profile", "trace", "--", "true"}, noneMsg},
		{"run, broken policy", "", []string{"--config", broken, "run", "--profile", "demo", "--", "true"}, brokenMsg},
		{"run, built-in not in the file", "", []string{"--config", one, "run", "--profile", "demo", "--", "true"},
			`unknown profile "demo" (known: counter)`},
		{"hook, empty policy", hookState(t), []string{"--config", empty, "oci-hook", "--profile", "demo"},
			"profile not allowed by the host: unknown profile \"demo\": " + noneMsg},
		{"hook, broken policy", hookState(t), []string{"--config", broken, "oci-hook", "--profile", "demo"}, brokenMsg},
		{"hook, built-in not in the file", hookState(t), []string{"--config", one, "oci-hook", "--profile", "net"},
			`profile not allowed by the host: unknown profile "net" (known: counter)`},
		{"cdi generate, empty policy", "", []string{"--config", empty, "cdi", "generate", "-o", filepath.Join(dir, "cdi.yaml")}, noneMsg},
		{"cdi generate, broken policy", "", []string{"--config", broken, "cdi", "generate", "-o", filepath.Join(dir, "cdi.yaml")}, brokenMsg},
		{"profiles, broken policy", "", []string{"--config", broken, "profiles"}, brokenMsg},
		{"explicit config that does not exist", "", []string{"--config", filepath.Join(dir, "nope.yaml"), "profiles"}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bpfgateIn(t, tc.stdin, tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("got %+v, want exit 1 and %q", r, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "cdi.yaml")); err == nil {
		t.Error("cdi generate wrote a spec from a policy that allows nothing")
	}

	// bpfgate profiles says where the profiles come from.
	r := bpfgate(t, "--config", empty, "profiles")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "profiles from "+empty+"\n") || strings.Contains(r.stdout, "demo") {
		t.Errorf("profiles, empty policy: %+v", r)
	}
	r = bpfgate(t, "--config", one, "profiles")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "profiles from "+one+"\ncounter ("+one+")") || strings.Contains(r.stdout, "builtin") {
		t.Errorf("profiles, one profile: %+v", r)
	}
	var view struct {
		Config   string
		Builtin  bool
		Profiles []struct{ Name string }
	}
	r = bpfgate(t, "--json", "--config", empty, "profiles")
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil || view.Config != empty || view.Builtin || view.Profiles == nil || len(view.Profiles) != 0 {
		t.Errorf("profiles --json, empty policy: %v %+v %+v", err, view, r)
	}
	if _, err := os.Lstat(defaultConfig()); err == nil {
		t.Logf("%s exists: not checking the built-in case", defaultConfig())
		return
	}
	r = bpfgate(t, "profiles")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "built-in profiles (no "+defaultConfig()+")\n") {
		t.Errorf("profiles, no file: %+v", r)
	}
	view.Profiles = nil
	r = bpfgate(t, "--json", "profiles")
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil || !view.Builtin || len(view.Profiles) != 3 {
		t.Errorf("profiles --json, no file: %v %+v", err, view)
	}
}

// TestOutputFiles: writers never follow a planted PATH.tmp or a symlinked
// target, and the hook's log is never appended through a symlink.
func TestOutputFiles(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.json")
	if err := os.WriteFile(base, []byte(`{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	writers := []struct {
		name string
		args func(out string) []string
		ext  string
	}{
		{"oci-hook seccomp", func(out string) []string { return []string{"oci-hook", "seccomp", "--base", base, "-o", out} }, ".json"},
		{"oci-hook hooks-d", func(out string) []string { return []string{"oci-hook", "hooks-d", "-o", out} }, ".json"},
		{"cdi generate", func(out string) []string { return []string{"cdi", "generate", "-o", out} }, ".yaml"},
	}
	const secret = "root:only:secret\n"
	for _, w := range writers {
		for _, tc := range []struct {
			name  string
			plant func(t *testing.T, out, victim string)
			want  string // "" for success
		}{
			{"pre-planted PATH.tmp symlink", func(t *testing.T, out, victim string) { mustSymlink(t, victim, out+".tmp") }, ""},
			{"target is a symlink", func(t *testing.T, out, victim string) { mustSymlink(t, victim, out) }, "is a symbolic link"},
		} {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out"+w.ext)
				victim := rootOnly(t, secret)
				tc.plant(t, out, victim)
				r := bpfgate(t, w.args(out)...)
				if data, _ := os.ReadFile(victim); string(data) != secret {
					t.Fatalf("the root-only file was written: %q (%+v)", data, r)
				}
				if tc.want != "" {
					if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
						t.Fatalf("got %+v, want %q", r, tc.want)
					}
					return
				}
				if r.code != 0 {
					t.Fatalf("%+v", r)
				}
				if fi, err := os.Lstat(out); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
					t.Fatalf("%s: %v %v", out, fi, err)
				}
			})
		}
	}

	t.Run("oci-hook --log", func(t *testing.T) {
		dir := t.TempDir()
		victim := rootOnly(t, secret)
		link := filepath.Join(dir, "link.log")
		mustSymlink(t, victim, link)
		// The hook fails (no such profile), and logs that.
		r := bpfgateIn(t, hookState(t), "--config", filepath.Join(dir, "nope.yaml"), "oci-hook", "--profile", "demo", "--log", link)
		if data, _ := os.ReadFile(victim); string(data) != secret {
			t.Fatalf("appended through the symlink: %q", data)
		}
		if !strings.Contains(r.stderr, "is a symbolic link") {
			t.Errorf("not refused: %+v", r)
		}
		log := filepath.Join(dir, "hook.log")
		bpfgateIn(t, hookState(t), "--config", filepath.Join(dir, "nope.yaml"), "oci-hook", "--profile", "demo", "--log", log)
		fi, err := os.Stat(log)
		if err != nil || fi.Mode() != 0o600 {
			t.Fatalf("log %v %v, want mode 0600", fi, err)
		}
		var entry struct{ Container, Error string }
		data, _ := os.ReadFile(log)
		if err := json.Unmarshal(data, &entry); err != nil || entry.Container != "0123456789abcdef" || entry.Error == "" {
			t.Errorf("log line: %v %q", err, data)
		}
	})
}

// rootOnly is a file only its owner can read and write (root, in these
// tests): what an attacker would aim a planted symlink at.
func rootOnly(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestOCIHookPrecreate: the hooks.d entry runs the precreate command, which
// passes an unannotated config through untouched and hands an annotated
// one the createRuntime hook, with the same config file.
func TestOCIHookPrecreate(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(policy, []byte("profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hash]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := bpfgateIn(t, "", "--config", policy, "oci-hook", "hooks-d", "--stage", "precreate", "-o", "-")
	var entry hooksDirEntry
	if err := json.Unmarshal([]byte(r.stdout), &entry); err != nil || r.code != 0 {
		t.Fatalf("hooks-d: %v %+v", err, r)
	}
	if !slices.Equal(entry.Stages, []string{"precreate"}) || !slices.Equal(entry.Hook.Args[:3], []string{"bpfgate", "oci-hook", "precreate"}) ||
		!slices.Contains(entry.Hook.Args, policy) || entry.When.Annotations[`^io\.bpfgate\.profile$`] != ".+" {
		t.Errorf("entry %+v", entry)
	}
	if r := bpfgateIn(t, "", "oci-hook", "hooks-d", "--stage", "prestart", "-o", "-"); r.code == 0 || !strings.Contains(r.stderr, "want createRuntime or precreate") {
		t.Errorf("--stage prestart: %+v", r)
	}

	plain := "{\"ociVersion\": \"1.0.2\",  \"annotations\": {\"a\": \"b\"}}\n"
	if r := bpfgateIn(t, plain, "--config", policy, "oci-hook", "precreate"); r.code != 0 || r.stdout != plain {
		t.Errorf("unannotated: %+v", r)
	}
	annotated := `{"ociVersion":"1.0.2","annotations":{"io.bpfgate.profile":"counter"},"process":{"user":{"uid":0,"gid":0}},` +
		`"linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}}`
	r = bpfgateIn(t, annotated, "--config", policy, "oci-hook", "precreate")
	var spec struct {
		Process struct {
			Capabilities struct{ Bounding []string }
		}
		Hooks struct{ CreateRuntime []struct{ Args []string } }
	}
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil || r.code != 0 {
		t.Fatalf("annotated: %v %+v", err, r)
	}
	if !slices.Contains(spec.Process.Capabilities.Bounding, "CAP_BPF") || len(spec.Hooks.CreateRuntime) != 1 ||
		!slices.Equal(spec.Hooks.CreateRuntime[0].Args, []string{"bpfgate", "oci-hook", "--config", policy}) {
		t.Errorf("annotated: %s", r.stdout)
	}
	// A profile the host does not define: only the hook, which refuses it.
	r = bpfgateIn(t, strings.Replace(annotated, "counter", "net", 1), "--config", policy, "oci-hook", "precreate")
	if r.code != 0 || strings.Contains(r.stdout, "CAP_BPF") || !strings.Contains(r.stdout, `"createRuntime"`) ||
		!strings.Contains(r.stderr, `unknown profile "net" (known: counter)`) {
		t.Errorf("not allowed: %+v", r)
	}
	if r := bpfgateIn(t, "null", "oci-hook", "precreate"); r.code == 0 || r.stdout != "" {
		t.Errorf("null: %+v", r)
	}
}

// TestOCIHookAuditArgs: --audit DIR of hooks-d, cdi generate and precreate
// reaches the createRuntime hook they set up; the recorder is no command
// to run by hand.
func TestOCIHookAuditArgs(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(policy, []byte("profiles:\n  counter:\n    cmds: [map_create]\n    maps: [hash]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const dir = "/var/log/bpfgate/audit"
	r := bpfgateIn(t, "", "--config", policy, "oci-hook", "hooks-d", "--audit", dir, "-o", "-")
	var entry hooksDirEntry
	if err := json.Unmarshal([]byte(r.stdout), &entry); err != nil || r.code != 0 {
		t.Fatalf("hooks-d: %v %+v", err, r)
	}
	if i := slices.Index(entry.Hook.Args, "--audit"); i < 2 || i+1 >= len(entry.Hook.Args) || entry.Hook.Args[i+1] != dir {
		t.Errorf("hooks-d: %v", entry.Hook.Args)
	}
	r = bpfgateIn(t, "", "--config", policy, "cdi", "generate", "--audit", dir, "-o", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "- --audit\n") || !strings.Contains(r.stdout, "- "+dir+"\n") {
		t.Errorf("cdi generate: %+v", r)
	}
	annotated := `{"ociVersion":"1.0.2","annotations":{"io.bpfgate.profile":"counter"},"process":{"user":{"uid":0,"gid":0}},` +
		`"linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":100000,"size":65536}]}}`
	r = bpfgateIn(t, annotated, "--config", policy, "oci-hook", "precreate", "--audit", dir)
	var spec struct {
		Hooks struct{ CreateRuntime []struct{ Args []string } }
	}
	if err := json.Unmarshal([]byte(r.stdout), &spec); err != nil || r.code != 0 {
		t.Fatalf("precreate: %v %+v", err, r)
	}
	if len(spec.Hooks.CreateRuntime) != 1 || !slices.Equal(spec.Hooks.CreateRuntime[0].Args, []string{"bpfgate", "oci-hook", "--audit", dir, "--config", policy}) {
		t.Errorf("precreate: %s", r.stdout)
	}
	if r := bpfgateIn(t, "", "oci-hook", "audit-recorder", "--userns", "4026532177"); r.code == 0 || !strings.Contains(r.stderr, "run by bpfgate oci-hook --audit only") {
		t.Errorf("audit-recorder by hand: %+v", r)
	}
}
