package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/record"
)

// The fds Hold finds its two pipes on, as RunCommand passes them.
const (
	holdReadyFD = 3
	holdGoFD    = 4
)

// holdTimeout bounds the wait for the held workload to report.
const holdTimeout = 30 * time.Second

// Hold is the first thing the workload of RunCommand runs, inside the
// sandbox: it tells bpfgate it is there (fd 3), waits until bpfgate has
// looked at it (EOF on fd 4), and then becomes args, so that the checks
// see the process the command will be, with its namespaces, capabilities
// and seccomp filter. It returns only on error.
func Hold(args []string) error {
	if len(args) == 0 {
		return errors.New("no command to run")
	}
	ready := os.NewFile(holdReadyFD, "doctor-ready")
	release := os.NewFile(holdGoFD, "doctor-release")
	if ready == nil || release == nil {
		return errors.New("run by bpfgate doctor only")
	}
	if _, err := ready.Write([]byte{'r'}); err != nil {
		return fmt.Errorf("report to bpfgate doctor: %w", err)
	}
	_, _ = io.Copy(io.Discard, release)
	ready.Close()
	release.Close()
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	return unix.Exec(path, args, os.Environ())
}

// tail keeps the last n bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

func (t *tail) lines(k int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	ls := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	if len(ls) > k {
		ls = ls[len(ls)-k:]
	}
	for i := range ls {
		ls[i] = bpffs.Sanitize(ls[i])
	}
	return strings.Join(ls, " | ")
}

// RunCommand runs cfg's command in bpfgate run's sandbox and checks its
// process from inside before the command starts: stub is how the sandbox
// runs Hold (this binary re-executed, e.g. /proc/self/exe doctor-hold --),
// cfg.Args are appended to it. After the checks the command runs to its
// end; the report ends with how it ended. The exit code is the command's.
func RunCommand(cfg launch.Config, stub []string, opts Options) (*Report, int, error) {
	if err := opts.fill(); err != nil {
		return nil, -1, err
	}
	if len(cfg.Args) == 0 {
		return nil, -1, errors.New("no command given")
	}
	if len(cfg.ExtraFiles) > 0 {
		return nil, -1, errors.New("doctor runs the command with no extra fds")
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, -1, err
	}
	defer readyR.Close()
	goR, goW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, -1, err
	}
	defer goW.Close()
	args := cfg.Args
	cfg.Args = append(append([]string(nil), stub...), args...)
	cfg.ExtraFiles = []*os.File{readyW, goR}
	errTail := &tail{n: 4096}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	cfg.Stderr = io.MultiWriter(cfg.Stderr, errTail)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// The command's bpf(2) calls are recorded, as by bpfgate profile, so
	// that what it used and was not delegated can be named.
	cfg.RecordBPF = true
	w, err := launch.Start(cfg)
	readyW.Close()
	goR.Close()
	r := &Report{}
	hostChecks(r)
	if err != nil {
		code := 125
		var ee *launch.ExecError
		if errors.As(err, &ee) {
			code = ee.Code
		}
		r.add(Finding{Check: CheckCommand, Status: Fail, Seen: "the sandbox could not start: " + err.Error(),
			Fix: "see docs/sandbox.md"})
		return r, code, nil
	}
	done := make(chan struct{})
	defer close(done)
	type served struct {
		rec *record.Record
		err error
	}
	recorded := make(chan served, 1)
	if l := w.BPFListener(); l != nil {
		opts.recording = true
		go func() {
			defer l.Close()
			// Serve returns when every task of the sandbox is gone.
			rec, err := record.Serve(context.Background(), l)
			recorded <- served{rec, err}
		}()
	} else {
		recorded <- served{nil, errors.New("the sandbox handed over no seccomp listener")}
	}
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = w.Signal(s)
			case <-done:
				return
			}
		}
	}()
	checkErr := holdAndCheck(r, w, readyR, &opts)
	goW.Close() // the command starts
	code, werr := w.Wait()
	rec := <-recorded
	if checkErr != nil {
		return nil, code, checkErr
	}
	if rec.err != nil {
		r.add(Finding{Check: CheckGap, Status: Warn, Seen: "the command's bpf(2) calls could not be recorded: " + rec.err.Error(),
			Fix: "record them with `bpfgate profile -- CMD`"})
	} else if rec.rec.UsedToken() {
		f := ProfileGap(opts.Names, cfg.Delegation, rec.rec.Delegation())
		if f.Status != OK && code != 0 {
			// A tool stops at its first refusal: there may be more.
			f.Fix += "; the command stopped early, so it may need more: `bpfgate profile -- CMD` records all it uses"
		}
		r.add(f)
	}
	r.add(commandFinding(args, code, werr, errTail))
	return r, code, nil
}

