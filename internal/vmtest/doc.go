// Package vmtest boots Debian kernels under QEMU and runs programs there,
// for the tests that need a kernel other than the host's: test/kernels runs
// the core delegation tests on each kernel, and any package can run its own
// test binary in a VM with one call:
//
//	k := vmtest.Kernel(t, "6.12")
//	res := vmtest.GoTest(t, k, "./preload/guard", "-test.run=TestGuard")
//	if res.ExitCode != 0 { t.Fatalf("in the VM:\n%s", res.Output) }
//
// The kernels and QEMU come from scripts/kernels.sh, pinned and cached;
// without them the tests skip (fail under CI=true) with the reason. Each
// run builds an initramfs (busybox from busybox-static, the programs and
// the shared libraries they link), boots it with a timeout, collects what
// the program wrote (on a serial port of its own, apart from the kernel's
// console) and its exit status, and removes everything it made. The VM has
// no network and no disk: only proc, sysfs, devtmpfs, tmpfs on /tmp and
// /run, bpffs on /sys/fs/bpf, cgroup2 on /sys/fs/cgroup, securityfs,
// tracefs and debugfs.
//
// KVM is used when it really works (it is probed once by booting a kernel:
// on nested hosts /dev/kvm may exist and still fail), TCG otherwise;
// BPFGATE_VM_ACCEL=kvm or tcg forces one.
package vmtest
