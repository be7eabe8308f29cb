package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"github.com/bpfgate/bpfgate/cdi"
	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/internal/atomicfile"
	"github.com/bpfgate/bpfgate/ocihook"
	"github.com/bpfgate/bpfgate/profile"
)

// policy is what workloads and containers may receive: exactly the
// profiles of the config file when it exists, the built-in ones only when
// there is no file at the default location.
func (g *globals) policy(names *delegate.Names) (*profile.Policy, error) {
	optional := g.config == defaultConfig() && os.Getenv(configEnv) == ""
	return profile.LoadPolicy(g.config, names, optional)
}

// hookFlags are how a generated spec runs bpfgate.
type hookFlags struct {
	path, log, audit string
}

func (h *hookFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&h.path, "hook-path", "", "bpfgate binary the runtime runs (default: this one)")
	cmd.Flags().StringVar(&h.log, "log", "", "make the hook also log to this file")
	cmd.Flags().StringVar(&h.audit, "audit", "", "make the hook record each container's bpf() calls in DIR/CONTAINER-ID.jsonl (DIR root's, mode 0700)")
}

func (h *hookFlags) hook(g *globals) (cdi.Hook, error) {
	path := h.path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return cdi.Hook{}, err
		}
		path = hookBinary(exe)
	}
	hook := cdi.Hook{Path: path}
	if h.log != "" {
		hook.Args = append(hook.Args, "--log", h.log)
	}
	if h.audit != "" {
		abs, err := filepath.Abs(h.audit)
		if err != nil {
			return cdi.Hook{}, err
		}
		hook.Args = append(hook.Args, "--audit", abs)
	}
	if g.config != defaultConfig() || os.Getenv(configEnv) != "" {
		abs, err := filepath.Abs(g.config)
		if err != nil {
			return cdi.Hook{}, err
		}
		hook.Args = append(hook.Args, "--config", abs)
	}
	return hook, nil
}

// hookBinary is the binary a runtime is to run as the hook, by default:
// this one, but for bpfgate-k8s (the -tags k8s build, whose Kubernetes
// components start 2.6 times as slowly, on every container start) the
// lean bpfgate next to it, as the packages install them, if it is there
// and only root can have written it.
func hookBinary(exe string) string {
	if filepath.Base(exe) != "bpfgate-k8s" {
		return exe
	}
	lean := filepath.Join(filepath.Dir(exe), "bpfgate")
	var st unix.Stat_t
	if err := unix.Stat(lean, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		st.Mode&0o111 == 0 || st.Uid != 0 || st.Mode&0o022 != 0 {
		return exe
	}
	return lean
}

func newCDICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cdi",
		Short: "BPF rights as CDI devices (podman, containerd, CRI-O)",
	}
	var (
		output string
		hf     hookFlags
	)
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Write a CDI spec with one bpfgate.dev/bpf device per allowed profile",
		Long: `Write a CDI spec with a device bpfgate.dev/bpf=PROFILE for each profile the
host allows: those of the config file when it exists (none is an error), the
built-in ones only when there is no file. Each device runs 'bpfgate oci-hook' at the createRuntime stage, which
mounts the profile's delegated bpffs in the container. The container needs a
user namespace of its own and CAP_BPF (plus what the profile's types need).`,
		Example: `  bpfgate cdi generate
  bpfgate oci-hook seccomp
  podman run --userns=auto:size=65536 --cap-add bpf \
    --security-opt seccomp=/etc/bpfgate/seccomp.json --device bpfgate.dev/bpf=demo IMAGE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := delegate.KernelNames()
			if err != nil {
				return err
			}
			pol, err := g.policy(names)
			if err != nil {
				return err
			}
			if len(pol.Profiles) == 0 {
				return fmt.Errorf("%w: %s defines none, so there is no device to generate", profile.ErrNoProfiles, pol.Path)
			}
			hook, err := hf.hook(g)
			if err != nil {
				return err
			}
			spec, err := cdi.Spec(pol.Profiles, hook)
			if err != nil {
				return err
			}
			if output == "-" && g.jsonOut() {
				// CDI reads JSON specs as well as YAML ones.
				return g.printJSON(spec)
			}
			if output == "-" {
				data, err := yaml.Marshal(spec)
				if err != nil {
					return err
				}
				_, err = os.Stdout.Write(data)
				return err
			}
			if err := cdi.Write(spec, output); err != nil {
				return err
			}
			if g.jsonOut() {
				devs := make([]string, 0, len(spec.Devices))
				for _, d := range spec.Devices {
					devs = append(devs, cdi.Kind+"="+d.Name)
				}
				return g.printJSON(cdiWrittenJSON{Path: output, Devices: devs})
			}
			fmt.Fprintf(os.Stderr, "bpfgate: wrote %s with %d devices (%s=...)\n", output, len(spec.Devices), cdi.Kind)
			return nil
		},
	}
	gen.Flags().StringVarP(&output, "output", "o", cdi.DefaultOutput, "where to write the spec (- for stdout)")
	hf.register(gen)

	var dirs []string
	list := &cobra.Command{
		Use:   "list",
		Short: "Show the bpfgate devices a container runtime would see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			devs, errs, err := cdi.List(dirs...)
			if err != nil {
				return err
			}
			if g.jsonOut() {
				for file, es := range errs {
					for _, e := range es {
						fmt.Fprintf(os.Stderr, "bpfgate: warning: %s: %v\n", file, e)
					}
				}
				if devs == nil {
					devs = []cdi.Device{}
				}
				return g.printJSON(devs)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "DEVICE\tSTAGE\tHOOK\tSPEC")
			for _, d := range devs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", d.Name, d.Stage, strings.Join(append([]string{d.HookPath}, d.HookArgs[1:]...), " "), d.Spec)
			}
			w.Flush()
			for file, es := range errs {
				for _, e := range es {
					fmt.Fprintf(os.Stderr, "bpfgate: warning: %s: %v\n", file, e)
				}
			}
			return nil
		},
	}
	list.Flags().StringSliceVar(&dirs, "spec-dir", nil, "CDI spec directories (default /etc/cdi,/var/run/cdi)")
	cmd.AddCommand(gen, list)
	return cmd
}

// cdiWrittenJSON is what `cdi generate -o FILE` reports under --json.
type cdiWrittenJSON struct {
	Path    string   `json:"path"`
	Devices []string `json:"devices"` // qualified names: bpfgate.dev/bpf=PROFILE
}

// hooksDirDefault is where podman and CRI-O look for OCI hooks.d entries;
// hooksDirPrecreate is the precreate entry, next to it (podman's default
// hooks_dir).
const (
	hooksDirDefault   = "/usr/share/containers/oci/hooks.d/bpfgate.json"
	hooksDirPrecreate = "/usr/share/containers/oci/hooks.d/bpfgate-precreate.json"
)

// hooksDirEntry is the hooks.d 1.0.0 schema of containers/common.
type hooksDirEntry struct {
	Version string     `json:"version"`
	Hook    specs.Hook `json:"hook"`
	When    struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"when"`
	Stages []string `json:"stages"`
}

