package record_test

import (
	"context"
	"fmt"
	"log"

	"github.com/bpfgate/bpfgate/delegate"
	"github.com/bpfgate/bpfgate/launch"
	"github.com/bpfgate/bpfgate/record"
)

// Record what a libbpf tool uses of a broad delegation.
func Example() {
	names, err := delegate.KernelNames()
	if err != nil {
		log.Fatal(err)
	}
	all := delegate.Set{}
	for _, k := range delegate.Kinds {
		all.SetMask(k, names.Enum(k).Any())
	}
	w, err := launch.Start(launch.Config{
		Args:       []string{"/usr/local/bin/tool"},
		Delegation: all,
		Caps:       delegate.CapsFor(names, all),
		RecordBPF:  true,
	})
	if err != nil {
		log.Fatal(err)
	}
	listener := w.BPFListener()
	defer listener.Close()
	done := make(chan *record.Record)
	go func() {
		rec, err := record.Serve(context.Background(), listener)
		if err != nil {
			log.Print(err)
		}
		done <- rec
	}()
	if _, err := w.Wait(); err != nil {
		log.Fatal(err)
	}
	rec := <-done
	fmt.Println(names.FormatOptions(rec.Delegation()))
	for _, s := range rec.NotJudged(names) {
		fmt.Println("not judged:", s)
	}
}
