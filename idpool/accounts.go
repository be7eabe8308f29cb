package idpool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kind says whether ids are user or group ids.
type Kind int

const (
	UID Kind = iota
	GID
)

func (k Kind) String() string {
	switch k {
	case UID:
		return "uid"
	case GID:
		return "gid"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// account is what an entry in the account database is called for this kind.
func (k Kind) account() string {
	if k == GID {
		return "group"
	}
	return "user"
}

// FirstRegularID is the lowest id that is not a system id. Debian, Fedora and
// systemd reserve 0-999 for system users and groups.
const FirstRegularID = 1000

// MaxAccountFileSize caps how much of /etc/passwd, /etc/group, /etc/subuid
// and /etc/subgid is read: far above any real file, small enough that a
// broken or hostile file cannot exhaust memory.
const MaxAccountFileSize = 16 << 20

var (
	// ErrSystemID means a host id range contains an id below 1000 or an id
	// of an account of the host.
	ErrSystemID = errors.New("host id reserved for the system or used by an account")
	// ErrInvalidRange means a range is empty or runs past the largest id.
	ErrInvalidRange = errors.New("invalid id range")
)

// Where the account files are; tests point these elsewhere.
var (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
	subuidFile = "/etc/subuid"
	subgidFile = "/etc/subgid"
)

// maxID is the largest usable id: (uid_t)-1 means "unchanged" to the kernel.
const maxID = 1<<32 - 2

// checkRange says whether base..base+size-1 is a non-empty range of usable ids.
func checkRange(base, size uint32) error {
	if size == 0 {
		return fmt.Errorf("%w: %d ids starting at %d", ErrInvalidRange, size, base)
	}
	if uint64(base)+uint64(size)-1 > maxID {
		return fmt.Errorf("%w: %d ids starting at %d run past %d, the largest id", ErrInvalidRange, size, base, uint64(maxID))
	}
	return nil
}

// CheckHostRange refuses a range of size host ids starting at base that
// contains an id below 1000 or an id of an account in /etc/passwd (UID) or
// /etc/group (GID). The error wraps ErrSystemID and names the lowest such id
// and its account; an empty or overflowing range wraps ErrInvalidRange.
func CheckHostRange(kind Kind, base, size uint32) error {
	if kind != UID && kind != GID {
		return fmt.Errorf("check host ids: unknown kind %v", kind)
	}
	if err := checkRange(base, size); err != nil {
		return fmt.Errorf("host %s range: %w", kind, err)
	}
	accounts, err := readAccounts(kind)
	if err != nil {
		return err
	}
	end := uint64(base) + uint64(size) // exclusive
	var (
		found bool
		low   uint32
		name  string
	)
	for _, a := range accounts {
		in := uint64(a.id) >= uint64(base) && uint64(a.id) < end
		if in && (!found || a.id < low) {
			found, low, name = true, a.id, a.name
		}
	}
	if base < FirstRegularID && (!found || low != base) {
		// base itself is the lowest offending id, with or without an account.
		found, low, name = true, base, ""
	}
	if !found {
		return nil
	}
	what := fmt.Sprintf("is below %d, reserved for system %ss", FirstRegularID, kind.account())
	if name != "" {
		what = fmt.Sprintf("is %s %q's", kind.account(), name)
		if low < FirstRegularID {
			what += fmt.Sprintf(" (below %d, reserved for system %ss)", FirstRegularID, kind.account())
		}
	}
	return fmt.Errorf("%w: host %s %d in %d-%d %s; map a range of unused ids above %d",
		ErrSystemID, kind, low, base, end-1, what, FirstRegularID-1)
}

type account struct {
	name string
	id   uint32
}

// readAccounts reads the names and ids of the passwd or group file.
func readAccounts(kind Kind) ([]account, error) {
	path := passwdFile
	if kind == GID {
		path = groupFile
	}
	data, err := readCapped(path)
	if err != nil {
		return nil, err
	}
	return parseAccounts(data), nil
}

// parseAccounts takes name and id (the first and third field) from each
// line of a passwd or group file. It skips comments, blank lines, NIS
// "+"/"-" entries and lines it cannot read: the check fails closed on ids it
// can read and never stops on a bad line.
func parseAccounts(data []byte) []account {
	var out []account
	for line := range bytes.Lines(data) {
		fields := strings.SplitN(strings.TrimRight(string(line), "\r\n"), ":", 4)
		if len(fields) < 3 || fields[0] == "" || strings.HasPrefix(fields[0], "#") ||
			strings.HasPrefix(fields[0], "+") || strings.HasPrefix(fields[0], "-") {
			continue
		}
		id, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			continue
		}
		out = append(out, account{name: fields[0], id: uint32(id)})
	}
	return out
}

// Range is a range of host ids: Size ids starting at Start.
type Range struct {
	Start, Size uint32
}

func (r Range) end() uint64 { return uint64(r.Start) + uint64(r.Size) }

// intersect is the part of both ranges, empty if they do not overlap.
func (r Range) intersect(o Range) Range {
	start := max(uint64(r.Start), uint64(o.Start))
	end := min(r.end(), o.end())
	if end <= start {
		return Range{}
	}
	return Range{Start: uint32(start), Size: uint32(end - start)}
}

// parseSubIDs returns the ranges /etc/subuid or /etc/subgid content gives
// to the user called name or to the numeric uid (uid < 0: none). Lines are
// owner:start:count; comments, blank lines and malformed lines are skipped.
func parseSubIDs(data []byte, name string, uid int64) []Range {
	var out []Range
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, len(data)+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) != 3 {
			continue
		}
		owner := fields[0]
		if owner != name {
			n, err := strconv.ParseUint(owner, 10, 32)
			if err != nil || uid < 0 || int64(n) != uid {
				continue
			}
		}
		start, err1 := strconv.ParseUint(fields[1], 10, 32)
		count, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count-1 > maxID {
			continue
		}
		out = append(out, Range{Start: uint32(start), Size: uint32(count)})
	}
	return out
}

// largestCommon is the largest overlap between a range of a and one of b
// (the lowest on a tie), empty if none overlap.
func largestCommon(a, b []Range) Range {
	var best Range
	for _, x := range a {
		for _, y := range b {
			r := x.intersect(y)
			if r.Size > best.Size || (r.Size == best.Size && r.Size > 0 && r.Start < best.Start) {
				best = r
			}
		}
	}
	return best
}

// readCapped reads a regular file of at most MaxAccountFileSize bytes.
// O_NONBLOCK keeps a FIFO planted in its place from blocking the open.
func readCapped(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%v)", path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxAccountFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxAccountFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes (MaxAccountFileSize): refusing to read it", path, MaxAccountFileSize)
	}
	return data, nil
}
