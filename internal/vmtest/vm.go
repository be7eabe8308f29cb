package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// A Kern is a kernel scripts/kernels.sh unpacked.
type Kern struct {
	Name    string // "6.1", "6.12": the name the script gives it
	Image   string // bzImage
	Config  string // its .config
	Release string // uname -r
	// Modules are loaded at boot, in this order: the few the tests need
	// that Debian builds as modules (veth, ext4).
	Modules []string
}

// HasConfig reports whether the kernel was built with line (e.g.
// "CONFIG_USER_NS=y") in its config.
func (k Kern) HasConfig(line string) (bool, error) {
	b, err := os.ReadFile(k.Config)
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l == line {
			return true, nil
		}
	}
	return false, nil
}

var cache struct {
	once sync.Once
	dir  string
	why  string
}

// Dir returns the directory scripts/kernels.sh caches the kernels in; it
// skips the test (fails it under CI=true) with the reason when they are
// not there or QEMU is not installed at its pinned version.
func Dir(tb testing.TB) string {
	tb.Helper()
	cache.once.Do(func() {
		script := filepath.Join(testutil.RepoRoot(tb), "scripts", "kernels.sh")
		out, err := exec.Command("bash", script, "--path").Output()
		if err != nil {
			cache.why = err.Error()
			if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
				cache.why = strings.TrimSpace(string(ee.Stderr))
			}
			return
		}
		cache.dir = strings.TrimSpace(string(out))
	})
	if cache.dir == "" {
		testutil.Skip(tb, "kernels: "+cache.why)
	}
	return cache.dir
}

// Kernel returns the kernel scripts/kernels.sh calls name ("6.1", "6.12").
func Kernel(tb testing.TB, name string) Kern {
	tb.Helper()
	dir := filepath.Join(Dir(tb), name)
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		testutil.Skip(tb, fmt.Sprintf("kernels: no kernel %q in the cache (%v): is scripts/kernels.sh newer than its cache?", name, err))
	}
	k := Kern{Name: name, Image: filepath.Join(dir, "vmlinuz"), Config: filepath.Join(dir, "config"),
		Release: strings.TrimSpace(string(rel))}
	order, _ := os.ReadFile(filepath.Join(dir, "modules", "order"))
	for _, m := range strings.Fields(string(order)) {
		k.Modules = append(k.Modules, filepath.Join(dir, "modules", m))
	}
	return k
}

// Run says what to run in a VM. Only Kernel and Command are needed.
type Run struct {
	Kernel Kern
	// Command runs as root in Dir (default /work) with Env; its output and
	// exit status are the Result. Command[0] is a path in the VM (the
	// busybox applets are in /bin).
	Command []string
	Dir     string
	Env     []string // added to PATH=/usr/sbin:/usr/bin:/sbin:/bin, HOME=/root, TMPDIR=/tmp
	// Files are copied into the VM: guest path -> host path. Directories
	// are copied whole. ELF programs bring the loader and libraries they
	// link against.
	Files map[string]string
	// Cmdline is added to the kernel's command line (e.g.
	// "lockdown=integrity").
	Cmdline []string
	// CPUs (default: the host's, at most 4) and MemoryMB (default 256).
	CPUs     int
	MemoryMB int
	// Timeout bounds the whole run, boot included (default 5 minutes).
	Timeout time.Duration
}

// Result is what a run gave.
type Result struct {
	Output   string // what Command wrote on stdout and stderr
	ExitCode int    // Command's exit status
	Console  string // the kernel's console (boot messages, oopses)
	Accel    string // "kvm" or "tcg"
	Boot     time.Duration
	Total    time.Duration
}

var (
	// ErrTimeout means the run did not end within its Timeout.
	ErrTimeout = errors.New("the VM did not finish in time")
	// ErrNoExit means the VM stopped without reporting the command's exit
	// status: the kernel panicked or oopsed (see Result.Console), or init
	// failed.
	ErrNoExit = errors.New("the VM stopped without the command's exit status")
)

// inVMEnv is set in the VM, so that a test that starts VMs can tell it
// already runs in one.
const inVMEnv = "BPFGATE_IN_VM"

// InVM reports whether this process runs in a VM that vmtest started.
func InVM() bool { return os.Getenv(inVMEnv) == "1" }

// Markers init writes on the program's serial port.
const (
	startMark = "BPFGATE-VM-START"
	exitMark  = "BPFGATE-VM-EXIT="
)