func newOCIHookCmd(g *globals) *cobra.Command {
	var (
		profile, logPath, auditDir string
		timeout                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "oci-hook",
		Short: "The OCI runtime hook: mount a profile's delegated bpffs in a container",
		Long: `Run by a container runtime at the createRuntime stage with the OCI state on
standard input: mount the delegated bpffs of the profile (from --profile, or
the container's io.bpfgate.profile annotation) inside the container. The
profile must be one the host allows; the container must have a user
namespace of its own and the capabilities the token needs.

With --audit DIR, or the profile's audit directory, a recorder started before
the container's process records its bpf() calls in DIR/CONTAINER-ID.jsonl
(as bpfgate audit --json) until the container ends; a container that cannot
be recorded is refused. See docs/audit.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runHook(g, profile, auditDir, timeout)
			logHook(logPath, res, err)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&profile, "profile", "", "the profile (default: the "+ocihook.ProfileAnnotation+" annotation)")
	fl.StringVar(&logPath, "log", "", "also append a JSON line per container to this file")
	fl.DurationVar(&timeout, "timeout", 5*time.Second, "bound on each step of the mount")
	fl.StringVar(&auditDir, "audit", "", "record the container's bpf() calls in DIR/CONTAINER-ID.jsonl (overrides the profile's audit directory; DIR must be root's and writable by no one else)")

	var (
		output, stage string
		hf            hookFlags
	)
	hooksd := &cobra.Command{
		Use:   "hooks-d",
		Short: "Write an OCI hooks.d entry that runs the hook for annotated containers",
		Long: `Write a hooks.d entry (podman --hooks-dir, CRI-O hooks_dir) that runs bpfgate
for every container annotated with ` + ocihook.ProfileAnnotation + `=PROFILE.

--stage createRuntime (the default) runs 'bpfgate oci-hook', which mounts the
profile's bpffs; the container needs a user namespace, CAP_BPF and a seccomp
profile that lets bpf(2) through (podman: --cap-add bpf --security-opt
seccomp=...). For runtimes without CDI.

--stage precreate (podman only) runs 'bpfgate oci-hook precreate', which adds
the capabilities, the bpf(2) seccomp rule and the createRuntime hook to the
container's config itself: podman then needs no flag but a user namespace.
Tools that read hooks.d but do not run precreate hooks (CRI-O, buildah) may
reject the entry: keep it in a directory only podman reads if they share one.`,
		Example: `  bpfgate oci-hook hooks-d --stage precreate
  podman run --userns=auto --annotation io.bpfgate.profile=demo IMAGE

  bpfgate oci-hook hooks-d
  podman run --annotation io.bpfgate.profile=demo --cap-add bpf --userns=auto:size=65536 IMAGE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hook, err := hf.hook(g)
			if err != nil {
				return err
			}
			timeout := cdi.HookTimeout
			e := hooksDirEntry{Version: "1.0.0", Stages: []string{stage},
				Hook: specs.Hook{Path: hook.Path, Args: hook.HookArgs(""), Env: hook.Env, Timeout: &timeout}}
			switch stage {
			case ocihook.Stage:
			case ocihook.PrecreateStage:
				e.Hook.Args = append([]string{"bpfgate", "oci-hook", "precreate"}, hook.Args...)
				if !cmd.Flags().Changed("output") {
					output = hooksDirPrecreate
				}
			default:
				return fmt.Errorf("--stage %q: want %s or %s", stage, ocihook.Stage, ocihook.PrecreateStage)
			}
			e.When.Annotations = map[string]string{"^" + strings.ReplaceAll(ocihook.ProfileAnnotation, ".", `\.`) + "$": ".+"}
			data, err := json.MarshalIndent(e, "", "  ")
			if err != nil {
				return err
			}
			if err := writeFile(output, append(data, '\n')); err != nil || output == "-" {
				return err
			}
			return g.printNull()
		},
	}
	hooksd.Flags().StringVarP(&output, "output", "o", hooksDirDefault, "where to write the entry (- for stdout; default "+hooksDirPrecreate+" with --stage precreate)")
	hooksd.Flags().StringVar(&stage, "stage", ocihook.Stage, "the stage: "+ocihook.Stage+" (mount the bpffs) or "+ocihook.PrecreateStage+" (podman: also add the capabilities and the seccomp rule)")
	hf.register(hooksd)
	var preLog, preAudit string
	precreate := &cobra.Command{
		Use:   "precreate",
		Short: "The podman precreate hook: give an annotated container what its BPF token needs",
		Long: `Run by podman (a hooks.d entry at the precreate stage) with the container's
OCI config on standard input; prints the config the runtime is to use. For a
container annotated ` + ocihook.ProfileAnnotation + `=PROFILE whose profile the host allows
and that has a user namespace of its own, it adds the profile's capabilities
(as --cap-add would), a rule allowing bpf(2) in front of its seccomp filter,
and the createRuntime hook ('bpfgate oci-hook') that mounts the profile's
bpffs, unless one is there. It never adds a user namespace. A container it
cannot help gets only the createRuntime hook, which refuses it with a
message podman shows (podman does not show what a precreate hook writes).
Any other container's config comes out byte for byte as it came in.`,
		Example: `  bpfgate oci-hook hooks-d --stage precreate
  podman run --userns=auto --annotation io.bpfgate.profile=demo IMAGE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hook, err := (&hookFlags{log: preLog, audit: preAudit}).hook(g)
			if err != nil {
				return err
			}
			timeout := cdi.HookTimeout
			out, res, err := ocihook.Precreate(os.Stdin, ocihook.PrecreateOptions{Policy: g.policy,
				Hook: &specs.Hook{Path: hook.Path, Args: hook.HookArgs(""), Env: hook.Env, Timeout: &timeout}})
			logPrecreate(preLog, res, err)
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(out)
			return err
		},
	}
	precreate.Flags().StringVar(&preAudit, "audit", "", "make the createRuntime hook record each container's bpf() calls in DIR (oci-hook --audit)")
	precreate.Flags().StringVar(&preLog, "log", "", "also append a JSON line per annotated container to this file (and make the createRuntime hook log there)")
	var base, seccompOut string
	seccomp := &cobra.Command{
		Use:   "seccomp",
		Short: "Write a seccomp profile that lets containers with CAP_BPF call bpf(2)",
		Long: `Write the runtime's default seccomp profile with one change: bpf(2) is allowed
to containers with CAP_BPF, not only to those with CAP_SYS_ADMIN. Older
containers-common profiles (Debian 12's podman 4.3) fail every bpf(2) call of
a container without CAP_SYS_ADMIN with EPERM, before the kernel could look
at the token. Use it with --security-opt seccomp=FILE, or make it the default
with seccomp_profile in containers.conf.`,
		Example: `  bpfgate oci-hook seccomp
  podman run --security-opt seccomp=/etc/bpfgate/seccomp.json --cap-add bpf ...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := ocihook.ReadSeccompBase(base)
			if err != nil {
				return fmt.Errorf("base profile: %w (give --base)", err)
			}
			out, err := ocihook.SeccompAllowBPF(data)
			if err != nil {
				return fmt.Errorf("%s: %w", base, err)
			}
			if err := writeFile(seccompOut, append(out, '\n')); err != nil || seccompOut == "-" {
				return err
			}
			return g.printNull()
		},
	}
	seccomp.Flags().StringVar(&base, "base", ocihook.DefaultSeccompBase, "the profile to start from")
	seccomp.Flags().StringVarP(&seccompOut, "output", "o", "/etc/bpfgate/seccomp.json", "where to write it (- for stdout)")
	cmd.AddCommand(hooksd, seccomp, precreate, newRecorderCmd())
	return cmd
}

