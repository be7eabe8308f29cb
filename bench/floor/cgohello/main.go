// Command cgohello does nothing but has a cgo constructor, as bpfgate does:
// the start-up cost of the Go runtime linked with libc.
package main

/*
__attribute__((constructor)) static void floor_ctor(void) {}
*/
import "C"

func main() {}
