package doctor_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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

// fuseServer answers a FUSE mount whose root holds one directory, "bpf",
// whose entries never stay valid (every path walk asks again), until
// stall is set: from then on it reads requests and answers none, as a
// hostile FUSE server does.
type fuseServer struct {
	dev   *os.File
	stall atomic.Bool
	mu    sync.Mutex
	held  []uint64 // the requests not answered
}

// release answers the requests held with EIO, so that nothing waits on the
// connection (closing /dev/fuse does not end it while the server's read
// holds it).
func (s *fuseServer) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.held {
		msg := make([]byte, 16)
		binary.NativeEndian.PutUint32(msg, 16)
		eio := -int32(unix.EIO)
		binary.NativeEndian.PutUint32(msg[4:], uint32(eio))
		binary.NativeEndian.PutUint64(msg[8:], u)
		unix.Write(int(s.dev.Fd()), msg)
	}
	s.held = nil
}

func (s *fuseServer) serve() {
	buf := make([]byte, 1<<20+4096)
	ne := binary.NativeEndian
	fd := int(s.dev.Fd()) // blocking: the runtime's poller does not take /dev/fuse
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EPERM):
			// Not mounted yet.
			time.Sleep(time.Millisecond)
			continue
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOENT):
			continue
		case err != nil:
			return
		}
		if n < 40 {
			continue
		}
		op, unique, node := ne.Uint32(buf[4:]), ne.Uint64(buf[8:]), ne.Uint64(buf[16:])
		if s.stall.Load() {
			if op != 2 && op != 42 { // forgets have no answer
				s.mu.Lock()
				s.held = append(s.held, unique)
				s.mu.Unlock()
			}
			continue
		}
		body := buf[40:n]
		reply := func(errno int32, out []byte) {
			msg := make([]byte, 16+len(out))
			ne.PutUint32(msg, uint32(len(msg)))
			ne.PutUint32(msg[4:], uint32(errno))
			ne.PutUint64(msg[8:], unique)
			copy(msg[16:], out)
			unix.Write(fd, msg)
		}
		attr := func(ino uint64) []byte {
			a := make([]byte, 88)
			ne.PutUint64(a, ino)
			ne.PutUint32(a[60:], unix.S_IFDIR|0o755) // mode
			ne.PutUint32(a[64:], 2)                  // nlink
			return a
		}
		switch op {
		case 26: // INIT
			out := make([]byte, 64)
			ne.PutUint32(out, 7)
			ne.PutUint32(out[4:], 31)
			ne.PutUint32(out[20:], 4096) // max_write
			reply(0, out)
		case 1: // LOOKUP
			if name, _, _ := strings.Cut(string(body), "\x00"); node != 1 || name != "bpf" {
				reply(-int32(unix.ENOENT), nil)
				continue
			}
			out := make([]byte, 40, 128)
			ne.PutUint64(out, 2) // nodeid; entry and attributes valid 0 s
			reply(0, append(out, attr(2)...))
		case 3: // GETATTR
			reply(0, append(make([]byte, 16), attr(node)...))
		case 2, 42: // FORGET, BATCH_FORGET: no answer
		case 34: // ACCESS
			reply(0, nil)
		default:
			reply(-int32(unix.ENOSYS), nil)
		}
	}
}

// A process cannot hold doctor up by a FUSE filesystem of its own on the
// way to its bpffs: the token check gives up after the timeout.
func TestCheckProcessFUSEStall(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Skip(t, "no "+tool+"(1)")
		}
	}
	dev, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		testutil.Skip(t, "no /dev/fuse: "+err.Error())
	}
	srv := &fuseServer{dev: dev}
	go srv.serve()
	defer dev.Close() // aborts the connection: whatever waits on it fails
	dir := testutil.PublicDir(t)
	fuse := filepath.Join(dir, "f")
	os.Mkdir(fuse, 0o755)
	script := `grep ' - bpf ' /proc/self/mountinfo | cut -d' ' -f5 | xargs -r umount -l
mount -i -t fuse -o fd=3,rootmode=40000,user_id=0,group_id=0 review11 "$1" && exec 3<&- &&
mount -t bpf -o delegate_cmds=any bpf "$1/bpf" && echo ready && exec unshare -U sh -c 'read x'`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", fuse)
	cmd.ExtraFiles = []*os.File{dev}
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	ready := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		ready <- fmt.Sprint(line, err)
	}()
	select {
	case line := <-ready:
		if line != "ready\n<nil>" {
			t.Fatalf("%q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the FUSE and bpffs mounts are not ready after 10 s")
	}
	pid := cmd.Process.Pid
	for i := 0; nsOf(t, pid) == nsOf(t, os.Getpid()); i++ {
		if i > 500 {
			t.Fatal("no user namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.stall.Store(true)
	defer srv.release()
	type res struct {
		r   *doctor.Report
		err error
	}
	done := make(chan res, 1)
	start := time.Now()
	go func() {
		r, err := doctor.CheckProcess(pid, doctor.Options{Timeout: time.Second})
		done <- res{r, err}
	}()
	select {
	case got := <-done:
		if got.err != nil {
			t.Fatal(got.err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("took %v", took)
		}
		expect(t, got.r, doctor.CheckBPFFS, doctor.OK, "/bpf: delegate_cmds=any")
		expect(t, got.r, doctor.CheckToken, doctor.Warn, "did not answer within 1s")
	case <-time.After(15 * time.Second):
		dev.Close()
		t.Fatal("doctor still waits for the process's FUSE server after 15 s")
	}
}
