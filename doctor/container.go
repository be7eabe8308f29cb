package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/bpfgate/bpfgate/bpffs"
	"github.com/bpfgate/bpfgate/internal/boundedio"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/ocihook"
)

// ErrNoContainer means no container engine or runtime knows the container.
var ErrNoContainer = errors.New("no container engine or runtime knows the container")

// Container is a running container: its init process and its OCI config.
type Container struct {
	ID     string
	Pid    int
	Config string // config.json
	// Via is what found it: podman, runc or crun.
	Via string
}

// ContainerOptions say where to look for a container.
type ContainerOptions struct {
	// RuntimeRoot is runc's or crun's --root (their default if empty).
	RuntimeRoot string
	// Timeout bounds each command run to find it (20 s if 0).
	Timeout time.Duration
}

// maxToolOutput bounds what is read of podman inspect or runc state.
const maxToolOutput = 4 << 20

// runTool runs a command bounded in time and output.
func runTool(ctx context.Context, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	var out, errb limitedBuffer
	out.limit, errb.limit = maxToolOutput, 4096
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s %s: no answer within %v", name, strings.Join(args, " "), timeout)
	}
	if out.over {
		return nil, fmt.Errorf("%s %s: more than %d bytes of output", name, strings.Join(args, " "), maxToolOutput)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bpffs.Sanitize(strings.TrimSpace(errb.String())))
	}
	return out.Bytes(), nil
}

// limitedBuffer keeps the first limit bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	limit int
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.over = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// FindContainer finds a running container by id or name: with podman
// inspect where podman is installed, else with runc state or crun state.
func FindContainer(ctx context.Context, id string, opts ContainerOptions) (*Container, error) {
	if id == "" || strings.HasPrefix(id, "-") {
		return nil, fmt.Errorf("container %q: want a container id or name", id)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	var errs []error
	if _, err := exec.LookPath("podman"); err == nil {
		c, err := podmanFind(ctx, id, opts.Timeout)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	for _, rt := range []string{"runc", "crun"} {
		if _, err := exec.LookPath(rt); err != nil {
			continue
		}
		args := []string{"state", id}
		if opts.RuntimeRoot != "" {
			args = append([]string{"--root", opts.RuntimeRoot}, args...)
		}
		out, err := runTool(ctx, opts.Timeout, rt, args...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st struct {
			ID     string `json:"id"`
			Pid    int    `json:"pid"`
			Status string `json:"status"`
			Bundle string `json:"bundle"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			errs = append(errs, fmt.Errorf("%s state %s: %w", rt, id, err))
			continue
		}
		if st.Pid <= 0 || st.Bundle == "" {
			errs = append(errs, fmt.Errorf("%s state %s: status %q, no process", rt, id, st.Status))
			continue
		}
		return &Container{ID: st.ID, Pid: st.Pid, Config: filepath.Join(st.Bundle, "config.json"), Via: rt}, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("container %s: %w (neither podman, runc nor crun is installed)", id, ErrNoContainer)
	}
	return nil, fmt.Errorf("container %s: %w: %w", id, ErrNoContainer, errors.Join(errs...))
}

func podmanFind(ctx context.Context, id string, timeout time.Duration) (*Container, error) {
	out, err := runTool(ctx, timeout, "podman", "container", "inspect", "--", id)
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID    string `json:"Id"`
		State struct {
			Pid     int    `json:"Pid"`
			Status  string `json:"Status"`
			Running bool   `json:"Running"`
		} `json:"State"`
		OCIConfigPath string `json:"OCIConfigPath"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("podman container inspect %s: %w", id, err)
	}
	if len(list) != 1 {
		return nil, fmt.Errorf("podman container inspect %s: %d containers", id, len(list))
	}
	c := list[0]
	if !c.State.Running || c.State.Pid <= 0 {
		return nil, fmt.Errorf("podman: container %s is %s, not running: doctor looks at a running container's init process", id, c.State.Status)
	}
	if c.OCIConfigPath == "" {
		return nil, fmt.Errorf("podman container inspect %s: no OCIConfigPath", id)
	}
	return &Container{ID: c.ID, Pid: c.State.Pid, Config: c.OCIConfigPath, Via: "podman"}, nil
}

// LoadSpec reads a container's config.json.
func LoadSpec(path string) (*specs.Spec, error) {
	data, err := boundedio.ReadFileFlags(path, ocihook.MaxSpecSize, boundedio.NoFollow)
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &spec, nil
}

// CheckContainer runs every check on a running container's init process,
// and evaluates the seccomp section of its config.json.
func CheckContainer(ctx context.Context, id string, copts ContainerOptions, opts Options) (*Report, error) {
	c, err := FindContainer(ctx, id, copts)
	if err != nil {
		return nil, err
	}
	spec, err := LoadSpec(c.Config)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ocihook.ShortID(c.ID), err)
	}
	opts.Spec = spec
	if err := opts.fill(); err != nil {
		return nil, err
	}
	p, err := launch.OpenProcess(c.Pid)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ocihook.ShortID(c.ID), err)
	}
	defer p.Close()
	// The container may have exited, and its pid gone to another process,
	// between the lookup and the pidfd: now that the process is held, its
	// pid cannot change hands, so ask again.
	again, err := FindContainer(ctx, c.ID, copts)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ocihook.ShortID(c.ID), err)
	}
	if again.Pid != c.Pid || again.Config != c.Config {
		return nil, fmt.Errorf("container %s: %w: its init process was pid %d, and is now pid %d (it restarted, or exited): try again",
			ocihook.ShortID(c.ID), ErrContainerChanged, c.Pid, again.Pid)
	}
	r, err := checkHeld(p, &opts)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", ocihook.ShortID(c.ID), err)
	}
	r.Container = c.ID
	return r, nil
}

// ErrContainerChanged means the container's init process changed while
// doctor took hold of it.
var ErrContainerChanged = errors.New("the container changed while doctor looked at it")
