// Command gohello does nothing: the start-up cost of the Go runtime.
package main

func main() {}
