package profile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/bpfgate/bpfgate/delegate"
)

// DefaultConfig is the host's config file: its profiles are the policy.
const DefaultConfig = "/etc/bpfgate/config.yaml"

// ErrNoProfiles means the host's config file exists and allows no profile.
var ErrNoProfiles = errors.New("the host policy allows no profiles")

// Policy is the set of profiles a host allows. It fails closed: when the
// config file exists, it alone defines the profiles (none if it lists
// none), and a file that cannot be read or parsed allows nothing. The
// built-in profiles apply only when there is no file at all.
type Policy struct {
	Profiles []Profile
	// Path is the config file that was looked for.
	Path string
	// Builtin says the file does not exist and the built-in profiles apply.
	Builtin bool
}

// LoadPolicy reads the host policy from the config file at path. A file
// that does not exist means the built-in profiles when optional is set (the
// default location); otherwise it is an error, as is any file that does
// not parse. Anything at path, even a dangling symlink, counts as a file.
func LoadPolicy(path string, n *delegate.Names, optional bool) (*Policy, error) {
	if _, err := os.Lstat(path); optional && errors.Is(err, fs.ErrNotExist) {
		return &Policy{Profiles: Builtins(), Path: path, Builtin: true}, nil
	}
	ps, err := Load(path, n)
	if err != nil {
		return nil, fmt.Errorf("config: %w (no profile is allowed until it is fixed)", err)
	}
	return &Policy{Profiles: ps, Path: path}, nil
}

// Find returns the allowed profile called name.
func (p *Policy) Find(name string) (Profile, error) {
	if len(p.Profiles) == 0 {
		return Profile{}, fmt.Errorf("%w %q: %w: %s defines none (built-in profiles apply only when the file does not exist)",
			ErrUnknown, name, ErrNoProfiles, p.Path)
	}
	return Find(p.Profiles, name)
}

// Describe says where the profiles come from, for people.
func (p *Policy) Describe() string {
	if p.Builtin {
		return "built-in profiles (no " + p.Path + ")"
	}
	return "profiles from " + p.Path
}