// writeFile writes data to path atomically, or to stdout for "-". A path
// that is a symlink is refused.
func writeFile(path string, data []byte) error {
	if path == "-" {
		_, err := os.Stdout.Write(data)
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

func runHook(g *globals, profileFlag, auditDir string, timeout time.Duration) (*ocihook.Result, error) {
	return ocihook.Run(os.Stdin, ocihook.Options{Profile: profileFlag, Policy: g.policy, Timeout: timeout,
		Audit: hookAudit(auditDir, timeout)})
}

// logHook reports on stderr, which runtimes show with a failed hook, and
// appends a JSON line to the log file when one is asked for.
func logHook(path string, res *ocihook.Result, err error) {
	if err == nil && res != nil {
		fmt.Fprintf(os.Stderr, "bpfgate: container %s: profile %s mounted at %s (%s) in %s\n",
			ocihook.ShortID(res.Container), res.Profile, res.Path, res.Options, res.Took.Round(time.Microsecond))
		if res.Audit != "" {
			fmt.Fprintf(os.Stderr, "bpfgate: container %s: bpf() calls recorded in %s\n", ocihook.ShortID(res.Container), res.Audit)
		}
	}
	if path == "" {
		return
	}
	entry := struct {
		Time time.Time `json:"time"`
		*ocihook.Result
		Error string `json:"error,omitempty"`
	}{Time: time.Now().UTC(), Result: res}
	if entry.Result == nil {
		entry.Result = &ocihook.Result{}
	}
	if err != nil {
		entry.Error = err.Error()
	}
	data, jerr := json.Marshal(entry)
	if jerr != nil {
		return
	}
	f, ferr := atomicfile.OpenLog(path)
	if ferr != nil {
		fmt.Fprintf(os.Stderr, "bpfgate: %v\n", ferr)
		return
	}
	defer f.Close()
	_, _ = f.Write(append(data, '\n'))
}

// logPrecreate says on stderr what the precreate hook did (podman discards
// it; a person running the hook by hand sees it) and appends a JSON line to
// the log file when one is asked for. Containers without the annotation are
// not logged.
func logPrecreate(path string, res *ocihook.PrecreateResult, err error) {
	if res != nil && res.Profile == "" {
		return
	}
	entry := struct {
		Time  time.Time `json:"time"`
		Stage string    `json:"stage"`
		*ocihook.PrecreateResult
		Refused string `json:"refused,omitempty"`
		Error   string `json:"error,omitempty"`
	}{Time: time.Now().UTC(), Stage: ocihook.PrecreateStage, PrecreateResult: res}
	switch {
	case err != nil:
		entry.Error = err.Error()
	case res.Refused != nil:
		entry.Refused = res.Refused.Error()
		fmt.Fprintf(os.Stderr, "bpfgate: profile %s: no rights added: %v (the createRuntime hook refuses the container)\n", res.Profile, res.Refused)
	default:
		fmt.Fprintf(os.Stderr, "bpfgate: profile %s: added caps %v, seccomp rule %v, createRuntime hook %v\n", res.Profile, res.Caps, res.Seccomp, res.Hook)
	}
	if path == "" {
		return
	}
	if entry.PrecreateResult == nil {
		entry.PrecreateResult = &ocihook.PrecreateResult{}
	}
	data, jerr := json.Marshal(entry)
	if jerr != nil {
		return
	}
	f, ferr := atomicfile.OpenLog(path)
	if ferr != nil {
		fmt.Fprintf(os.Stderr, "bpfgate: %v\n", ferr)
		return
	}
	defer f.Close()
	_, _ = f.Write(append(data, '\n'))
}
