package audit

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
)

var (
	// ErrClosed is returned by Read after Close.
	ErrClosed = os.ErrClosed
	// ErrFlushed is returned by Read once Flush has been called and every
	// event recorded before it has been read.
	ErrFlushed = ringbuf.ErrFlushed
	// ErrUnsupported means the tracer cannot run here: no BPF tracepoint
	// support, or not root.
	ErrUnsupported = errors.New("bpf() audit is not supported here")
)

// HostUserNS is the inode number of the initial user namespace
// (PROC_USER_INIT_INO), the host's.
const HostUserNS = 0xEFFFFFFD

// ProgramPrefix starts the kernel name of the tracer's programs, so that a
// listing of programs and links can tell them apart (bpftool prog show).
const ProgramPrefix = "bpfgate_audit"

// Hook is where the tracer attaches.
type Hook int

const (
	// HookAuto tries HookRawTracepoint, then HookTracepoint, where the
	// kernel takes ia32 or x32 system calls (see ABIs); the other way
	// round where it does not.
	HookAuto Hook = iota
	// HookTracepoint attaches to syscalls:sys_exit_bpf: the program runs
	// for bpf(2) only; other system calls pay the kernel's check of its
	// bitmap of traced syscalls. The tracepoint does not fire for ia32
	// (int 0x80) and x32 calls, which are not recorded. Needs tracefs (or
	// debugfs) to find the tracepoint.
	HookTracepoint
	// HookRawTracepoint attaches a tp_btf program to raw_syscalls:sys_exit:
	// the program runs at every system call's exit and returns at once for
	// those that are not bpf(2), through any ABI.
	HookRawTracepoint
)

func (h Hook) String() string {
	switch h {
	case HookTracepoint:
		return "tracepoint syscalls:sys_exit_bpf"
	case HookRawTracepoint:
		return "tp_btf sys_exit"
	}
	return "auto"
}

// Filter selects what is recorded; zero fields match every value. The
// tracer applies it in the kernel, before it copies anything.
type Filter struct {
	Pid      uint32 // thread group id
	UserNS   uint32 // user namespace inode (ls -L -i /proc/PID/ns/user)
	CgroupID uint64 // cgroup v2 id (the inode of the cgroup's directory)
}

// Options configure a Tracer.
type Options struct {
	Filter Filter
	Hook   Hook
	// RingSize is the ring buffer's size in bytes, a power of two and a
	// multiple of the page size (2 MiB, about 7000 events, if 0).
	RingSize int
	// Names decode the kernel's enums (delegate.KernelNames(), or the
	// built-in names, if nil).
	Names *delegate.Names
}

// Tracer records bpf(2) calls host-wide, until Close.
type Tracer struct {
	coll    *ebpf.Collection
	link    link.Link
	rd      *ringbuf.Reader
	filters *ebpf.Map
	dropped *ebpf.Map
	dec     *decoder
	hook    Hook

	mu       sync.Mutex // guards rec and the reader's deadline
	rec      ringbuf.Record
	deadline atomic.Value // time.Time: the caller's deadline for Read

	closeOnce sync.Once
	closeErr  error
}

const defaultRingSize = 2 << 20

// Open loads the tracer, attaches it and starts recording. The caller must
// Close it. It needs root (CAP_BPF and CAP_PERFMON in the host, plus
// CAP_SYS_ADMIN for the tracepoint's perf event).
func Open(opts Options) (*Tracer, error) {
	names := opts.Names
	if names == nil {
		var err error
		if names, err = delegate.KernelNames(); err != nil {
			names = delegate.BuiltinNames()
		}
	}
	size := opts.RingSize
	if size == 0 {
		size = defaultRingSize
	}
	if size < os.Getpagesize() || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring size %d: want a power of two of at least %d bytes", size, os.Getpagesize())
	}
	// The tracepoint costs other system calls less, but does not see
	// ia32 and x32 ones: where processes can make them, the raw tracepoint
	// comes first.
	hooks := []Hook{HookTracepoint, HookRawTracepoint}
	if len(ABIs()) > 1 {
		hooks = []Hook{HookRawTracepoint, HookTracepoint}
	}
	switch opts.Hook {
	case HookAuto:
	case HookTracepoint, HookRawTracepoint:
		hooks = []Hook{opts.Hook}
	default:
		return nil, fmt.Errorf("hook %d: unknown", opts.Hook)
	}
	var errs []error
	for _, h := range hooks {
		t, err := open(h, size, names, opts.Filter)
		if err == nil {
			return t, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", h, err))
	}
	return nil, fmt.Errorf("%w: %w", ErrUnsupported, errors.Join(errs...))
}