// initScript mounts what the tests need, moves the root onto a tmpfs (the
// initramfs root cannot be pivot_root'ed, which sandboxes do), runs
// /vm/cmd with its output on the second serial port, reports the exit
// status there, and powers off.
const initScript = `#!/bin/busybox sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ "$$" = 1 ] && [ -z "$VM_STAGE2" ]; then
	/bin/busybox mkdir -p /proc /newroot
	/bin/busybox mount -t proc proc /proc
	/bin/busybox mount -t tmpfs -o mode=0755 root /newroot
	for f in /*; do
		case $f in /proc|/newroot) ;; *) /bin/busybox cp -a "$f" /newroot/ ;; esac
	done
	/bin/busybox mkdir -p /newroot/proc
	/bin/busybox umount /proc
	export VM_STAGE2=1
	exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ln -sf /proc/self/fd /dev/fd
for m in $(cat /vm/modules/order 2>/dev/null); do
	insmod /vm/modules/$m || echo "init: insmod $m failed" >/dev/ttyS0
done
hostname vm
ip link set lo up
stty -F /dev/ttyS1 raw -echo
echo "` + startMark + ` $(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS1
(. /vm/env; cd "$VM_DIR" && exec /vm/cmd) >/dev/ttyS1 2>&1 </dev/null
echo "` + exitMark + `$?" >/dev/ttyS1
sync
poweroff -f
`

// Exec boots r.Kernel and runs r.Command there. The error is about the VM
// (it could not start, timed out, or stopped without the exit status); the
// command's own failure is Result.ExitCode.
func (r Run) Exec(ctx context.Context) (Result, error) {
	accel, _ := Accel(r.Kernel)
	return r.exec(ctx, accel)
}

func (r Run) exec(ctx context.Context, accel string) (res Result, err error) {
	res.Accel = accel
	if len(r.Command) == 0 {
		return res, errors.New("vmtest: no command to run")
	}
	if r.Timeout == 0 {
		r.Timeout = 5 * time.Minute
	}
	if r.CPUs == 0 {
		r.CPUs = min(runtime.NumCPU(), 4)
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = 256
	}
	if r.Dir == "" {
		r.Dir = "/work"
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return res, fmt.Errorf("vmtest: %w: run scripts/kernels.sh as root", err)
	}
	tmp, err := os.MkdirTemp("", "bpfgate-vm-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)

	initrd := filepath.Join(tmp, "initrd.cpio")
	if err := r.initramfs(initrd); err != nil {
		return res, err
	}
	console, output := filepath.Join(tmp, "console.log"), filepath.Join(tmp, "output.log")
	cpu := "max"
	if accel == "kvm" {
		cpu = "host"
	}
	// panic=-1 and -no-reboot: a panic (oops=panic: an oops too) ends QEMU.
	cmdline := append([]string{"console=ttyS0", "loglevel=4", "panic=-1", "oops=panic", "rdinit=/init"}, r.Cmdline...)
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "q35", "-accel", accel, "-cpu", cpu,
		"-smp", strconv.Itoa(r.CPUs), "-m", strconv.Itoa(r.MemoryMB),
		"-chardev", "file,id=console,path=" + console, "-serial", "chardev:console",
		"-chardev", "file,id=output,path=" + output, "-serial", "chardev:output",
		"-kernel", r.Kernel.Image, "-initrd", initrd,
		"-append", strings.Join(cmdline, " "),
	}

	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	// QEMU dies with the test, and only QEMU is killed at the end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var stderr bytes.Buffer
	watch := &kvmWatch{w: &stderr, cancel: cancel}
	cmd.Stdout, cmd.Stderr = watch, watch
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	res.Total = time.Since(start)

	if b, err := os.ReadFile(console); err == nil {
		res.Console = string(b)
	}
	out, _ := os.ReadFile(output)
	text := strings.ReplaceAll(string(out), "\r\n", "\n")
	if i := strings.Index(text, startMark+" "); i >= 0 {
		// The mark carries the guest's uptime when init got there.
		line, rest, _ := strings.Cut(text[i+len(startMark)+1:], "\n")
		if f, err := strconv.ParseFloat(line, 64); err == nil {
			res.Boot = time.Duration(f * float64(time.Second))
		}
		text = rest
	}
	code := -1
	if i := strings.LastIndex(text, exitMark); i >= 0 {
		line, _, _ := strings.Cut(text[i+len(exitMark):], "\n")
		if n, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			code = n
			text = text[:i]
		}
	}
	res.Output, res.ExitCode = text, code
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return res, fmt.Errorf("vmtest: %s on %s after %v: %w", strings.Join(r.Command, " "), r.Kernel.Name, r.Timeout, ErrTimeout)
	case code < 0:
		why := strings.TrimSpace(stderr.String())
		if runErr != nil {
			why = runErr.Error() + ": " + why
		}
		return res, fmt.Errorf("vmtest: %s on %s (qemu: %s; console: %s): %w", strings.Join(r.Command, " "), r.Kernel.Name, why, tail(res.Console, 15), ErrNoExit)
	}
	return res, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kvmWatch ends the run as soon as QEMU reports that KVM failed: QEMU then
// stops the VM but keeps running.
type kvmWatch struct {
	w      io.Writer
	cancel func()
	buf    []byte
}

func (k *kvmWatch) Write(p []byte) (int, error) {
	k.buf = append(k.buf, p...)
	if bytes.Contains(k.buf, []byte("KVM internal error")) || bytes.Contains(k.buf, []byte("failed to initialize kvm")) {
		k.cancel()
	}
	return k.w.Write(p)
}

