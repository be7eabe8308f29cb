package audit

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// IDs returns the kernel ids of the tracer's program, link and maps.
func (t *Tracer) IDs() (ebpf.ProgramID, link.ID, []ebpf.MapID, error) {
	var prog ebpf.ProgramID
	for _, p := range t.coll.Programs {
		info, err := p.Info()
		if err != nil {
			return 0, 0, nil, err
		}
		prog, _ = info.ID()
	}
	li, err := t.link.Info()
	if err != nil {
		return 0, 0, nil, err
	}
	var maps []ebpf.MapID
	for _, m := range t.coll.Maps {
		info, err := m.Info()
		if err != nil {
			return 0, 0, nil, err
		}
		id, _ := info.ID()
		maps = append(maps, id)
	}
	return prog, li.ID, maps, nil
}
