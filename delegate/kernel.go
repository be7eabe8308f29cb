package delegate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/boundedio"
)

// VmlinuxBTF is where the kernel exposes its own BTF.
const VmlinuxBTF = "/sys/kernel/btf/vmlinux"

// CacheEnv names the environment variable that overrides where the names of
// the running kernel are cached; "off" disables the cache.
const CacheEnv = "BPFGATE_NAMES_CACHE"

var (
	kernelOnce  sync.Once
	kernelNames *Names
	kernelErr   error
)

// KernelNames returns the names of the running kernel. They come from
// vmlinux BTF, decoded once per boot and cached (decoding all of vmlinux BTF
// costs tens of milliseconds; the cache costs well under one), or from the
// built-in table when the kernel has no BTF. The result is shared: do not
// modify it.
func KernelNames() (*Names, error) {
	kernelOnce.Do(func() { kernelNames, kernelErr = loadKernelNames() })
	return kernelNames, kernelErr
}

type cacheFile struct {
	Key   string `json:"key"`
	Names *Names `json:"names"`
}

func loadKernelNames() (*Names, error) {
	release := kernelRelease()
	st, err := os.Stat(VmlinuxBTF)
	if errors.Is(err, os.ErrNotExist) {
		n := BuiltinNames()
		return n, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kernel BTF: %w", err)
	}
	key := cacheKey(release, st.Size())
	path := cachePath()
	if path != "" {
		if n := readCache(path, key); n != nil {
			return n, nil
		}
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	n, err := NamesFromBTF(spec)
	if err != nil {
		return nil, err
	}
	n.Release = release
	if path != "" {
		writeCache(path, key, n) // best effort: a cache that can't be written only costs time
	}
	return n, nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// cacheKey changes whenever the kernel could: a new boot or other BTF.
func cacheKey(release string, size int64) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return release + "/" + string(bytes.TrimSpace(boot)) + "/" + strconv.FormatInt(size, 10)
}

func cachePath() string {
	if p, ok := os.LookupEnv(CacheEnv); ok {
		if p == "off" || p == "" {
			return ""
		}
		return p
	}
	if os.Geteuid() == 0 {
		return "/run/bpfgate/kernel-names.json"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "bpfgate", "kernel-names.json")
	}
	return ""
}

func readCache(path, key string) *Names {
	data, err := boundedio.ReadFile(path, maxCacheSize)
	if err != nil {
		return nil
	}
	var c cacheFile
	if json.Unmarshal(data, &c) != nil || c.Key != key || c.Names == nil {
		return nil
	}
	c.Names.Source = "cache"
	return c.Names
}

func writeCache(path, key string, n *Names) {
	data, err := json.Marshal(cacheFile{Key: key, Names: n})
	if err != nil {
		return
	}
	if os.MkdirAll(filepath.Dir(path), 0o755) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kernel-names-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Chmod(tmp.Name(), 0o644) != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}

// BuiltinNames returns the table compiled into bpfgate, taken from a recent
// kernel's BTF. It is used when the running kernel has no BTF.
func BuiltinNames() *Names {
	n := &Names{Source: "builtin", Release: builtinRelease}
	for _, k := range Kinds {
		vals := make([]enumerator, 0, len(builtinEnums[k]))
		for _, v := range builtinEnums[k] {
			vals = append(vals, enumerator{v.Name, uint64(v.Value)})
		}
		n.Enums[k] = newEnum(k, vals)
	}
	return n
}

// maxCacheSize bounds the kernel names cache: the names of a 6.18 kernel
// are about 20 KiB of JSON.
const maxCacheSize = 4 << 20
