package launch_test

// Proofs of concept of the second review of the sandbox (nx_cover_host_mounts).
// Each test asserts what docs/sandbox.md promises, so it fails while the
// hole is open.

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/testutil"
	"github.com/bpfgate/bpfgate/launch"
)

// review2Env makes TestReview2PoCWorkload act as a workload.
const (
	review2Env      = "BPFGATE_REVIEW2_POC"
	review2BPFFSEnv = "BPFGATE_REVIEW2_BPFFS"
)

// TestReview2PoCWorkload is not a test: it is the workload side of the
// second review's proofs of concept, run inside the sandbox.
func TestReview2PoCWorkload(t *testing.T) {
	kind := os.Getenv(review2Env)
	if kind == "" {
		return
	}
	enc := json.NewEncoder(os.Stdout)
	switch kind {
	case "wait-then-pin":
		// Report, wait for the accomplice (a line on stdin), try again.
		enc.Encode(map[string]string{"before": review2Pin(os.Getenv(review2BPFFSEnv), "early")})
		bufio.NewReader(os.Stdin).ReadString('\n')
		enc.Encode(map[string]string{"after": review2Pin(os.Getenv(review2BPFFSEnv), "escaped")})
	case "pin":
		enc.Encode(map[string]string{"pin": review2Pin(os.Getenv(review2BPFFSEnv), "escaped")})
	}
	os.Exit(0)
}

// review2Pin pins an XDP program, made with the workload's token, readable
// by all, at dir/name, if dir is a BPF filesystem the workload can reach.
func review2Pin(dir, name string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "statfs: " + err.Error()
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return "covered (not a bpffs)"
	}
	prog, _, err := loadProg(ebpf.XDP, ebpf.AttachXDP, 2)
	if err != nil {
		return "load: " + err.Error()
	}
	defer prog.Close()
	pin := filepath.Join(dir, name)
	if err := prog.Pin(pin); err != nil {
		return "pin: " + err.Error()
	}
	os.Chmod(pin, 0o666)
	return "ok"
}

// asNobody runs f on an OS thread with the credentials of an unprivileged
// local user (the thread is dropped afterwards).
func asNobody(t *testing.T, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		if err := testutil.DropToNobody(); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("as uid %d: %v", testutil.Nobody, err)
	}
}

// nobodyDir makes a directory in /tmp owned by the unprivileged accomplice,
// with the given mode.
func nobodyDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bpfgate-review2-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountHostBPFFS mounts a bpffs (default options: root of mode 1777) at
// dir/bpf in the host's mount namespace, as root would for a user.
func mountHostBPFFS(t *testing.T, dir string) string {
	t.Helper()
	mnt := filepath.Join(dir, "bpf")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	return mnt
}

// review2Start starts the workload kind with pipes on stdin and stdout.
func review2Start(t *testing.T, kind string, env ...string) *running {
	t.Helper()
	set := demoSet(t)
	cfg := launch.Config{Delegation: set, Caps: delegate.CapsFor(names(t), set)}
	cfg.Args = []string{"/proc/self/exe", "-test.run=^TestReview2PoCWorkload$"}
	cfg.Env = append(append(os.Environ(), review2Env+"="+kind), env...)
	return startRunning(t, kind, cfg)
}

// TestReview2CoverSkipsUnsearchableDir: nx_cover_host_mounts skips a host
// mount it cannot lstat with EACCES, on the grounds that the workload
// cannot reach it either. But the directory's owner, an unprivileged local
// user, can make it searchable once the sandbox runs: the host's files are
// shared, and no cover went on. The workload then pins its XDP program into
// that host bpffs (mode 1777 by default), where the accomplice opens it.
func TestReview2CoverSkipsUnsearchableDir(t *testing.T) {
	testutil.RequireRoot(t)
	dir := nobodyDir(t, 0o700) // e.g. a user's home, or a private temp dir
	hostFS := mountHostBPFFS(t, dir)
	r := review2Start(t, "wait-then-pin", review2BPFFSEnv+"="+hostFS)
	var before, after map[string]string
	r.read(t, &before)
	// The accomplice, the directory's owner, opens it up.
	asNobody(t, func() error { return os.Chmod(dir, 0o711) })
	r.in.Write([]byte("\n"))
	r.read(t, &after)
	r.wait(t)
	t.Logf("before chmod: %s; after: %s", before["before"], after["after"])
	// The program outlives the sandbox; any local user can open the pin.
	var opened string
	asNobody(t, func() error {
		prog, err := ebpf.LoadPinnedProgram(filepath.Join(hostFS, "escaped"), nil)
		if err == nil {
			prog.Close()
			opened = "opened"
		} else {
			opened = err.Error()
		}
		return nil
	})
	if after["after"] == "ok" {
		t.Errorf("the workload reached host bpffs %s once its owner made %s searchable, pinned its XDP program there, and after the sandbox ended uid %d: %s", hostFS, dir, testutil.Nobody, opened)
	}
}

