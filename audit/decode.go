package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
)

// The bpf(2) commands the tracer looks into (enum bpf_cmd, a stable UAPI).
const (
	cmdMapCreate   = 0
	cmdProgLoad    = 5
	cmdBTFLoad     = 18
	cmdTokenCreate = 36
)

// Offsets in union bpf_attr (UAPI, stable) of what is decoded.
const (
	offMapType    = 0
	offMapName    = 28
	offProgType   = 0
	offProgName   = 48
	offProgAttach = 68
	nameLen       = 16
)

// event.flags, as audit.bpf.c sets them.
const (
	evToken  = 1
	evObject = 2
	evCompat = 4 // an i386 call
	evX32    = 8 // an x32 call
)

// abiOf names the ABI the record's flags give.
func abiOf(flags uint32) string {
	switch {
	case flags&evCompat != 0:
		return "ia32"
	case flags&evX32 != 0:
		return "x32"
	}
	return ""
}

// Outcomes of a call.
const (
	OutcomeOK     = "ok"     // the call succeeded
	OutcomeDenied = "denied" // refused for lack of rights (EPERM)
	OutcomeFailed = "failed" // failed otherwise (bad arguments, verifier, ...)
)

// Event is one recorded bpf(2) call. The JSON keys are what
// `bpfgate audit --json` prints, one event per line (docs/audit.md).
type Event struct {
	Time     time.Time `json:"time"`
	Pid      uint32    `json:"pid"` // thread group id, as ps shows it
	Tid      uint32    `json:"tid"`
	Comm     string    `json:"comm"`
	UID      uint32    `json:"uid"` // host uid
	UserNS   uint32    `json:"userns"`
	CgroupID uint64    `json:"cgroup_id"` // cgroup v2 id
	// ABI is the system call ABI of a call that did not come through the
	// x86-64 one: "ia32" (int 0x80, or a 32-bit program) or "x32". The
	// same bpf(2), through another entry point; empty for x86-64.
	ABI string `json:"abi,omitempty"`

	// Cmd is the command's kernel name (map_create, prog_load, ...).
	Cmd string `json:"cmd"`
	// MapType, ProgType and AttachType name the types of a map_create or
	// prog_load: those of the object the kernel made when the call
	// succeeded, else those the call asked for (AttachType is the program's
	// expected attach type, which a token's delegate_attachs must cover).
	MapType    string `json:"map_type,omitempty"`
	ProgType   string `json:"prog_type,omitempty"`
	AttachType string `json:"attach_type,omitempty"`
	Name       string `json:"name,omitempty"`
	// MapID or ProgID is the kernel's id of the object the call made.
	MapID  uint32 `json:"map_id,omitempty"`
	ProgID uint32 `json:"prog_id,omitempty"`

	// Token is the token the call passed, as the kernel holds it.
	Token *Token `json:"token,omitempty"`

	// Ret is what bpf(2) returned: an fd or 0, or -errno.
	Ret     int64  `json:"ret"`
	Errno   string `json:"errno,omitempty"`
	Outcome string `json:"outcome"`
	// Reason says why a call failed: what the token's delegation lacks
	// ("map type ringbuf not delegated"), "capability missing" when it
	// covers the call, "no token" for a creation without one, or the
	// error.
	Reason string `json:"reason,omitempty"`

	// The raw values, for callers that want numbers.
	CmdValue        uint32 `json:"-"`
	TypeValue       uint32 `json:"-"` // map or program type
	AttachTypeValue uint32 `json:"-"`
	TokenFD         int32  `json:"-"` // -1 if the call passed none
}

