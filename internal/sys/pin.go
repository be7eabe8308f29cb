package sys

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BPF_OBJ_PIN and the flag that makes its path relative to a directory fd
// (Linux 6.5+). Pinning relative to an fd opened with openat2's RESOLVE_BENEATH
// is what keeps a pin inside the bpffs the caller checked: a path string could
// be swapped for a symlink between the check and the pin.
const (
	BPF_OBJ_PIN    = 6
	BPF_F_PATH_FD  = 1 << 14
	objPinAttrSize = 20
)

type objPinAttr struct {
	Pathname  uint64
	BpfFd     uint32
	FileFlags uint32
	PathFd    int32
}

// ObjPinAt pins the object behind fd as name inside the directory dirfd.
func ObjPinAt(dirfd int, name string, fd int) error {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	attr := objPinAttr{
		Pathname:  uint64(uintptr(unsafe.Pointer(p))),
		BpfFd:     uint32(fd),
		FileFlags: BPF_F_PATH_FD,
		PathFd:    int32(dirfd),
	}
	_, err = BPF(BPF_OBJ_PIN, unsafe.Pointer(&attr), objPinAttrSize)
	runtime.KeepAlive(p)
	return err
}

// MapInfo is the head of struct bpf_map_info: the fields every kernel since
// 4.15 fills. The kernel copies only as much as the caller asks for.
type MapInfo struct {
	Type       uint32
	ID         uint32
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32
	Flags      uint32
	Name       [16]byte
}

// ProgInfo is the head of struct bpf_prog_info, up to the name. Its pointer
// fields stay zero so the kernel copies out no arrays.
type ProgInfo struct {
	Type           uint32
	ID             uint32
	Tag            [8]byte
	JitedProgLen   uint32
	XlatedProgLen  uint32
	JitedProgInsns uint64
	XlatedInsns    uint64
	LoadTime       uint64
	CreatedByUID   uint32
	NrMapIDs       uint32
	MapIDs         uint64
	Name           [16]byte
}

// MapObjInfo reads the head of bpf_map_info for a map fd.
func MapObjInfo(fd int) (MapInfo, error) {
	var info MapInfo
	err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	return info, err
}

// ProgObjInfo reads the head of bpf_prog_info for a program fd.
func ProgObjInfo(fd int) (ProgInfo, error) {
	var info ProgInfo
	err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	return info, err
}

// iterLinkInfo is struct bpf_link_info as the kernel fills it for
// BPF_LINK_TYPE_ITER, which cilium/ebpf does not decode.
type iterLinkInfo struct {
	Type          uint32
	ID            uint32
	ProgID        uint32
	_             uint32
	TargetName    uint64
	TargetNameLen uint32
	_             uint32
	_             [6]uint64
}

// IterLinkTarget returns the target of an iterator link, e.g. "bpf_map".
func IterLinkTarget(fd int) (string, error) {
	var buf [64]byte
	info := iterLinkInfo{TargetName: uint64(uintptr(unsafe.Pointer(&buf[0]))), TargetNameLen: uint32(len(buf))}
	err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	runtime.KeepAlive(&buf)
	if err != nil {
		return "", err
	}
	return unix.ByteSliceToString(buf[:]), nil
}