// TestReview2CoverMissesLongMountinfoLine: nx_cover_host_mounts reads
// mountinfo with fgets into 8192 bytes. A mount point whose escaped path
// is longer is read in two pieces: the first has no " - " and is skipped,
// the second is parsed from the middle of the path, and the mount is never
// covered. A user who owns a directory above a host bpffs can move it
// (rename(2) of an ancestor of a mount point is allowed) below a chain of
// directories with names of 255 spaces (each is escaped to 4 bytes).
func TestReview2CoverMissesLongMountinfoLine(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name string
		elem string // each of 10 directory names above the mount
	}{
		{"short path (control: covered)", "d"},
		{"escaped path longer than 8192", strings.Repeat(" ", 254)},
	} {
		t.Run(tc.name, func(t *testing.T) { review2LongPath(t, tc.elem) })
	}
}

func review2LongPath(t *testing.T, elem string) {
	dir := nobodyDir(t, 0o755)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	mountHostBPFFS(t, home) // home/bpf: a user's bpffs, mounted by root
	// The accomplice: a deep chain of long names, then home moves below it.
	deep := dir
	asNobody(t, func() error {
		for i := 0; i < 10; i++ {
			deep = filepath.Join(deep, elem+string(rune('a'+i)))
			if err := os.Mkdir(deep, 0o755); err != nil {
				return err
			}
		}
		return os.Rename(home, filepath.Join(deep, "home"))
	})
	hostFS := filepath.Join(deep, "home", "bpf")
	var st unix.Statfs_t
	if err := unix.Statfs(hostFS, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("the bpffs did not move with its parent: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(hostFS, unix.MNT_DETACH) })
	r := review2Start(t, "pin", review2BPFFSEnv+"="+hostFS)
	var res map[string]string
	r.read(t, &res)
	r.wait(t)
	if res["pin"] == "ok" {
		t.Errorf("the workload reached the host bpffs at a mount point of %d bytes and pinned its XDP program there (no cover)", len(hostFS))
	} else {
		t.Logf("workload: %s", res["pin"])
	}
}

// TestReview2LongMountPointStopsEverySandbox: nx_cover_host_mounts dies
// ("stat ...: File name too long") on a covered host mount whose path is
// longer than PATH_MAX, which no lstat can take. A user who owns a
// directory above any host bpffs, cgroup, nsfs, proc or sysfs mount can
// move it below a deep enough chain of directories and so stop every
// `bpfgate run` on the host (exit 125) for as long as it stays there.
// (While this test runs, other sandboxes on the machine fail to start for
// a few milliseconds.)
func TestReview2LongMountPointStopsEverySandbox(t *testing.T) {
	testutil.RequireRoot(t)
	dir := nobodyDir(t, 0o755)
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, testutil.Nobody, testutil.Nobody); err != nil {
		t.Fatal(err)
	}
	mountHostBPFFS(t, home)
	// The chain: 17 names of 250 bytes, made with *at calls (the whole
	// path is longer than PATH_MAX).
	var deepfd, n int
	asNobody(t, func() error {
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		for i := 0; i < 17; i++ {
			name := strings.Repeat("a", 249) + string(rune('a'+i))
			if err := unix.Mkdirat(fd, name, 0o755); err != nil {
				return err
			}
			next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			unix.Close(fd)
			if err != nil {
				return err
			}
			fd = next
			n += len(name) + 1
		}
		deepfd = fd
		return nil
	})
	defer unix.Close(deepfd)
	// The accomplice moves its directory (and the mount below it) down,
	// runs nothing, and moves it back once the victim's start failed.
	var code int
	var runErr error
	asNobody(t, func() error {
		return unix.Renameat(unix.AT_FDCWD, home, deepfd, "home")
	})
	code, runErr = launch.Run(launch.Config{Args: []string{"true"}, Delegation: demoSet(t)})
	asNobody(t, func() error {
		return unix.Renameat(deepfd, "home", unix.AT_FDCWD, home)
	})
	if runErr != nil || code != 0 {
		t.Errorf("with a host bpffs %d bytes deep, owned by uid %d, bpfgate run fails: code %d, %v", len(dir)+n+len("/home/bpf"), testutil.Nobody, code, runErr)
	}
}