// Token is a BPF token as the kernel holds it.
type Token struct {
	// FD is the token's fd in the caller.
	FD     int32  `json:"fd"`
	UserNS uint32 `json:"userns"`
	// BPFFSDev is the device (major:minor) of the bpffs it was made from.
	BPFFSDev string `json:"bpffs_dev"`
	// The delegation, as the kernel shows it in the mount options, split
	// (shared between events: do not modify).
	AllowedCmds    []string     `json:"allowed_cmds"`
	AllowedMaps    []string     `json:"allowed_maps"`
	AllowedProgs   []string     `json:"allowed_progs"`
	AllowedAttachs []string     `json:"allowed_attachs"`
	Delegation     delegate.Set `json:"-"`
}

// decoder turns the tracer's records into Events.
type decoder struct {
	names *delegate.Names
	// bootWall is the wall clock time of CLOCK_MONOTONIC's zero.
	bootWall time.Time
	// lists caches the names of the delegations seen: a workload uses
	// one token for many calls. Events share the slices.
	lists map[delegate.Set]*[4][]string
	// short caches the names of values below 256, per kind.
	short [4][256]string
}

func newDecoder(names *delegate.Names) *decoder {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return &decoder{names: names, bootWall: now, lists: map[delegate.Set]*[4][]string{}}
	}
	return &decoder{names: names, bootWall: now.Add(-time.Duration(ts.Nano())), lists: map[delegate.Set]*[4][]string{}}
}

// name returns the kernel's short name of v, or v in decimal.
func (d *decoder) name(k delegate.Kind, v uint32) string {
	if v < 256 && d.short[k][v] != "" {
		return d.short[k][v]
	}
	s := d.names.ShortName(k, v)
	if s == "" {
		s = strconv.FormatUint(uint64(v), 10)
	}
	if v < 256 {
		d.short[k][v] = s
	}
	return s
}

func (d *decoder) list(k delegate.Kind, m uint64) []string {
	if v := d.names.FormatMask(k, m); v != "" {
		return strings.Split(v, ":")
	}
	return []string{}
}

