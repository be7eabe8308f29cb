// Package profile holds bpfgate's profiles: named delegations written with
// names, so that they read the same on every kernel, with the capabilities,
// mount path, owner and mode that go with them.
//
// The host's policy (LoadPolicy) fails closed: when the config file exists
// it alone defines the allowed profiles, and a file that does not parse
// allows none. The built-in profiles (Builtins) apply only when there is no
// file. A Profile resolves against the running kernel's names into a
// delegate.Set (Resolve), or into a Grant: everything a workload or a
// container is given.
//
// Package delegate holds the kernel's rules and imports no YAML; this
// package reads the config file.
package profile
