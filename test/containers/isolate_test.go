package containers

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// The tests run in a mount namespace of their own in which /etc, /run and
// /var/lib are overlays whose upper layers live in the run's directory:
// what podman, runc and the hook write there (the CDI specs, /etc/subuid,
// podman's blob cache in /var/lib/containers/cache, which podman 4.3 does
// not move with the storage) never reaches the host. podman 4.3 reads CDI
// specs only from /etc/cdi and /var/run/cdi (it has no --cdi-spec-dir and
// no cdi_spec_dirs), so those two are the run's own empty directory.
//
// TestMain, outside, takes the lock, re-runs the test binary in the
// namespace, checks that the host's podman store and CDI directories did
// not change and removes the run's directory.

// dirEnv names the run's directory for the test binary re-run inside.
const dirEnv = "BPFGATE_E2E_DIR"

// shadowed are the host directories the tests see through an overlay.
var shadowed = []string{"/etc", "/run", "/var/lib"}

// watched are where podman and CDI keep system-wide state: a run must
// leave them as it found them.
var watched = []string{"/etc/cdi", "/var/run/cdi", "/etc/subuid", "/etc/subgid",
	"/var/lib/containers", "/run/containers", "/run/libpod", "/run/runc", "/run/crun", "/dev/shm/libpod_lock"}

// outside runs the tests in a mount namespace of their own and returns the
// exit code.
func outside() int {
	lock, err := os.OpenFile(runLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer lock.Close()
	if syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		fmt.Println("waiting for another run of these tests to finish (" + runLock + ")")
		syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	}
	before, err := fingerprint(watched)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	dir, err := os.MkdirTemp("", "bpfgate-e2e-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	// Only here, where the overlays' lower layers are not mounted below it.
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Println(err)
		return 1
	}

	// Pdeathsig follows the thread that started the child.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), dirEnv+"="+dir)
	// Go makes the new namespace's mounts private before the exec.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	code := 0
	if err := cmd.Run(); err != nil {
		code = 1
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		} else {
			fmt.Println(err)
		}
	}

	after, err := fingerprint(watched)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if changed := diff(before, after); len(changed) > 0 {
		fmt.Println("the container tests changed system-wide state:\n\t" + strings.Join(changed, "\n\t"))
		return 1
	}
	return code
}

// isolate makes the namespace the tests run in.
func isolate(dir string) error {
	for _, d := range shadowed {
		if err := shadow(d, filepath.Join(dir, "shadow", strings.ReplaceAll(strings.Trim(d, "/"), "/", "-"))); err != nil {
			return err
		}
	}
	cdi := filepath.Join(dir, "cdi")
	if err := os.Mkdir(cdi, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"/etc/cdi", "/run/cdi"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(cdi, d, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", cdi, d, err)
		}
	}
	return nil
}

// shadow mounts an overlay on dir whose upper layer is in work, and puts
// back on top of it the mounts below dir, which the overlay would hide.
func shadow(dir, work string) error {
	lower, upper, wd := filepath.Join(work, "lower"), filepath.Join(work, "upper"), filepath.Join(work, "work")
	for _, d := range []string{lower, upper, wd} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	subs, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return err
	}
	var tops []string
	slices.SortFunc(subs, func(a, b *mountinfo.Info) int { return strings.Compare(a.Mountpoint, b.Mountpoint) })
	for _, m := range subs {
		if m.Mountpoint == dir || len(tops) > 0 && (m.Mountpoint == tops[len(tops)-1] || strings.HasPrefix(m.Mountpoint, tops[len(tops)-1]+"/")) {
			continue
		}
		tops = append(tops, m.Mountpoint)
	}
	// The host's dir with all its mounts, to take them from.
	if err := unix.Mount(dir, lower, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", dir, lower, err)
	}
	opts := "lowerdir=" + dir + ",upperdir=" + upper + ",workdir=" + wd
	if err := unix.Mount("overlay", dir, "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay on %s (%s): %w", dir, opts, err)
	}
	for _, t := range tops {
		src := filepath.Join(lower, strings.TrimPrefix(t, dir))
		if err := unix.Mount(src, t, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s back on %s: %w", src, t, err)
		}
	}
	return nil
}

// fingerprint records the type, size and times of each path and of what
// is below it, three levels deep: deep enough for podman's image, layer and
// container lists and the libpod database, and quick.
func fingerprint(paths []string) (map[string]string, error) {
	fp := map[string]string{}
	for _, root := range paths {
		if _, err := os.Lstat(root); os.IsNotExist(err) {
			fp[root] = "absent"
			continue
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil // gone while we looked
				}
				return err
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			fp[p] = fmt.Sprintf("%v %d %v", info.Mode(), info.Size(), info.ModTime().UnixNano())
			if d.IsDir() && p != root && strings.Count(strings.TrimPrefix(p, root), "/") >= 3 {
				return filepath.SkipDir
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return fp, nil
}

// diff lists what changed between two fingerprints.
func diff(before, after map[string]string) []string {
	var out []string
	for p, b := range before {
		if a, ok := after[p]; !ok {
			out = append(out, p+": removed")
		} else if a != b {
			out = append(out, fmt.Sprintf("%s: %s, was %s", p, a, b))
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			out = append(out, p+": created")
		}
	}
	slices.Sort(out)
	return out
}