func holdAndCheck(r *Report, w *launch.Workload, ready *os.File, opts *Options) error {
	if err := ready.SetReadDeadline(time.Now().Add(holdTimeout)); err != nil {
		return err
	}
	b := make([]byte, 1)
	if n, err := ready.Read(b); n != 1 {
		return fmt.Errorf("the workload did not report within %v: %v", holdTimeout, err)
	}
	pid, err := workloadPid(w)
	if err != nil {
		return err
	}
	p, err := launch.OpenProcess(pid)
	if err != nil {
		return err
	}
	defer p.Close()
	r.Pid = pid
	return processChecks(r, p, opts)
}

// workloadPid finds the host pid of the sandbox's command: pid 2 of its
// PID namespace, in the workload's cgroup.
func workloadPid(w *launch.Workload) (int, error) {
	procs, err := os.ReadFile(filepath.Join(w.Cgroup(), "cgroup.procs"))
	if err != nil {
		return 0, err
	}
	for _, s := range strings.Fields(string(procs)) {
		status, err := os.ReadFile("/proc/" + s + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "NSpid:" && f[len(f)-1] == "2" {
				return strconv.Atoi(s)
			}
		}
	}
	return 0, fmt.Errorf("no pid 2 in the workload's cgroup %s", w.Cgroup())
}

// hints are what a failing BPF program says and what it means.
var hints = []struct{ says, means string }{
	{"is not pointing to valid bpf_map", "libbpf dropped .rodata/.bss after its socket filter probe failed: see " + CheckSocketFilter},
	{"token insufficiently privileged", "the token lacks a delegated type: record what the command uses with `bpfgate profile -- CMD`, or compare with " + CheckGap},
	{"operation not permitted", "EPERM: a type or command not delegated, a missing capability or seccomp: see the findings above, or record what the command uses with `bpfgate profile -- CMD`"},
	{"perf_event_open", "perf_event_open does not honour tokens: see " + CheckPerf},
	{"tracefs", "tracefs is root-only: see " + CheckPerf},
}

func commandFinding(args []string, code int, werr error, t *tail) Finding {
	f := Finding{Check: CheckCommand}
	name := args[0]
	if code == 0 && werr == nil {
		f.Status, f.Seen = OK, name+" exited 0"
		return f
	}
	f.Status = Fail
	switch {
	case werr != nil:
		f.Seen = fmt.Sprintf("%s: %v", name, werr)
	case code > 128 && code < 128+65:
		f.Seen = fmt.Sprintf("%s was killed by %s", name, unix.SignalName(unix.Signal(code-128)))
	default:
		f.Seen = fmt.Sprintf("%s exited %d", name, code)
	}
	if last := t.lines(5); last != "" {
		f.Seen += "; its stderr ended with: " + last
	}
	t.mu.Lock()
	low := strings.ToLower(string(t.buf))
	t.mu.Unlock()
	var fixes []string
	for _, h := range hints {
		if strings.Contains(low, h.says) {
			fixes = append(fixes, h.means)
		}
	}
	if code == 127 || code == 126 {
		fixes = append(fixes, "the command could not be executed in the sandbox (not found, or not executable by the sandbox's unprivileged host ids)")
	}
	f.Fix = strings.Join(fixes, "; ")
	return f
}
