// Package kernels runs bpfgate's core delegation tests on Debian kernels
// other than the host's, under QEMU (internal/vmtest, kernels pinned by
// scripts/kernels.sh): the test binaries of delegate, bpffs, token and
// launch, built on the host with go test -c, run as root in each VM with
// -test.v.
//
//   - 6.12 (Debian 12 backports) has BPF tokens but no token info (6.17):
//     every test passes there, under CI=true, so none may skip.
//   - 6.1 (Debian 12) predates tokens (6.9): the tests that need tokens
//     skip with bpffs.ErrNoTokenSupport and no other reason, the others
//     pass, and the real bpfgate binary refuses with that error.
//
// On 6.12 also run, each in its own VM: the BPF LSM guard's tests
// (TestGuard, lockdown=integrity) and the audit tracer's (TestAudit,
// syscall.x32=y: bpf() calls through x86-64, ia32 and x32 recorded).
//
// A few tests cannot run in the VM whatever the kernel; they are excluded
// by name with the reason (see excluded), and run on the host.
// docs/kernels.md says what runs where, how to add a kernel and how long
// it takes.
package kernels
