package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/idpool"
	"github.com/bpfgate/bpfgate/internal/testutil"
)

// TestReviewPreserveFDsLeaksBPFGateFDs: --preserve-fds N passes bpfgate's
// fds 3 to 3+N-1 as they are when the sandbox starts. When the caller had
// fewer open, those numbers belong to bpfgate itself: the handshake socket
// (an AF_UNIX socket past the filter), the lease directory, and the id
// lease's lock file, open read-write. The workload unlocks the lease while
// it runs (the next workload may get the same host ids) and can fill /run
// through the root-owned lock file.
func TestReviewPreserveFDsLeaksBPFGateFDs(t *testing.T) {
	testutil.RequireRoot(t)
	script := `for f in /proc/self/fd/*; do
  n=${f##*/}; l=$(readlink $f)
  case $l in /run/bpfgate/ids/*-*) flock -u $n && echo "unlocked $l";; esac
  echo "fd $n $l"
done
sleep 3`
	cmd, _, stderr := bpfgateCmd(t, "", nil, "run", "-q", "--profile", "demo", "--preserve-fds", "10", "--", "sh", "-c", script)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var leaked []string
	unlocked := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "unlocked "); ok {
			unlocked = filepath.Base(name)
			break
		}
		f := strings.Fields(line)
		if len(f) == 3 {
			if n, _ := strconv.Atoi(f[1]); n >= 3 && (strings.HasPrefix(f[2], "/run/bpfgate") || strings.HasPrefix(f[2], "socket:")) {
				leaked = append(leaked, line)
			}
		}
	}
	stillHeld := false
	if unlocked != "" {
		held, err := idpool.Pool{Dir: idpool.DefaultDir}.Leases()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range held {
			if strconv.FormatUint(uint64(h.Base), 10)+"-"+strconv.FormatUint(uint64(h.Size), 10) == unlocked {
				stillHeld = true
			}
		}
	}
	go func() { time.Sleep(10 * time.Second); cmd.Process.Kill() }()
	cmd.Wait()
	t.Logf("leaked: %v; unlocked %q, still held %v; stderr %s", leaked, unlocked, stillHeld, stderr)
	if len(leaked) > 0 {
		t.Errorf("the workload got bpfgate's own fds through --preserve-fds: %v", leaked)
	}
	if unlocked != "" && !stillHeld {
		t.Errorf("the running workload released its id lease %s: another workload can now get the same host ids", unlocked)
	}
}
