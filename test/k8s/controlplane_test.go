package k8s

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfgate/bpfgate/internal/testutil"
)

// ControlPlane is a small Kubernetes control plane of the run's own on
// loopback: etcd, kube-apiserver (a static admin token, AlwaysAllow) and
// kube-scheduler, no controller manager. Everything it writes is under
// Dir; its ports are free ones picked at start.
type ControlPlane struct {
	Dir        string
	Kubeconfig string // admin access for kubectl, kubelet and plugins

	kubectl string
	procs   []*exec.Cmd
}

// freePort is a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartControlPlane starts etcd, the API server and the scheduler in dir
// (created if need be) and waits for the API server to be ready.
func StartControlPlane(tb testing.TB, dir string) (*ControlPlane, error) {
	tb.Helper()
	c := &ControlPlane{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig"), kubectl: testutil.K8sBin(tb, "kubectl")}
	bins := map[string]string{}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-scheduler"} {
		bins[b] = testutil.K8sBin(tb, b)
	}
	for _, d := range []string{"pki", "etcd"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	saKey, saPub := filepath.Join(dir, "pki", "sa.key"), filepath.Join(dir, "pki", "sa.pub")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(saPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, err
	}
	token := make([]byte, 16)
	rand.Read(token)
	tok := fmt.Sprintf("%x", token)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tok+",bpfgate-admin,bpfgate-admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	etcd, peer, api := ports[0], ports[1], ports[2]
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: bpfgate, cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: bpfgate, context: {cluster: bpfgate, user: admin}}]
current-context: bpfgate
`, api, tok)
	if err := os.WriteFile(c.Kubeconfig, []byte(kubeconfig), 0o600); err != nil {
		return nil, err
	}
	if err := c.start("etcd", bins["etcd"], "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcd),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcd),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", peer),
		"--listen-metrics-urls", ""); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.start("kube-apiserver", bins["kube-apiserver"],
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcd),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(api), "--cert-dir", filepath.Join(dir, "pki"),
		"--token-auth-file", filepath.Join(dir, "tokens.csv"), "--authorization-mode", "AlwaysAllow",
		"--service-cluster-ip-range", "10.96.0.0/24", "--service-account-issuer", "https://bpfgate.invalid",
		"--service-account-key-file", saPub, "--service-account-signing-key-file", saKey); err != nil {
		c.Stop()
		return nil, err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := c.Kubectl("get", "--raw", "/readyz"); err == nil {
			break
		} else if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("the API server was not ready in 90 s: %v\n%s", err, tail(filepath.Join(dir, "kube-apiserver.log")))
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err := c.start("kube-scheduler", bins["kube-scheduler"], "--kubeconfig", c.Kubeconfig,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0"); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *ControlPlane) start(name, bin string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// Kubectl runs kubectl on this control plane.
func (c *ControlPlane) Kubectl(args ...string) (string, error) {
	return run(c.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// Apply creates the objects of a YAML document.
func (c *ControlPlane) Apply(yaml string) error {
	f := filepath.Join(c.Dir, fmt.Sprintf("apply-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		return err
	}
	_, err := c.Kubectl("apply", "-f", f)
	return err
}

// Stop stops the scheduler, the API server and etcd (the processes it
// started, last first).
func (c *ControlPlane) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		p.Process.Signal(unix.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
