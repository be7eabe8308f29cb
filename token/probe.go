package token

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/sys"
)

// Outcome of trying to create one object with a token.
type Outcome string

const (
	Works       Outcome = "ok"           // the object was created
	Denied      Outcome = "denied"       // EPERM: not delegated, or a capability is missing
	Unsupported Outcome = "unsupported"  // the kernel rejected the object itself
	NotProbed   Outcome = "needs target" // needs what a probe cannot make up: a program to extend, a struct_ops type
)

// Result is the outcome for one map or program type.
type Result struct {
	Kind    string  `json:"kind"` // "map" or "prog"
	Type    string  `json:"type"`
	Value   uint32  `json:"value"`
	Attach  string  `json:"attach_type,omitempty"` // expected_attach_type used for programs
	Outcome Outcome `json:"outcome"`
	Error   string  `json:"error,omitempty"`
}

// Report is what a probe found.
type Report struct {
	Path     string        `json:"path,omitempty"`
	Token    bool          `json:"token"` // whether a token was used
	BTF      Outcome       `json:"btf_load"`
	Maps     []Result      `json:"maps"`
	Progs    []Result      `json:"progs"`
	Duration time.Duration `json:"duration_ns"`
}

// Probe tries to create a minimal map of every map type and load a minimal
// program of every program type the kernel knows, with token t (or without
// a token if t is nil), and reports what really works. Every object is
// closed again.
func Probe(t *Token, names *delegate.Names) Report {
	start := time.Now()
	tfd := -1
	r := Report{Token: t != nil}
	if t != nil {
		tfd, r.Path = t.fd, t.path
	}
	p := prober{tfd: tfd, btfFD: -1}
	defer p.close()

	var btfErr error
	p.btfFD, btfErr = p.loadBTF()
	r.BTF = outcome(btfErr)

	for _, v := range names.Enums[delegate.Maps].Values {
		if v.Value == 0 || v.Value >= 64 || seen(r.Maps, v.Value) {
			continue
		}
		name := names.ShortName(delegate.Maps, v.Value)
		res := Result{Kind: "map", Type: name, Value: v.Value}
		err := p.tryMap(name, v.Value)
		res.Outcome = outcome(err)
		if err != nil {
			res.Error = err.Error()
		}
		r.Maps = append(r.Maps, res)
	}

	for _, v := range names.Enums[delegate.Progs].Values {
		if v.Value == 0 || v.Value >= 64 || seen(r.Progs, v.Value) {
			continue
		}
		name := names.ShortName(delegate.Progs, v.Value)
		res := Result{Kind: "prog", Type: name, Value: v.Value}
		attach, err := p.tryProg(names, name, v.Value)
		res.Attach = attach
		res.Outcome = outcome(err)
		if err != nil {
			res.Error = err.Error()
		}
		r.Progs = append(r.Progs, res)
	}
	r.Duration = time.Since(start)
	return r
}

func seen(rs []Result, v uint32) bool {
	for _, r := range rs {
		if r.Value == v {
			return true
		}
	}
	return false
}

var errSkip = errors.New("needs more than a minimal object")

func outcome(err error) Outcome {
	switch {
	case err == nil:
		return Works
	case errors.Is(err, errSkip):
		return NotProbed
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return Denied
	}
	return Unsupported
}

type prober struct {
	tfd     int
	btfFD   int
	innerFD int
	allowed *delegate.Set
}

func (p *prober) close() {
	if p.btfFD >= 0 {
		unix.Close(p.btfFD)
	}
	if p.innerFD > 0 {
		unix.Close(p.innerFD)
	}
}

// loadBTF loads a BTF blob with one int type, which storage maps need.
func (p *prober) loadBTF() (int, error) {
	b, err := btf.NewBuilder([]btf.Type{&btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}}, nil)
	if err != nil {
		return -1, err
	}
	blob, err := b.Marshal(nil, nil)
	if err != nil {
		return -1, err
	}
	attr := sys.BtfLoadAttr{Btf: uint64(uintptr(unsafe.Pointer(&blob[0]))), BtfSize: uint32(len(blob))}
	if p.tfd >= 0 {
		attr.BtfTokenFd = int32(p.tfd)
		attr.BtfFlags = sys.BPF_F_TOKEN_FD
	}
	fd, err := sys.BtfLoad(&attr)
	runtime.KeepAlive(blob)
	if err != nil {
		return -1, fmt.Errorf("btf_load: %w", err)
	}
	return fd, nil
}

