package token

import (
	"fmt"
	"os"

	"github.com/bpfgate/bpfgate/delegate"
)

// PathEnv is libbpf's environment variable for the token path.
const PathEnv = "LIBBPF_BPF_TOKEN_PATH"

// Found says where Find looked and why it found nothing.
type Found struct {
	Path   string `json:"path"`
	Reason string `json:"reason"` // "explicit", "env" or "default"
	// Err is why the implicit default gave no token; nil when a token was
	// made or lookups were disabled.
	Err error `json:"-"`
}

// Find creates a token with libbpf's rules: an explicit path must work;
// otherwise LIBBPF_BPF_TOKEN_PATH is used when set (set but empty disables
// tokens); otherwise /sys/fs/bpf is tried and any failure just means no
// token. A nil token with a nil error means "run without a token".
func Find(explicit string) (*Token, Found, error) {
	if explicit != "" {
		t, err := Create(explicit)
		return t, Found{Path: explicit, Reason: "explicit"}, err
	}
	if p, ok := os.LookupEnv(PathEnv); ok {
		if p == "" {
			return nil, Found{Reason: "env"}, nil
		}
		t, err := Create(p)
		if err != nil {
			return nil, Found{Path: p, Reason: "env"}, fmt.Errorf("%s=%s: %w", PathEnv, p, err)
		}
		return t, Found{Path: p, Reason: "env"}, nil
	}
	t, err := Create(delegate.DefaultPath)
	return t, Found{Path: delegate.DefaultPath, Reason: "default", Err: err}, nil
}
