// Command kube-apiserver runs a real Kubernetes API server for kubectl-mesh's tests: embedded
// etcd and kube-apiserver in one process, on loopback, with RBAC and the default admission
// plugins. It writes an admin kubeconfig and one for a user with no rights once /readyz answers,
// and removes them, etcd's data and its keys (DIR/run) when it stops (SIGTERM or SIGINT).
//
// What it is not: there is no kubelet, scheduler or controller manager unless -controllers
// starts the few listed in controllers.go, so Deployments make no Pods and nothing runs.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	dir := flag.String("dir", "target/kube", "where the kubeconfigs and the CA go")
	port := flag.Int("port", 0, "the API server's port on 127.0.0.1 (0: a free one)")
	controllers := flag.Bool("controllers", true, "also run the namespace and service-account controllers in-process")
	verbosity := flag.Int("v", 0, "kube-apiserver's log verbosity")
	flag.Parse()
	if err := run(*dir, *port, *controllers, *verbosity); err != nil {
		fmt.Fprintln(os.Stderr, "kube-apiserver:", err)
		os.Exit(1)
	}
}

func run(dir string, port int, controllers bool, verbosity int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// Stale files from a server that was killed would point tests at nothing.
	removeOutputs(dir)

	// The command installs the SIGTERM/SIGINT handler; make it before anything needs cleaning.
	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()

	// etcd's data and the private keys: made anew at each start (a server killed with
	// SIGKILL leaves its own for the next start to remove), removed at exit.
	tmp := filepath.Join(dir, "run")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	defer removeOutputs(dir)

	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	creds, err := writeCredentials(tmp, dir)
	if err != nil {
		return err
	}

	etcd, etcdURL, err := startEtcd(filepath.Join(tmp, "etcd"))
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	cmd.SetArgs(apiServerFlags(tmp, creds, etcdURL, port, verbosity))
	served := make(chan error, 1)
	go func() { served <- cmd.ExecuteContext(ctx) }()

	url := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := waitReady(ctx, url, creds, served); err != nil {
		return err
	}
	if controllers {
		if err := startControllers(ctx, url, creds); err != nil {
			return fmt.Errorf("controllers: %w", err)
		}
	}
	if err := writeKubeconfigs(dir, url, creds); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kube-apiserver: ready at %s; kubeconfig in %s\n", url, dir)
	return <-served
}

// apiServerFlags are kube-apiserver's own flags: loopback only, the generated keys, static
// tokens (admin in system:masters, `limited` in no group), RBAC plus Node authorization.
func apiServerFlags(tmp string, c credentials, etcdURL string, port, verbosity int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--tls-cert-file=" + c.servingCert,
		"--tls-private-key-file=" + c.servingKey,
		"--client-ca-file=" + c.caCert,
		"--token-auth-file=" + c.tokenFile,
		"--authorization-mode=Node,RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.saKey,
		"--service-account-signing-key-file=" + c.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// A loopback address cannot be the `kubernetes` Service's endpoint.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--cert-dir=" + filepath.Join(tmp, "certs"),
		"--v=" + strconv.Itoa(verbosity),
	}
}

// waitReady polls /readyz until it answers 200, the server exits or a minute passes.
func waitReady(ctx context.Context, url string, c credentials, served <-chan error) error {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(c.caCert)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-served:
			if err == nil {
				err = errors.New("stopped before it was ready")
			}
			return fmt.Errorf("kube-apiserver: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s/readyz did not answer 200 within a minute", url)
		}
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