// initramfs writes the VM's root: busybox, init, the command and its
// environment, and r.Files with their libraries.
func (r Run) initramfs(file string) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("vmtest: %w: install busybox-static", err)
	}
	if libs, err := sharedLibs(busybox); err != nil || len(libs) > 0 {
		return fmt.Errorf("vmtest: %s is not static (%v): install busybox-static", busybox, err)
	}
	a := newArchive()
	a.add("bin/busybox", entry{mode: 0o755, host: busybox})
	a.add("init", entry{mode: 0o755, content: []byte(initScript)})
	a.add("etc/passwd", entry{mode: 0o644, content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")})
	a.add("etc/group", entry{mode: 0o644, content: []byte("root:x:0:\nnogroup:x:65534:\n")})
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "root", "work", r.Dir} {
		a.dir(d)
	}
	var order strings.Builder
	for _, m := range r.Kernel.Modules {
		a.add("vm/modules/"+filepath.Base(m), entry{mode: 0o644, host: m})
		order.WriteString(filepath.Base(m) + "\n")
	}
	a.add("vm/modules/order", entry{mode: 0o644, content: []byte(order.String())})
	// iproute2's ip when the host has it: busybox's cannot make veth pairs
	// or network namespaces the way the tests do.
	if ip, err := exec.LookPath("ip"); err == nil {
		if err := a.addTree("/usr/sbin/ip", ip); err != nil {
			return err
		}
	}

	var cmd strings.Builder
	cmd.WriteString("#!/bin/sh\nexec")
	for _, arg := range r.Command {
		cmd.WriteString(" " + quote(arg))
	}
	cmd.WriteString("\n")
	a.add("vm/cmd", entry{mode: 0o755, content: []byte(cmd.String())})
	var env strings.Builder
	for _, kv := range append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TMPDIR=/tmp", "VM_DIR=" + r.Dir, inVMEnv + "=1"}, r.Env...) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(k) {
			return fmt.Errorf("vmtest: bad environment variable %q", kv)
		}
		fmt.Fprintf(&env, "export %s=%s\n", k, quote(v))
	}
	a.add("vm/env", entry{mode: 0o644, content: []byte(env.String())})

	guests := make([]string, 0, len(r.Files))
	for g := range r.Files {
		guests = append(guests, g)
	}
	sort.Strings(guests)
	for _, g := range guests {
		if err := a.addTree(g, r.Files[g]); err != nil {
			return err
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := a.write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addTree adds the host file or directory host at guest, with the
// libraries of every program in it.
func (a *archive) addTree(guest, host string) error {
	// The top is copied even when it is a symlink (/usr/sbin/ip -> /bin/ip).
	host, err := filepath.EvalSymlinks(host)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	return filepath.Walk(host, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
		rel, _ := filepath.Rel(host, p)
		g := filepath.Join(guest, rel)
		switch {
		case fi.IsDir():
			a.dir(g)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			a.add(g, entry{link: target})
		case fi.Mode().IsRegular():
			a.add(g, entry{mode: uint32(fi.Mode().Perm()), host: p})
			if fi.Mode()&0o111 == 0 {
				return nil
			}
			libs, err := sharedLibs(p)
			if err != nil {
				return fmt.Errorf("vmtest: %w", err)
			}
			for _, l := range libs {
				a.add(l, entry{mode: 0o755, host: l})
			}
		}
		return nil
	})
}

// quote quotes s for sh.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var accel struct {
	once      sync.Once
	name, why string
}

// Accel returns the accelerator runs use, "kvm" or "tcg", and why. KVM is
// probed once by booting k with it: /dev/kvm can exist and still fail
// (nested virtualisation that cannot run a kernel's decompressor).
// BPFGATE_VM_ACCEL=kvm or tcg skips the probe.
func Accel(k Kern) (string, string) {
	accel.once.Do(func() {
		switch v := os.Getenv("BPFGATE_VM_ACCEL"); v {
		case "kvm", "tcg":
			accel.name, accel.why = v, "BPFGATE_VM_ACCEL="+v
			return
		}
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			accel.name, accel.why = "tcg", "no KVM: "+err.Error()
			return
		}
		f.Close()
		// A KVM boot takes a second or two; a failing one either says so
		// on stderr (the run ends then) or hangs.
		probe := Run{Kernel: k, Command: []string{"/bin/true"}, CPUs: 1, MemoryMB: 256, Timeout: 10 * time.Second}
		res, err := probe.exec(context.Background(), "kvm")
		if err == nil && res.ExitCode == 0 {
			accel.name, accel.why = "kvm", fmt.Sprintf("KVM booted %s in %v", k.Name, res.Total.Round(time.Millisecond))
			return
		}
		accel.name, accel.why = "tcg", fmt.Sprintf("/dev/kvm is there but KVM could not boot %s (%v)", k.Name, firstLine(err))
	})
	return accel.name, accel.why
}

func firstLine(err error) string {
	if err == nil {
		return "no error"
	}
	s := bufio.NewScanner(strings.NewReader(err.Error()))
	s.Scan()
	return s.Text()
}
