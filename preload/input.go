package preload

import (
	"io"

	"github.com/cilium/ebpf"

	"github.com/bpfgate/bpfgate/internal/boundedio"
)

// Limits on what preload reads. Each is far above real sizes, so that only a
// mistake (or /dev/zero) reaches it; it is named in the error.
const (
	// MaxManifestSize bounds a manifest: real ones are a few hundred bytes.
	MaxManifestSize = 1 << 20
	// MaxObjectSize bounds a BPF ELF object: large ones with BTF and debug
	// info (Cilium's datapath) are a few MiB.
	MaxObjectSize = 256 << 20
)

// openObject opens the manifest's object: a regular file of at most
// MaxObjectSize bytes, read only up to the size it had when opened.
func openObject(m *Manifest) (*io.SectionReader, io.Closer, error) {
	f, size, err := boundedio.Open(m.Object, MaxObjectSize, 0)
	if err != nil {
		return nil, nil, manifestError(m.File, m.line("object"), "object", err)
	}
	return io.NewSectionReader(f, 0, size), f, nil
}

// loadSpec parses the manifest's object.
func loadSpec(m *Manifest) (*ebpf.CollectionSpec, error) {
	r, c, err := openObject(m)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	spec, err := ebpf.LoadCollectionSpecFromReader(r)
	if err != nil {
		return nil, m.errorf("object", "%s is not a BPF ELF object bpfgate can read: %v", m.Object, err)
	}
	return spec, nil
}