func (p *prober) tryMap(name string, typ uint32) error {
	attr := sys.MapCreateAttr{MapType: typ, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	switch name {
	case "stack_trace":
		attr.ValueSize = 8
	case "lpm_trie":
		attr.KeySize, attr.MapFlags = 8, sys.BPF_F_NO_PREALLOC
	case "cgroup_storage_deprecated", "cgroup_storage", "percpu_cgroup_storage_deprecated", "percpu_cgroup_storage":
		attr.KeySize, attr.MaxEntries = 8, 0
	case "queue", "stack", "bloom_filter":
		attr.KeySize = 0
	case "ringbuf", "user_ringbuf":
		attr.KeySize, attr.ValueSize, attr.MaxEntries = 0, 0, uint32(os.Getpagesize())
	case "arena":
		attr.KeySize, attr.ValueSize, attr.MapFlags = 0, 0, sys.BPF_F_MMAPABLE
	case "sk_storage", "inode_storage", "task_storage", "cgrp_storage":
		if p.btfFD < 0 {
			return fmt.Errorf("%w: needs BTF, and btf_load failed", errSkip)
		}
		attr.MaxEntries, attr.MapFlags = 0, sys.BPF_F_NO_PREALLOC
		attr.BtfFd, attr.BtfKeyTypeID, attr.BtfValueTypeID = uint32(p.btfFD), 1, 1
	case "array_of_maps", "hash_of_maps":
		inner, err := p.inner()
		if err != nil {
			return fmt.Errorf("%w: needs an inner map, and none could be made", errSkip)
		}
		attr.InnerMapFd = uint32(inner)
	case "struct_ops":
		return fmt.Errorf("%w: needs a kernel struct_ops type", errSkip)
	}
	fd, err := p.mapCreate(&attr)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

func (p *prober) mapCreate(attr *sys.MapCreateAttr) (int, error) {
	if p.tfd >= 0 {
		attr.MapTokenFd = int32(p.tfd)
		attr.MapFlags |= sys.BPF_F_TOKEN_FD
	}
	return sys.MapCreate(attr)
}

func (p *prober) inner() (int, error) {
	if p.innerFD > 0 {
		return p.innerFD, nil
	}
	for _, typ := range []uint32{2, 1} { // array, hash
		fd, err := p.mapCreate(&sys.MapCreateAttr{MapType: typ, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err == nil {
			p.innerFD = fd
			return fd, nil
		}
	}
	return -1, unix.EPERM
}

// A program that returns 0: mov r0, 0; exit.
var minimalProgram = []uint64{0x00000000000000b7, 0x0000000000000095}

var license = []byte("GPL\x00")

const bpfFSleepable = 1 << 4

func (p *prober) tryProg(names *delegate.Names, name string, typ uint32) (string, error) {
	var target uint32
	switch name {
	case "ext":
		return "", fmt.Errorf("%w: an ext program replaces a function of another loaded program, named by its fd", errSkip)
	case "struct_ops":
		return "", fmt.Errorf("%w: a struct_ops program implements a member of a kernel struct_ops type", errSkip)
	case "tracing", "lsm":
		// They attach to a kernel function, named by its BTF id: the
		// kernel checks the target at load time. A type the token does
		// not allow is denied before that: no need to read the BTF.
		if !p.allows(names, delegate.Progs, name) {
			break
		}
		fn := map[string]string{"tracing": "bpf_fentry_test1", "lsm": "bpf_lsm_file_open"}[name]
		id, err := kernelFuncID(fn)
		if err != nil {
			return "", fmt.Errorf("%w: no BTF for %s to attach to: %v", errSkip, fn, err)
		}
		target = id
	}
	attach := p.attachFor(names, name)
	var attachVal uint32
	if attach != "" {
		v, ok := names.Lookup(delegate.Attachs, attach)
		if !ok {
			attach = ""
		}
		attachVal = v
	}
	attr := sys.ProgLoadAttr{
		ProgType:           typ,
		InsnCnt:            uint32(len(minimalProgram)),
		Insns:              uint64(uintptr(unsafe.Pointer(&minimalProgram[0]))),
		License:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		ExpectedAttachType: attachVal,
		AttachBtfID:        target,
	}
	if name == "syscall" {
		attr.ProgFlags |= bpfFSleepable
	}
	if p.tfd >= 0 {
		attr.ProgTokenFd = int32(p.tfd)
		attr.ProgFlags |= sys.BPF_F_TOKEN_FD
	}
	fd, err := sys.ProgLoad(&attr)
	if err != nil {
		return attach, err
	}
	unix.Close(fd)
	return attach, nil
}

// allowedSet is what the token allows, read once; nil without a token.
func (p *prober) allowedSet() *delegate.Set {
	if p.allowed == nil && p.tfd >= 0 {
		if info, err := (&Token{fd: p.tfd}).Info(); err == nil {
			p.allowed = &info.Allowed
		} else {
			p.allowed = &delegate.Set{}
		}
	}
	return p.allowed
}

// allows says whether the token allows type name of kind k; true without a
// token (root may load anything the kernel takes).
func (p *prober) allows(names *delegate.Names, k delegate.Kind, name string) bool {
	a := p.allowedSet()
	if a == nil {
		return true
	}
	v, ok := names.Lookup(k, name)
	return ok && a.Has(k, v)
}

// attachFor picks the expected attach type for a program type: the first of
// its usual ones that the token allows, else the usual default.
func (p *prober) attachFor(names *delegate.Names, prog string) string {
	cands := delegate.AttachTypesFor(prog)
	if len(cands) == 0 {
		return ""
	}
	p.allowedSet()
	if p.allowed != nil {
		for _, c := range cands {
			if v, ok := names.Lookup(delegate.Attachs, c); ok && p.allowed.Has(delegate.Attachs, v) {
				return c
			}
		}
	}
	return cands[0]
}

var (
	kernelBTFOnce sync.Once
	kernelBTF     *btf.Spec
	kernelBTFErr  error
)

// kernelFuncID is the BTF id of a function of the running kernel. The
// kernel's BTF is read once, and only when a tracing or lsm type is probed.
func kernelFuncID(name string) (uint32, error) {
	kernelBTFOnce.Do(func() { kernelBTF, kernelBTFErr = btf.LoadKernelSpec() })
	if kernelBTFErr != nil {
		return 0, kernelBTFErr
	}
	var fn *btf.Func
	if err := kernelBTF.TypeByName(name, &fn); err != nil {
		return 0, err
	}
	id, err := kernelBTF.TypeID(fn)
	return uint32(id), err
}
