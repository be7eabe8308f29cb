package sys

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BPF commands, from enum bpf_cmd. They are part of the kernel ABI and never
// change value.
const (
	BPF_MAP_CREATE         = 0
	BPF_PROG_LOAD          = 5
	BPF_OBJ_GET_INFO_BY_FD = 15
	BPF_BTF_LOAD           = 18
	BPF_TOKEN_CREATE       = 36
)

// Flags and constants of union bpf_attr.
const (
	BPF_F_NO_PREALLOC = 1 << 0
	BPF_F_RDONLY_PROG = 1 << 7
	BPF_F_MMAPABLE    = 1 << 10
	BPF_F_TOKEN_FD    = 1 << 16
)

// MapCreateAttr is the BPF_MAP_CREATE part of union bpf_attr.
type MapCreateAttr struct {
	MapType               uint32
	KeySize               uint32
	ValueSize             uint32
	MaxEntries            uint32
	MapFlags              uint32
	InnerMapFd            uint32
	NumaNode              uint32
	MapName               [16]byte
	MapIfindex            uint32
	BtfFd                 uint32
	BtfKeyTypeID          uint32
	BtfValueTypeID        uint32
	BtfVmlinuxValueTypeID uint32
	MapExtra              uint64
	ValueTypeBtfObjFd     int32
	MapTokenFd            int32
}

// ProgLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// prog_token_fd.
type ProgLoadAttr struct {
	ProgType           uint32
	InsnCnt            uint32
	Insns              uint64
	License            uint64
	LogLevel           uint32
	LogSize            uint32
	LogBuf             uint64
	KernVersion        uint32
	ProgFlags          uint32
	ProgName           [16]byte
	ProgIfindex        uint32
	ExpectedAttachType uint32
	ProgBtfFd          uint32
	FuncInfoRecSize    uint32
	FuncInfo           uint64
	FuncInfoCnt        uint32
	LineInfoRecSize    uint32
	LineInfo           uint64
	LineInfoCnt        uint32
	AttachBtfID        uint32
	AttachBtfObjFd     uint32
	CoreReloCnt        uint32
	FdArray            uint64
	CoreRelos          uint64
	CoreReloRecSize    uint32
	LogTrueSize        uint32
	ProgTokenFd        int32
	_                  uint32
}

// BtfLoadAttr is the BPF_BTF_LOAD part of union bpf_attr.
type BtfLoadAttr struct {
	Btf            uint64
	BtfLogBuf      uint64
	BtfSize        uint32
	BtfLogSize     uint32
	BtfLogLevel    uint32
	BtfLogTrueSize uint32
	BtfFlags       uint32
	BtfTokenFd     int32
}

type tokenCreateAttr struct {
	Flags   uint32
	BpffsFd uint32
}

type objInfoAttr struct {
	BpfFd   uint32
	InfoLen uint32
	Info    uint64
}

// TokenInfo is struct bpf_token_info (Linux 6.17+).
type TokenInfo struct {
	AllowedCmds    uint64
	AllowedMaps    uint64
	AllowedProgs   uint64
	AllowedAttachs uint64
}

// BPF invokes the bpf(2) system call. It returns the result, which for
// commands that create objects is a new file descriptor.
func BPF(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		if errno == unix.EAGAIN && (cmd == BPF_PROG_LOAD) {
			// The verifier can be interrupted; the kernel asks to retry.
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(r), nil
	}
}

// TokenCreate creates a BPF token from the root of a BPF filesystem. The fd
// must be a normal (not O_PATH) directory fd; the returned fd is close-on-exec.
func TokenCreate(bpffsFD int) (int, error) {
	attr := tokenCreateAttr{BpffsFd: uint32(bpffsFD)}
	fd, err := BPF(BPF_TOKEN_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(&attr)
	return fd, err
}

// ObjInfo fills info (a pointer to a kernel info struct of length size) for
// the BPF object behind fd.
func ObjInfo(fd int, info unsafe.Pointer, size uint32) error {
	attr := objInfoAttr{BpfFd: uint32(fd), InfoLen: size, Info: uint64(uintptr(info))}
	_, err := BPF(BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(&attr)
	return err
}

// TokenObjInfo reads struct bpf_token_info for a token fd.
func TokenObjInfo(fd int) (TokenInfo, error) {
	var info TokenInfo
	err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	return info, err
}

// MapCreate creates a map and returns its fd.
func MapCreate(attr *MapCreateAttr) (int, error) {
	return BPF(BPF_MAP_CREATE, unsafe.Pointer(attr), unsafe.Sizeof(*attr))
}

// ProgLoad loads a program and returns its fd.
func ProgLoad(attr *ProgLoadAttr) (int, error) {
	return BPF(BPF_PROG_LOAD, unsafe.Pointer(attr), unsafe.Sizeof(*attr))
}

// BtfLoad loads a BTF blob and returns its fd.
func BtfLoad(attr *BtfLoadAttr) (int, error) {
	return BPF(BPF_BTF_LOAD, unsafe.Pointer(attr), unsafe.Sizeof(*attr))
}
