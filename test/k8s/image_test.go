package k8s

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// file is one entry of an image layer.
type file struct {
	mode fs.FileMode // fs.ModeDir, fs.ModeSymlink or a regular file's permissions
	data []byte      // a regular file's content
	link string      // a symlink's target
}

// image is an OCI image of one layer, written without a registry.
type image struct {
	name  string // e.g. "docker.io/library/bpfgate-k8s:1"
	cmd   []string
	files map[string]file // path in the image (no leading /) -> file
}

// layer is the image's files as an uncompressed tar, the same bytes for
// the same files: sorted, owned by root, time 0.
func (img *image) layer() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(img.files))
	for n := range img.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := img.files[n]
		h := &tar.Header{Name: n, Format: tar.FormatPAX}
		switch {
		case f.mode&fs.ModeDir != 0:
			h.Typeflag, h.Mode, h.Name = tar.TypeDir, 0o755, n+"/"
		case f.mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Mode, h.Linkname = tar.TypeSymlink, 0o777, f.link
		default:
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, int64(f.mode.Perm()), int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int               `json:"size"`
	Platform    map[string]string `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// writeArchive writes the image as an OCI image layout in a tar file that
// `ctr images import` takes: oci-layout, index.json and the blobs (layer,
// config, manifest), the index naming the image.
func (img *image) writeArchive(path string) error {
	blobs := map[string][]byte{}
	add := func(mediaType string, data []byte) descriptor {
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = data
		return descriptor{MediaType: mediaType, Digest: d, Size: len(data)}
	}
	layer, err := img.layer()
	if err != nil {
		return err
	}
	layerDesc := add("application/vnd.oci.image.layer.v1.tar", layer)
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": img.cmd},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": add("application/vnd.oci.image.config.v1+json", config),
		"layers": []descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := add("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Platform = map[string]string{"architecture": "amd64", "os": "linux"}
	manifestDesc.Annotations = map[string]string{"io.containerd.image.name": img.name}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []descriptor{manifestDesc}})
	if err != nil {
		return err
	}

	out, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(out)
	entry := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err = entry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	if err == nil {
		err = entry("index.json", index)
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err == nil {
			err = entry(filepath.Join("blobs/sha256", d[len("sha256:"):]), blobs[d])
		}
	}
	if err == nil {
		err = tw.Close()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write image %s to %s: %w", img.name, path, err)
	}
	return nil
}

// busyboxFiles is a root with busybox-static and its commands the tests
// use, plus extra files.
func busyboxFiles(busybox []byte, extra map[string]file) map[string]file {
	files := map[string]file{
		"bin/busybox": {mode: 0o755, data: busybox},
		"etc/passwd":  {mode: 0o644, data: []byte("root:x:0:0:root:/:/bin/sh\n")},
		"etc/group":   {mode: 0o644, data: []byte("root:x:0:\n")},
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp"} {
		files[d] = file{mode: fs.ModeDir}
	}
	for _, c := range []string{"sh", "cat", "cut", "grep", "sleep", "true"} {
		files["bin/"+c] = file{mode: fs.ModeSymlink, link: "busybox"}
	}
	for n, f := range extra {
		files[n] = f
	}
	return files
}
