//go:build !k8s

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// k8sBinary is bpfgate built with -tags k8s: the Kubernetes components
// (device plugin, DRA driver, NRI plugin) link client-go, grpc and NRI's
// wasm runtime, whose package initialisation made every bpfgate start,
// the OCI hook's on each container start included, 2.6 times as slow
// (3.0 ms to 7.8 ms) and the binary 7.6 times as large. This build leaves
// them out and hands `bpfgate k8s ...` to that binary.
const k8sBinary = "bpfgate-k8s"

const k8sBuild = "go build -tags k8s -o /usr/local/bin/bpfgate-k8s ./cmd/bpfgate"

// newK8sCmd runs `bpfgate-k8s k8s ARGS...`: the binary next to this one,
// else the one in PATH.
func newK8sCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "k8s",
		Short: "Give Kubernetes pods BPF rights (device plugin, DRA driver, NRI plugin; runs bpfgate-k8s)",
		Long: `The Kubernetes node components (bpfgate k8s device-plugin, dra, nri) are
in bpfgate-k8s, bpfgate built with -tags k8s, so that this binary, which the
OCI hook runs on every container start, does not carry client-go and grpc.
bpfgate k8s ARGS runs bpfgate-k8s k8s ARGS, from the directory of this
binary or else from PATH. The bpfgate-k8s package installs it as
/usr/bin/bpfgate-k8s; or build it with:

  ` + k8sBuild + `

See docs/kubernetes.md.`,
		DisableFlagParsing: true,
		// Shell completion of everything after k8s (subcommands, flags,
		// profile names) is bpfgate-k8s's: ask it.
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			path, err := findK8sBinary()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return completeK8s(path, args, toComplete)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := findK8sBinary()
			if err != nil {
				return err
			}
			argv := []string{path}
			// The global flags were parsed here: pass them on.
			if g.pretty {
				argv = append(argv, "--pretty")
			} else if g.json {
				argv = append(argv, "--json")
			}
			if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
				argv = append(argv, "--config", g.config)
			}
			argv = append(append(argv, "k8s"), args...)
			return syscall.Exec(path, argv, append(os.Environ(), k8sForwardedEnv+"=1"))
		},
	}
}

// k8sForwardedEnv is set for the bpfgate-k8s that bpfgate k8s runs. One
// built without -tags k8s has no Kubernetes components either, and would
// hand k8s on to the bpfgate-k8s it finds, itself: exec'ing itself for
// ever, or, completing, starting a chain of processes without end.
const k8sForwardedEnv = "BPFGATE_K8S_FORWARDED"

func findK8sBinary() (string, error) {
	if os.Getenv(k8sForwardedEnv) != "" {
		self, _ := os.Executable()
		return "", fmt.Errorf("%s was run by bpfgate k8s as %s, but has no Kubernetes components either: it was built without -tags k8s; build it with: %s", self, k8sBinary, k8sBuild)
	}
	path := ""
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), k8sBinary)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath(k8sBinary)
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return "", fmt.Errorf("the Kubernetes components are in %s, which is neither next to this binary nor in PATH: install the bpfgate-k8s package (apt install bpfgate-k8s), or build it with: %s", k8sBinary, k8sBuild)
			}
			return "", err
		}
		path = p
	}
	return checkK8sBinary(path)
}

// checkK8sBinary refuses a bpfgate-k8s that someone other than root or the
// caller could have written, or replaced in the directories it is found or
// kept in (or one its symlinks could point elsewhere): bpfgate runs as
// root, and would run it. It returns the file's path without symlinks,
// the one to run: the check holds for that path.
func checkK8sBinary(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return "", err
	}
	if !trustedOwner(&st) || st.Mode&0o022 != 0 {
		return "", fmt.Errorf("%s is owned by uid %d with mode %#o: refusing to run it (it must belong to root or you and be writable by no one else)", path, st.Uid, st.Mode&0o7777)
	}
	for _, p := range []string{abs, real} {
		for q := p; ; q = filepath.Dir(q) {
			if err := unix.Lstat(q, &st); err != nil {
				return "", err
			}
			// Others may rename entries of a directory they can write,
			// unless it is sticky (/tmp) and the entry is not theirs.
			open := st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0
			if !trustedOwner(&st) || open {
				return "", fmt.Errorf("%s: %s is owned by uid %d with mode %#o: refusing to run it (others could replace it: keep bpfgate-k8s where only root or you can write)", path, q, st.Uid, st.Mode&0o7777)
			}
			if q == "/" {
				break
			}
		}
	}
	return real, nil
}

func trustedOwner(st *unix.Stat_t) bool {
	return st.Uid == 0 || int(st.Uid) == os.Getuid()
}

// completeK8s asks bpfgate-k8s at path for the completions of
// `k8s ARGS TOCOMPLETE`, through cobra's hidden completion command, within
// a bound: a shell waits on it.
func completeK8s(path string, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	argv := append(append([]string{cobra.ShellCompRequestCmd, "k8s"}, args...), toComplete)
	cmd := exec.CommandContext(ctx, path, argv...)
	cmd.Env = append(os.Environ(), k8sForwardedEnv+"=1")
	// A child of it that kept stdout open would hold Output past the bound.
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return parseCompletions(string(out))
}

// parseCompletions reads cobra's completion output: one completion per
// line (a tab before its description), then ":DIRECTIVE".
func parseCompletions(out string) ([]string, cobra.ShellCompDirective) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	d, err := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], ":"))
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var comps []string
	for _, l := range lines[:len(lines)-1] {
		if l != "" {
			comps = append(comps, l)
		}
	}
	return comps, cobra.ShellCompDirective(d)
}
