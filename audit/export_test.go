package audit

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// IDs returns the kernel ids of the tracer's programs, links and maps.
func (t *Tracer) IDs() ([]ebpf.ProgramID, []link.ID, []ebpf.MapID, error) {
	var progs []ebpf.ProgramID
	for _, p := range t.coll.Programs {
		info, err := p.Info()
		if err != nil {
			return nil, nil, nil, err
		}
		id, _ := info.ID()
		progs = append(progs, id)
	}
	var links []link.ID
	for _, l := range []link.Link{t.link} {
		if l == nil {
			continue
		}
		li, err := l.Info()
		if err != nil {
			return nil, nil, nil, err
		}
		links = append(links, li.ID)
	}
	var maps []ebpf.MapID
	for _, m := range t.coll.Maps {
		info, err := m.Info()
		if err != nil {
			return nil, nil, nil, err
		}
		id, _ := info.ID()
		maps = append(maps, id)
	}
	return progs, links, maps, nil
}
