package idpool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bpfgate/bpfgate/internal/testutil"
	"golang.org/x/sys/unix"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
   
garbage without colons
short:x
nonnumeric:x:abc:1::/:/bin/false
+nisuser::::::
alice:x:1000:1000:Alice:/home/alice:/bin/bash
bpfgate:x:998:998::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
late:x:180000:180000::/:/bin/false
`

const testGroup = `root:x:0:
shadow:x:42:
bad line
carol:x:3000:
nogroup:x:65534:
`

// useFiles points the account files at fresh files with this content ("":
// no such file) for the rest of the test.
func useFiles(t *testing.T, passwd, group, subuid, subgid string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []struct {
		v       *string
		content string
	}{{&passwdFile, passwd}, {&groupFile, group}, {&subuidFile, subuid}, {&subgidFile, subgid}} {
		old := *f.v
		t.Cleanup(func() { *f.v = old })
		*f.v = filepath.Join(dir, filepath.Base(old))
		if f.content != "" {
			if err := os.WriteFile(*f.v, []byte(f.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestCheckHostRange(t *testing.T) {
	useFiles(t, testPasswd, testGroup, "", "")
	for _, tc := range []struct {
		kind       Kind
		base, size uint32
		want       error
		mention    string // the error names this
	}{
		{UID, 0, 1, ErrSystemID, "uid 0 "},
		{UID, 0, 65536, ErrSystemID, `user "root"`},
		{UID, 42, 1, ErrSystemID, "below 1000"},
		{GID, 42, 1, ErrSystemID, `group "shadow"`},
		{UID, 999, 1, ErrSystemID, "uid 999 "},
		{UID, 500, 1000, ErrSystemID, "uid 500 "},
		{UID, 1000, 1, ErrSystemID, `user "alice"`},
		{UID, 900, 200, ErrSystemID, "uid 900 "},
		{UID, 1001, 1000, nil, ""},
		{GID, 1000, 1, nil, ""},
		{UID, 100000, 65536, nil, ""},
		{UID, 100000, 80000, nil, ""},
		{UID, 100000, 80001, ErrSystemID, `user "late"`},
		{GID, 2000, 1001, ErrSystemID, `group "carol"`},
		{UID, 60000, 10000, ErrSystemID, `user "nobody"`},
		{UID, 0x70000000, 65536, nil, ""},
		{GID, 0x70000000, 0x0FFE0000, nil, ""},
		{UID, 0x70000000, 0, ErrInvalidRange, "0 ids"},
		{UID, 0xFFFF0000, 0x10000, ErrInvalidRange, "run past"},
	} {
		err := CheckHostRange(tc.kind, tc.base, tc.size)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%v %d+%d: %v", tc.kind, tc.base, tc.size, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%v %d+%d: %v, want %v naming %q", tc.kind, tc.base, tc.size, err, tc.want, tc.mention)
		}
	}
}

func TestCheckHostRangeFiles(t *testing.T) {
	t.Run("missing passwd", func(t *testing.T) {
		useFiles(t, "", testGroup, "", "")
		if err := CheckHostRange(UID, 0x70000000, 65536); err == nil {
			t.Error("no error without a passwd file")
		}
	})
	t.Run("too large", func(t *testing.T) {
		useFiles(t, testPasswd, testGroup, "", "")
		f, err := os.OpenFile(groupFile, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(MaxAccountFileSize + 1); err != nil {
			t.Fatal(err)
		}
		f.Close()
		err = CheckHostRange(GID, 0x70000000, 65536)
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("oversized group file: %v", err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		useFiles(t, testPasswd, testGroup, "", "")
		os.Remove(passwdFile)
		if err := unix.Mkfifo(passwdFile, 0o600); err != nil {
			testutil.Skip(t, "mkfifo: "+err.Error())
		}
		if err := CheckHostRange(UID, 0x70000000, 65536); err == nil {
			t.Error("a FIFO as passwd file was accepted")
		}
	})
}

func TestParseSubIDs(t *testing.T) {
	const content = `# comment

bpfgate:100000:65536
bpfgate:300000:1000
998:500000:65536
containers:165536:65536
bpfgate:abc:65536
bpfgate:1:0
bpfgate:4294901760:65536
bpfgate:700000
bpfgatex:800000:65536
  bpfgate:900000:10  
`
	for _, tc := range []struct {
		name string
		uid  int64
		want []Range
	}{
		{"bpfgate", 998, []Range{{100000, 65536}, {300000, 1000}, {500000, 65536}, {900000, 10}}},
		{"bpfgate", -1, []Range{{100000, 65536}, {300000, 1000}, {900000, 10}}},
		{"containers", 1000, []Range{{165536, 65536}}},
		{"nobody", -1, nil},
	} {
		if got := parseSubIDs([]byte(content), tc.name, tc.uid); !slices.Equal(got, tc.want) {
			t.Errorf("%s (uid %d): %v, want %v", tc.name, tc.uid, got, tc.want)
		}
	}
}

func TestDefault(t *testing.T) {
	def := Pool{Start: DefaultStart, Size: DefaultEnd - DefaultStart, Block: DefaultBlock, Dir: DefaultDir}
	for _, tc := range []struct {
		name           string
		subuid, subgid string
		want           Pool
		err            error
	}{
		{"no files", "", "", def, nil},
		{"no entry", "alice:100000:65536\n", "alice:100000:65536\n", def, nil},
		{"same", "bpfgate:200000:131072\n", "bpfgate:200000:131072\n", Pool{200000, 131072, DefaultBlock, DefaultDir}, nil},
		{"by uid", "998:200000:65536\n", "bpfgate:200000:65536\n", Pool{200000, 65536, DefaultBlock, DefaultDir}, nil},
		{"intersection", "bpfgate:200000:200000\n", "bpfgate:250000:300000\n", Pool{250000, 150000, DefaultBlock, DefaultDir}, nil},
		{"largest common", "bpfgate:200000:65536\nbpfgate:1000000:1000000\n", "bpfgate:200000:65536\nbpfgate:1500000:1000000\n", Pool{1500000, 500000, DefaultBlock, DefaultDir}, nil},
		{"disjoint", "bpfgate:200000:65536\n", "bpfgate:300000:65536\n", Pool{}, ErrInvalidPool},
		{"only subuid", "bpfgate:200000:65536\n", "", Pool{}, ErrInvalidPool},
		{"only subgid", "#\n", "bpfgate:200000:65536\n", Pool{}, ErrInvalidPool},
		{"smaller than a block", "bpfgate:200000:1000\n", "bpfgate:200000:1000\n", Pool{}, ErrInvalidPool},
		{"holds root", "bpfgate:0:65536\n", "bpfgate:0:65536\n", Pool{}, ErrInvalidPool},
		{"holds a user", "bpfgate:150000:65536\n", "bpfgate:150000:65536\n", Pool{}, ErrSystemID},
		{"holds a group", "bpfgate:2000:65536\n", "bpfgate:2000:65536\n", Pool{}, ErrSystemID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useFiles(t, testPasswd, testGroup, tc.subuid, tc.subgid)
			got, err := Default()
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Default() = %+v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Default() = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
