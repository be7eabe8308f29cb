package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/profile"
	"github.com/bpfgate/bpfgate/record"
)

// profileOptions are the flags of `bpfgate profile` beyond the delegation.
type profileOptions struct {
	minimize  bool
	format    string
	check     string
	name      string
	timeout   time.Duration
	netMode   string
	path      string
	allowUnix bool
	verbose   bool
}

func newProfileCmd(g *globals) *cobra.Command {
	var (
		df   delegationFlags
		opts profileOptions
	)
	cmd := &cobra.Command{
		Use:   "profile [flags] -- COMMAND [ARG...]",
		Short: "Record the least delegation a command needs, verified by running it again",
		Long: `Run COMMAND in the sandbox of 'bpfgate run' with a broad delegation (every
command, map, program and attach type the kernel knows, with CAP_BPF,
CAP_NET_ADMIN and CAP_PERFMON; or --profile/--cmds/... to start smaller),
record every bpf() call that creates an object, loads BTF, attaches or
creates a token (seccomp user notification; the calls are not changed), and
print the delegation the calls that passed a token used. It is then
verified: COMMAND runs again with exactly that delegation and must succeed.
With --minimize, each command, map type, program type, attach type and
capability is dropped in turn and kept out when COMMAND still succeeds
without it (libraries probe for features they do not need).

A run succeeds when COMMAND exits 0 and, with --check, when a host shell
command that gets COMMAND's standard output on its standard input exits 0
too (many tools exit 0 when they fail to load). COMMAND
runs several times, with /dev/null as standard input; its output is shown
with --verbose. What no delegation can grant (object loads without a token,
which need privilege in the initial user namespace) is listed as not judged.

--format flags prints flags for 'bpfgate run' (notes go to stderr), yaml a
profile for the config file, json an object (see docs/json.md).
See docs/profiler.md.`,
		Example: `  # Flags for bpfgate run
  bpfgate profile --minimize -- ./loader prog.bpf.o

  # A config.yaml profile; success means the tool printed a count
  bpfgate profile --minimize --format yaml --name counter --check 'grep -q count' -- ./counter`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if g.jsonOut() {
				if cmd.Flags().Changed("format") && opts.format != "json" {
					return fmt.Errorf("--json and --format %s disagree: give one of them", opts.format)
				}
				opts.format = "json"
			}
			switch opts.format {
			case "flags", "yaml", "json":
			default:
				return fmt.Errorf("--format %q: want flags, yaml or json", opts.format)
			}
			if opts.timeout <= 0 {
				return fmt.Errorf("--timeout %v: want a positive duration, e.g. 2m", opts.timeout)
			}
			if cmd.Flags().Changed("check") && strings.TrimSpace(opts.check) == "" {
				return errors.New("--check: give a shell command, e.g. 'grep -q ok'")
			}
			if !validProfileName(opts.name) {
				return fmt.Errorf("--name %q: want letters, digits, '-' and '_'", opts.name)
			}
			names, r, err := df.load(g)
			if err != nil {
				return err
			}
			broad, caps := r.set, delegate.CapsFor(names, r.set)
			if df.profile == "" && df.cmds == "" && df.maps == "" && df.progs == "" && df.attachs == "" {
				for _, k := range delegate.Kinds {
					broad.SetMask(k, names.Enum(k).Any())
				}
				caps = delegate.CapsFor(names, broad)
			} else if broad.IsZero() {
				return errors.New("nothing to delegate: the starting delegation is empty")
			}
			if r.profile != nil {
				grant, err := r.profile.Grant(names)
				if err != nil {
					return err
				}
				caps = mergeCaps(caps, grant.Caps)
			}
			run := &profileRunner{args: args, opts: opts}
			switch opts.netMode {
			case "none", "":
			case "host":
				run.net = launch.NetHost
			default:
				return fmt.Errorf("--net %q: want none or host", opts.netMode)
			}
			res, err := profileCommand(names, run, broad, caps)
			if err != nil {
				return err
			}
			if err := printProfile(g, names, opts, args, res); err != nil {
				return err
			}
			if !res.Verified {
				return exitError{code: 1}
			}
			return nil
		},
	}
	df.register(cmd, true)
	fl := cmd.Flags()
	fl.BoolVar(&opts.minimize, "minimize", false, "drop each item in turn and keep only what a rerun needs")
	fl.StringVar(&opts.format, "format", "flags", "output: flags (for bpfgate run), yaml (a config.yaml profile) or json")
	fl.StringVar(&opts.check, "check", "", "host shell command that gets the workload's stdout on stdin and must exit 0 for a run to count as success")
	fl.StringVar(&opts.name, "name", "recorded", "the profile's name in --format yaml")
	fl.DurationVar(&opts.timeout, "timeout", 2*time.Minute, "how long one run may take before it is killed and counts as a failure")
	fl.StringVar(&opts.netMode, "net", "none", "network of the runs: none or host, as for bpfgate run")
	fl.StringVar(&opts.path, "bpffs-path", delegate.DefaultPath, "where the delegated bpffs is mounted inside")
	fl.BoolVar(&opts.allowUnix, "allow-unix-sockets", false, "let the workload make unix sockets, as for bpfgate run")
	fl.BoolVarP(&opts.verbose, "verbose", "v", false, "pass each run's output through to stderr")
	fl.SetInterspersed(false)
	return cmd
}