func open(h Hook, size int, names *delegate.Names, f Filter) (_ *Tracer, err error) {
	spec, err := loadTracer()
	if err != nil {
		return nil, fmt.Errorf("tracer object: %w", err)
	}
	prog := "bpfgate_audit_tp"
	if h == HookRawTracepoint {
		prog = "bpfgate_audit_btf"
	}
	for name := range spec.Programs {
		if name != prog {
			delete(spec.Programs, name)
		}
	}
	spec.Maps["events"].MaxEntries = uint32(size)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	t := &Tracer{coll: coll, filters: coll.Maps["filters"], dropped: coll.Maps["dropped"], dec: newDecoder(names), hook: h}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := t.SetFilter(f); err != nil {
		return nil, err
	}
	if t.rd, err = ringbuf.NewReader(coll.Maps["events"]); err != nil {
		return nil, fmt.Errorf("ring buffer: %w", err)
	}
	p := coll.Programs[prog]
	if h == HookRawTracepoint {
		t.link, err = link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
	} else {
		t.link, err = link.Tracepoint("syscalls", "sys_exit_bpf", p, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	return t, nil
}

// System call ABIs, as Event.ABI and ABIs name them.
const (
	ABIX8664 = "x86_64" // the 64-bit ABI: Event.ABI is empty
	ABIIA32  = "ia32"   // 32-bit calls: int 0x80, sysenter, 32-bit programs
	ABIX32   = "x32"    // the x32 ABI: 64-bit registers, 32-bit pointers
)

// ABIs lists the system call ABIs through which this kernel lets processes
// call bpf(2): x86_64, and ia32 and x32 where it has them.
func ABIs() []string { return kernelABIs() }

var kernelABIs = sync.OnceValue(func() []string {
	abis := []string{ABIX8664}
	if hasIA32() {
		abis = append(abis, ABIIA32)
	}
	if hasX32() {
		abis = append(abis, ABIX32)
	}
	return abis
})

// hasIA32 says whether processes can make 32-bit system calls: the kernel
// has a 32-bit bpf(2) (its entry point, from CONFIG_IA32_EMULATION, is in
// its BTF, which is read once per process and which loading the tracer
// reads anyway) and was not booted with ia32_emulation off. (A kernel
// built to default to off, CONFIG_IA32_EMULATION_DEFAULT_DISABLED, is
// taken as on: it errs towards the hook that sees more.)
func hasIA32() bool {
	k, err := btf.LoadKernelSpec()
	if err != nil {
		return false
	}
	var fn *btf.Func
	if k.TypeByName("__ia32_sys_bpf", &fn) != nil {
		return false
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return true
	}
	on := true
	for _, arg := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(arg, "ia32_emulation="); ok {
			// kstrtobool's false: 0, n, f (any case), off.
			v = strings.ToLower(v)
			on = !(strings.HasPrefix(v, "0") || strings.HasPrefix(v, "n") || strings.HasPrefix(v, "f") || v == "off")
		}
	}
	return on
}

// hasX32 says whether the kernel takes x32 system calls, by making one:
// getpid with the x32 bit. Kernels without CONFIG_X86_X32_ABI, and
// Debian's unless booted with syscall.x32=y, answer ENOSYS; any other
// answer (a seccomp filter's EPERM, say) is taken as yes.
func hasX32() bool {
	const x32Bit = 0x40000000
	_, _, errno := unix.RawSyscall(x32Bit|unix.SYS_GETPID, 0, 0, 0)
	return errno != unix.ENOSYS
}

// ABIs lists the system call ABIs whose bpf(2) calls the tracer records,
// of those ABIs() lists: all of them with HookRawTracepoint, x86_64 alone
// with HookTracepoint (the syscall tracepoints skip the others).
func (t *Tracer) ABIs() []string {
	if t.hook == HookRawTracepoint {
		return ABIs()
	}
	return []string{ABIX8664}
}

// Hook says where the tracer is attached.
func (t *Tracer) Hook() Hook { return t.hook }

// SetFilter replaces the filter; calls that end after it returns are
// filtered with it.
func (t *Tracer) SetFilter(f Filter) error {
	v := tracerFilter{CgroupId: f.CgroupID, Tgid: f.Pid, Userns: f.UserNS}
	if err := t.filters.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("set filter: %w", err)
	}
	return nil
}