// dev prints a kernel dev_t (12 bits major, 20 bits minor) as major:minor.
func dev(v uint32) string {
	return fmt.Sprintf("%d:%d", v>>20, v&(1<<20-1))
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// decode turns a record into an Event. It does not fail: a short attr
// leaves fields empty.
func (d *decoder) decode(r *tracerEvent) *Event {
	attr := r.Attr[:min(int(r.AttrLen), len(r.Attr))]
	u32 := func(off int) (uint32, bool) {
		if off+4 > len(attr) {
			return 0, false
		}
		return binary.LittleEndian.Uint32(attr[off:]), true
	}
	comm := make([]byte, len(r.Comm))
	for i, c := range r.Comm {
		comm[i] = byte(c)
	}
	e := &Event{
		Time:     d.bootWall.Add(time.Duration(r.Ktime)),
		Pid:      r.Tgid,
		Tid:      r.Tid,
		Comm:     cstring(comm),
		UID:      r.Uid,
		UserNS:   r.Userns,
		CgroupID: r.CgroupId,
		Cmd:      d.name(delegate.Cmds, r.Cmd),
		CmdValue: r.Cmd,
		Ret:      r.Ret,
		TokenFD:  r.TokenFd,
		ABI:      abiOf(r.Flags),
	}
	object := r.Flags&evObject != 0
	switch r.Cmd {
	case cmdMapCreate:
		t, ok := u32(offMapType)
		if object {
			t, e.MapID, ok = r.ObjType, r.ObjId, true
		}
		if ok {
			e.TypeValue, e.MapType = t, d.name(delegate.Maps, t)
		}
		if len(attr) >= offMapName+nameLen {
			e.Name = cstring(attr[offMapName : offMapName+nameLen])
		}
	case cmdProgLoad:
		t, ok := u32(offProgType)
		a, aok := u32(offProgAttach)
		if object {
			t, a, e.ProgID, ok, aok = r.ObjType, r.ObjAttachType, r.ObjId, true, true
		}
		if ok {
			e.TypeValue, e.ProgType = t, d.name(delegate.Progs, t)
		}
		if aok {
			e.AttachTypeValue, e.AttachType = a, d.name(delegate.Attachs, a)
		}
		if len(attr) >= offProgName+nameLen {
			e.Name = cstring(attr[offProgName : offProgName+nameLen])
		}
	}
	if r.Flags&evToken != 0 {
		set := delegate.Set{Cmds: r.TokenAllowed[0], Maps: r.TokenAllowed[1], Progs: r.TokenAllowed[2], Attachs: r.TokenAllowed[3]}
		l := d.lists[set]
		if l == nil {
			if len(d.lists) >= 1024 {
				clear(d.lists)
			}
			l = &[4][]string{}
			for _, k := range delegate.Kinds {
				l[k] = d.list(k, set.Mask(k))
			}
			d.lists[set] = l
		}
		e.Token = &Token{
			FD: r.TokenFd, UserNS: r.TokenUserns, BPFFSDev: dev(r.TokenDev),
			AllowedCmds: l[delegate.Cmds], AllowedMaps: l[delegate.Maps],
			AllowedProgs: l[delegate.Progs], AllowedAttachs: l[delegate.Attachs],
			Delegation: set,
		}
	}
	e.Outcome, e.Errno, e.Reason = d.verdict(e)
	return e
}

// verdict says how a call ended and why.
func (d *decoder) verdict(e *Event) (outcome, errno, reason string) {
	if e.Ret >= 0 {
		return OutcomeOK, "", ""
	}
	en := syscall.Errno(-e.Ret)
	errno = unix.ErrnoName(en)
	if errno == "" {
		errno = strconv.FormatInt(-e.Ret, 10)
	}
	outcome = OutcomeFailed
	if en == unix.EPERM {
		outcome = OutcomeDenied
	}
	// An attempt through an ABI the kernel was built or booted without
	// (x32, mostly): worth recording, and nothing to explain with masks.
	if e.ABI != "" && en == unix.ENOSYS {
		return outcome, errno, fmt.Sprintf("the kernel takes no %s system calls", e.ABI)
	}
	// A token the call passed: the kernel ignores it (and falls back to the
	// caller's capabilities in the host, which a workload lacks) when its
	// delegation does not cover the command and types.
	if e.Token != nil {
		set := e.Token.Delegation
		switch {
		case !set.Has(delegate.Cmds, e.CmdValue):
			reason = fmt.Sprintf("command %s not delegated", e.Cmd)
		case e.CmdValue == cmdMapCreate && e.MapType != "" && !set.Has(delegate.Maps, e.TypeValue):
			reason = fmt.Sprintf("map type %s not delegated", e.MapType)
		case e.CmdValue == cmdProgLoad && e.ProgType != "" && !set.Has(delegate.Progs, e.TypeValue):
			reason = fmt.Sprintf("program type %s not delegated", e.ProgType)
		case e.CmdValue == cmdProgLoad && e.AttachType != "" && !set.Has(delegate.Attachs, e.AttachTypeValue):
			reason = fmt.Sprintf("attach type %s not delegated", e.AttachType)
		}
		if reason != "" {
			if en == unix.EPERM {
				return OutcomeDenied, errno, reason
			}
			// Refused for another reason before the delegation was checked.
			return outcome, errno, en.Error() + " (" + reason + ")"
		}
		if en == unix.EPERM {
			return outcome, errno, "capability missing"
		}
		return outcome, errno, en.Error()
	}
	if e.TokenFD >= 0 {
		return outcome, errno, fmt.Sprintf("%s (fd %d is not a BPF token)", en.Error(), e.TokenFD)
	}
	if en == unix.EPERM {
		switch e.CmdValue {
		case cmdMapCreate, cmdProgLoad, cmdBTFLoad:
			return outcome, errno, "no token"
		case cmdTokenCreate:
			return outcome, errno, "capability missing"
		}
		return outcome, errno, fmt.Sprintf("capability missing (%s takes no token)", e.Cmd)
	}
	return outcome, errno, en.Error()
}