func validProfileName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func mergeCaps(a, b []delegate.Cap) []delegate.Cap {
	out := slices.Clone(a)
	for _, c := range b {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// profileResult is what `bpfgate profile` found.
type profileResult struct {
	Set  delegate.Set
	Caps []delegate.Cap
	// Recorded is the raw record's delegation, before --minimize, inside
	// the starting delegation; Outside is what the calls asked for beyond it.
	Recorded     delegate.Set
	Outside      delegate.Set
	RecordedCaps []delegate.Cap
	Record       *record.Record
	Verified     bool
	VerifyError  string
	Minimized    bool
	Runs         int
	NoToken      bool
}

// profileCommand records, verifies and, if asked, minimizes.
func profileCommand(names *delegate.Names, run *profileRunner, broad delegate.Set, caps []delegate.Cap) (*profileResult, error) {
	first, err := run.run(broad, caps, true)
	if err != nil {
		return nil, err
	}
	if !first.ok {
		return nil, fmt.Errorf("%s fails even with the broad delegation (%s), so there is nothing to record%s",
			run.args[0], first.why, stderrTail(first.stderr))
	}
	res := &profileResult{Record: first.rec}
	// What the workload asked for beyond the starting delegation was
	// refused by the kernel, and is never granted to it in a later run.
	res.Recorded, res.Outside = split(names.Canonical(first.rec.Delegation()), broad)
	res.RecordedCaps = delegate.CapsFor(names, res.Recorded)
	res.NoToken = res.Recorded.IsZero()
	res.Set, res.Caps = res.Recorded, res.RecordedCaps
	verify, err := run.run(res.Set, res.Caps, false)
	if err != nil {
		return nil, err
	}
	if !verify.ok {
		res.VerifyError = fmt.Sprintf("%s fails with the recorded delegation (%s)%s", run.args[0], verify.why, stderrTail(verify.stderr))
		res.Runs = run.runs
		return res, nil
	}
	res.Verified = true
	if run.opts.minimize && !res.NoToken {
		res.Minimized = true
		for _, k := range delegate.Kinds {
			for _, v := range bitsByName(names, k, res.Set.Mask(k)) {
				try := res.Set
				try.SetMask(k, try.Mask(k)&^(1<<v))
				if ok, err := run.succeeds(try, res.Caps); err != nil {
					return nil, err
				} else if ok {
					res.Set = try
				}
			}
		}
		// CAP_BPF stays: no token works without it.
		for _, c := range sortedCaps(res.Caps) {
			if c == unix.CAP_BPF {
				continue
			}
			try := slices.DeleteFunc(slices.Clone(res.Caps), func(x delegate.Cap) bool { return x == c })
			if ok, err := run.succeeds(res.Set, try); err != nil {
				return nil, err
			} else if ok {
				res.Caps = try
			}
		}
	}
	res.Runs = run.runs
	return res, nil
}

// split returns what of s lies inside start, and what outside.
func split(s, start delegate.Set) (in, out delegate.Set) {
	for _, k := range delegate.Kinds {
		in.SetMask(k, s.Mask(k)&start.Mask(k))
		out.SetMask(k, s.Mask(k)&^start.Mask(k))
	}
	return in, out
}

// outsideNote names what the workload asked for with a token that the
// starting delegation does not hold.
func outsideNote(names *delegate.Names, s delegate.Set) string {
	if s.IsZero() {
		return ""
	}
	var parts []string
	for _, k := range delegate.Kinds {
		if l := sortedNames(names, k, s.Mask(k)); len(l) > 0 {
			parts = append(parts, k.String()+" "+strings.Join(l, ", "))
		}
	}
	return "asked for outside the starting delegation, so refused by the kernel and never granted: " + strings.Join(parts, "; ") +
		" (start from a broader one to learn whether the command needs it)"
}

// bitsByName lists the set bits of mask m, in the order of their names.
func bitsByName(names *delegate.Names, k delegate.Kind, m uint64) []uint32 {
	var out []uint32
	for v := uint32(0); v < 64; v++ {
		if m&(1<<v) != 0 {
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(a, b uint32) int {
		return strings.Compare(valueName(names, k, a), valueName(names, k, b))
	})
	return out
}

// valueName is the kernel's name of value v, or its bit as a mask (a bare
// decimal would be read as a mask by the kernel, and so by bpfgate).
func valueName(names *delegate.Names, k delegate.Kind, v uint32) string {
	if s := names.ShortName(k, v); s != "" {
		return s
	}
	return fmt.Sprintf("%#x", uint64(1)<<v)
}

// sortedNames lists the names of mask m in alphabetical order.
func sortedNames(names *delegate.Names, k delegate.Kind, m uint64) []string {
	out := []string{}
	for _, v := range bitsByName(names, k, m) {
		out = append(out, valueName(names, k, v))
	}
	return out
}

func sortedCaps(caps []delegate.Cap) []delegate.Cap {
	out := slices.Clone(caps)
	slices.SortFunc(out, func(a, b delegate.Cap) int { return strings.Compare(a.String(), b.String()) })
	return out
}

func capNames(caps []delegate.Cap) []string {
	out := []string{}
	for _, c := range sortedCaps(caps) {
		out = append(out, c.String())
	}
	return out
}

func stderrTail(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return "; its stderr ends:\n" + plainText(s)
}

// plainText makes text the workload wrote fit for a terminal and for a
// YAML comment: lines stay lines, but every other control character
// (terminal escapes, a lone CR) and the line breaks YAML knows besides LF
// (NEL, LINE and PARAGRAPH SEPARATOR), which would end the comment and let
// the workload write the profile, become '?', as does invalid UTF-8.
func plainText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// profileRunner runs the command in the sandbox, once per call.
type profileRunner struct {
	args []string
	opts profileOptions
	net  launch.NetMode
	runs int
}

type runOutcome struct {
	ok     bool
	why    string // why it failed
	stderr string
	rec    *record.Record
}

// Bounds of what a run's output may take in memory.
const (
	maxRunStdout = 16 << 20
	maxRunStderr = 64 << 10
)

func (p *profileRunner) succeeds(set delegate.Set, caps []delegate.Cap) (bool, error) {
	o, err := p.run(set, caps, false)
	return o.ok, err
}

// run runs the command once with set and caps, recorded if asked. An error
// means bpfgate could not run it at all (not found, not executable, no
// sandbox), which no delegation changes.
func (p *profileRunner) run(set delegate.Set, caps []delegate.Cap, rec bool) (runOutcome, error) {
	p.runs++
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return runOutcome{}, err
	}
	defer devnull.Close()
	stdout := &boundedBuffer{max: maxRunStdout}
	stderr := &tailBuffer{max: maxRunStderr}
	var outW, errW io.Writer = stdout, stderr
	if p.opts.verbose {
		outW, errW = io.MultiWriter(stdout, os.Stderr), io.MultiWriter(stderr, os.Stderr)
		fmt.Fprintf(os.Stderr, "bpfgate: profile run %d: %s\n", p.runs, describeRun(set, caps, rec))
	}
	if len(caps) == 0 {
		caps = []delegate.Cap{unix.CAP_BPF}
	}
	w, err := launch.Start(launch.Config{Args: p.args, Delegation: set, Caps: caps, Path: p.opts.path,
		Net: p.net, AllowUnixSockets: p.opts.allowUnix, RecordBPF: rec,
		Stdin: devnull, Stdout: outW, Stderr: errW})
	var ee *launch.ExecError
	if errors.As(err, &ee) {
		// Not found or not executable: exit as a shell would.
		return runOutcome{}, exitError{code: ee.Code, err: fmt.Errorf("run %s: %w", p.args[0], err)}
	}
	if err != nil {
		return runOutcome{}, exitError{code: 125, err: fmt.Errorf("run %s: %w", p.args[0], err)}
	}
	var served chan *record.Record
	var serveErr error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if l := w.BPFListener(); l != nil {
		served = make(chan *record.Record, 1)
		go func() {
			defer l.Close()
			r, err := record.Serve(ctx, l)
			serveErr = err
			served <- r
		}()
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(p.opts.timeout, func() {
		timedOut.Store(true)
		// The supervisor's death takes the sandbox with it.
		_ = w.Signal(syscall.SIGKILL)
	})
	code, werr := w.Wait()
	timer.Stop()
	cancel()
	out := runOutcome{stderr: stderr.String()}
	if served != nil {
		out.rec = <-served
		if serveErr != nil {
			return out, fmt.Errorf("record %s: %w", p.args[0], serveErr)
		}
	}
	switch {
	case werr != nil:
		return out, fmt.Errorf("run %s: %w", p.args[0], werr)
	case timedOut.Load():
		out.why = fmt.Sprintf("killed after --timeout %v", p.opts.timeout)
	case code != 0:
		out.why = fmt.Sprintf("exit status %d", code)
	case stdout.truncated && p.opts.check != "":
		out.why = fmt.Sprintf("it wrote more than %d bytes, which --check cannot judge", maxRunStdout)
	case p.opts.check != "":
		out.why = p.runCheck(stdout.Bytes())
	}
	out.ok = out.why == ""
	return out, nil
}

// runCheck runs --check on the host with the workload's stdout as input;
// "" means it passed.
func (p *profileRunner) runCheck(stdout []byte) string {
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "/bin/sh", "-c", p.opts.check)
	c.Stdin = bytes.NewReader(stdout)
	if p.opts.verbose {
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
	}
	// The check's processes are a group of their own, all ended when it
	// times out; and a process it leaves behind holding its standard input
	// (which the workload may have filled) holds bpfgate at most a second
	// once the check has exited.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return unix.Kill(-c.Process.Pid, unix.SIGKILL) }
	c.WaitDelay = time.Second
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil:
		// ErrWaitDelay: it exited 0, leaving its input unread.
		return ""
	case ctx.Err() != nil:
		return "--check timed out"
	case errors.As(err, &ee):
		return fmt.Sprintf("--check failed (%v)", ee.ProcessState)
	}
	return fmt.Sprintf("--check: %v", err)
}

func describeRun(set delegate.Set, caps []delegate.Cap, rec bool) string {
	names, err := delegate.KernelNames()
	s := fmt.Sprintf("%+v", set)
	if err == nil {
		s = names.FormatOptions(set)
	}
	if rec {
		s += " (recorded)"
	}
	return s + " caps " + strings.Join(capNames(caps), ",")
}

// boundedBuffer keeps the first max bytes written and drops the rest.
type boundedBuffer struct {
	bytes.Buffer
	max       int
	truncated bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.truncated = true
		b.Buffer.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }

// profileRunJSON is `bpfgate profile --format json`.
type profileRunJSON struct {
	Command []string `json:"command"`
	allowedJSON
	Options     string            `json:"options"`
	Caps        []string          `json:"caps"`
	Recorded    recordedJSON      `json:"recorded"`
	Verified    bool              `json:"verified"`
	VerifyError string            `json:"verify_error,omitempty"`
	Minimized   bool              `json:"minimized"`
	Runs        int               `json:"runs"`
	NotJudged   []string          `json:"not_judged"`
	Attachments []string          `json:"attachments"`
	Calls       []callJSON        `json:"calls"`
	Counts      map[string]uint64 `json:"counts"`
}

type recordedJSON struct {
	allowedJSON
	Caps []string `json:"caps"`
}

type callJSON struct {
	Call  string `json:"call"`
	Count uint64 `json:"count"`
}

func sortedAllowed(names *delegate.Names, s delegate.Set) allowedJSON {
	return allowedJSON{Cmds: sortedNames(names, delegate.Cmds, s.Cmds), Maps: sortedNames(names, delegate.Maps, s.Maps),
		Progs: sortedNames(names, delegate.Progs, s.Progs), Attachs: sortedNames(names, delegate.Attachs, s.Attachs)}
}

// notes are what the output says besides the delegation.
func profileNotes(names *delegate.Names, res *profileResult) []string {
	var notes []string
	rec := res.Record
	notes = append(notes, fmt.Sprintf("recorded %d bpf() call(s); %d rerun(s)", rec.Notified, res.Runs-1))
	if res.NoToken {
		notes = append(notes, "the command used no token: it needs no delegation")
	}
	if !res.Verified {
		notes = append(notes, "NOT VERIFIED: "+res.VerifyError)
	}
	for _, s := range notJudged(names, res) {
		notes = append(notes, "not judged: "+s)
	}
	for _, s := range rec.Attachments(names) {
		notes = append(notes, "used without a token (the kernel checks the program and the capabilities, not the delegation): "+s)
	}
	return notes
}

// notJudged is what the record could not judge, and what it asked for
// outside the starting delegation.
func notJudged(names *delegate.Names, res *profileResult) []string {
	out := res.Record.NotJudged(names)
	if n := outsideNote(names, res.Outside); n != "" {
		out = append(out, n)
	}
	return out
}

func printProfile(g *globals, names *delegate.Names, opts profileOptions, args []string, res *profileResult) error {
	notes := profileNotes(names, res)
	switch opts.format {
	case "json":
		j := profileRunJSON{Command: args, allowedJSON: sortedAllowed(names, res.Set), Options: names.FormatOptions(res.Set),
			Caps: capNames(res.Caps), Recorded: recordedJSON{sortedAllowed(names, res.Recorded), capNames(res.RecordedCaps)},
			Verified: res.Verified, VerifyError: res.VerifyError, Minimized: res.Minimized, Runs: res.Runs,
			NotJudged: []string{}, Attachments: res.Record.Attachments(names), Calls: []callJSON{},
			Counts: map[string]uint64{"notified": res.Record.Notified, "unreadable": res.Record.Unreadable,
				"gone": res.Record.Gone, "overflow": res.Record.Overflow}}
		j.NotJudged = append(j.NotJudged, notJudged(names, res)...)
		if j.Attachments == nil {
			j.Attachments = []string{}
		}
		for _, c := range res.Record.Sorted() {
			j.Calls = append(j.Calls, callJSON{record.Describe(names, c), res.Record.Calls[c]})
		}
		return writeJSON(os.Stdout, j, g.pretty)
	case "yaml":
		text, err := profileYAMLText(names, opts.name, args, res, notes)
		if err != nil {
			return err
		}
		_, err = os.Stdout.WriteString(text)
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(os.Stderr, "bpfgate: profile:", plainText(n))
	}
	if res.Set.IsZero() {
		fmt.Fprintln(os.Stderr, "bpfgate: profile: the command needs no delegation: run it without bpfgate run, or with any profile")
	}
	fmt.Println(profileFlags(names, res))
	return nil
}

// profileFlags prints the delegation as flags for bpfgate run.
func profileFlags(names *delegate.Names, res *profileResult) string {
	if res.Set.IsZero() {
		return ""
	}
	var parts []string
	for _, k := range delegate.Kinds {
		if l := sortedNames(names, k, res.Set.Mask(k)); len(l) > 0 {
			parts = append(parts, "--"+k.String()+" "+strings.Join(l, ":"))
		}
	}
	return strings.Join(append(parts, "--caps "+strings.Join(capNames(res.Caps), ",")), " ")
}

// profileYAMLText prints the delegation as a config.yaml profile, and
// checks that profile.Load reads it back as the same delegation.
func profileYAMLText(names *delegate.Names, name string, args []string, res *profileResult, notes []string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "# bpfgate profile -- %s\n", plainText(strings.ReplaceAll(shellQuote(args), "\n", "\\n")))
	for _, n := range notes {
		fmt.Fprintf(&b, "# %s\n", strings.ReplaceAll(plainText(n), "\n", "\n# "))
	}
	extra := slices.DeleteFunc(slices.Clone(res.Caps), func(c delegate.Cap) bool {
		return slices.Contains(delegate.CapsFor(names, res.Set), c)
	})
	if fewer := len(delegate.CapsFor(names, res.Set)) - (len(res.Caps) - len(extra)); fewer > 0 {
		fmt.Fprintf(&b, "# a profile always grants %s; --caps %s is all the command needs\n",
			strings.Join(capNames(delegate.CapsFor(names, res.Set)), ", "), strings.Join(capNames(res.Caps), ","))
	}
	if res.Set.IsZero() {
		b.WriteString("# the command needs no delegation: no profile\n")
		return b.String(), nil
	}
	fmt.Fprintf(&b, "profiles:\n  %s:\n", name)
	fmt.Fprintf(&b, "    description: %q\n", "recorded from "+filepath.Base(args[0])+" by bpfgate profile")
	for _, k := range delegate.Kinds {
		fmt.Fprintf(&b, "    %s: [%s]\n", k, strings.Join(sortedNames(names, k, res.Set.Mask(k)), ", "))
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, "    caps: [%s]\n", strings.Join(capNames(extra), ", "))
	}
	text := b.String()
	// It must read back as what was verified.
	f, err := os.CreateTemp("", "bpfgate-profile-*.yaml")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(text)
	if cerr := f.Close(); werr != nil || cerr != nil {
		return "", errors.Join(werr, cerr)
	}
	ps, err := profile.Load(f.Name(), names)
	if err != nil {
		return "", fmt.Errorf("the profile does not parse back: %w", err)
	}
	if len(ps) != 1 {
		return "", fmt.Errorf("the profile parses back as %d profiles", len(ps))
	}
	got, _, err := ps[0].Resolve(names)
	if err != nil || got != names.Canonical(res.Set) {
		return "", fmt.Errorf("the profile parses back as %s, not %s (%v)", names.FormatOptions(got), names.FormatOptions(res.Set), err)
	}
	return text, nil
}

func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
