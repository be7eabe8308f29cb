package doctor_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bpfgate/bpfgate/doctor"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// fakeRuntime puts a runc on PATH (and nothing else) whose `state` names
// the pids given, one a call, the last one from then on: a container that
// restarts, or exits and whose pid goes to another process, while doctor
// looks it up.
func fakeRuntime(t *testing.T, pids ...int) {
	dir := t.TempDir()
	var list string
	for _, p := range pids {
		list += strconv.Itoa(p) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "pids"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":"1.0.2","linux":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Shell builtins only: PATH holds nothing but this runc.
	script := `#!/bin/sh
d=` + dir + `
n=0
[ -e $d/count ] && read n <$d/count
echo $((n+1)) >$d/count
i=0
while read p; do
	pid=$p
	i=$((i+1))
	[ $i -gt $n ] && break
done <$d/pids
printf '{"id":"c1","pid":%s,"status":"running","bundle":"%s"}' "$pid" "$d"
`
	if err := os.WriteFile(filepath.Join(dir, "runc"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
}

func sleeper(t *testing.T) int {
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c.Process.Pid
}

// The pid a runtime names is confirmed once doctor holds the process: a
// container whose init changed meanwhile is an error, not a report on
// another process.
func TestCheckContainerPidChanged(t *testing.T) {
	testutil.RequireRoot(t)
	first, second := sleeper(t), sleeper(t)
	fakeRuntime(t, first, second)
	r, err := doctor.CheckContainer(context.Background(), "c1", doctor.ContainerOptions{}, doctor.Options{})
	if !errors.Is(err, doctor.ErrContainerChanged) {
		t.Fatalf("want ErrContainerChanged, got %v (a report on pid %d)", err, pidOf(r))
	}
	// A container that stays put is checked.
	fakeRuntime(t, second)
	r, err = doctor.CheckContainer(context.Background(), "c1", doctor.ContainerOptions{}, doctor.Options{})
	if err != nil || r.Pid != second {
		t.Fatalf("steady container: %v, %v", r, err)
	}
}

func pidOf(r *doctor.Report) int {
	if r == nil {
		return 0
	}
	return r.Pid
}