// pollInterval is how often Read looks into the ring buffer: the tracer
// wakes the reader only once the ring is a quarter full, since a wakeup per
// event would cost the traced call more than recording it.
const pollInterval = 200 * time.Millisecond

// Read waits for the next event. It returns ErrClosed after Close,
// ErrFlushed once everything recorded before Flush has been read, and
// os.ErrDeadlineExceeded after a deadline set with SetDeadline. Events
// reach Read within pollInterval (200 ms) of their call, or at once when
// many are waiting.
func (t *Tracer) Read() (*Event, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		dl := time.Now().Add(pollInterval)
		user, _ := t.deadline.Load().(time.Time)
		if !user.IsZero() && user.Before(dl) {
			dl = user
		}
		t.rd.SetDeadline(dl)
		err := t.rd.ReadInto(&t.rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !user.IsZero() && !time.Now().Before(user) {
				return nil, err
			}
			continue
		}
		if errors.Is(err, ringbuf.ErrClosed) {
			return nil, ErrClosed
		}
		if err != nil {
			return nil, err
		}
		break
	}
	var raw tracerEvent
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&raw)), unsafe.Sizeof(raw))
	if len(t.rec.RawSample) < len(buf) {
		return nil, fmt.Errorf("short record: %d bytes, want %d", len(t.rec.RawSample), len(buf))
	}
	copy(buf, t.rec.RawSample)
	return t.dec.decode(&raw), nil
}

// SetDeadline makes Read return os.ErrDeadlineExceeded once the time has
// passed and nothing is left to read; the zero time removes the deadline.
// It may be called while a Read waits.
func (t *Tracer) SetDeadline(d time.Time) { t.deadline.Store(d) }

// Flush makes Read return what has been recorded so far, then ErrFlushed
// once: the way to read the tail after the traced workload has ended.
func (t *Tracer) Flush() error { return t.rd.Flush() }

// Drain reads every event recorded until now and passes each to fn.
func (t *Tracer) Drain(fn func(*Event) error) error {
	if err := t.Flush(); err != nil {
		return err
	}
	for {
		e, err := t.Read()
		if errors.Is(err, ErrFlushed) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// Dropped returns how many events were lost because the ring buffer was
// full (since Open, on every CPU).
func (t *Tracer) Dropped() (uint64, error) {
	var per []uint64
	if err := t.dropped.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("read the drop counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Close detaches the tracer and frees its programs, maps and fds. A Read
// waiting in another goroutine returns ErrClosed.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.close() })
	return t.closeErr
}

func (t *Tracer) close() error {
	var errs []error
	if t.link != nil {
		errs = append(errs, t.link.Close())
		t.link = nil
	}
	if t.rd != nil {
		errs = append(errs, t.rd.Close())
	}
	if t.coll != nil {
		t.coll.Close()
		t.coll = nil
	}
	return errors.Join(errs...)
}
