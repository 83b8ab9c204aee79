package main

// The server's keys and the clients' kubeconfigs: a CA made fresh at every start, a serving
// certificate for 127.0.0.1 signed by it, a service-account signing key and two static tokens.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The users the kubeconfigs name; `limited` is in no group, so RBAC gives it discovery only.
const (
	adminUser   = "admin"
	limitedUser = "limited"
)

type credentials struct {
	caCert, servingCert, servingKey, saKey, tokenFile string
	adminToken, limitedToken                          string
}

// Output files in -dir; removed at start (stale) and at exit.
var outputs = []string{"kubeconfig", "kubeconfig-limited", "ca.crt"}

func removeOutputs(dir string) {
	for _, f := range outputs {
		os.Remove(filepath.Join(dir, f))
	}
}

// writeCredentials makes the keys in tmp (private, removed at exit) and the CA in dir.
func writeCredentials(tmp, dir string) (credentials, error) {
	c := credentials{
		caCert:      filepath.Join(dir, "ca.crt"),
		servingCert: filepath.Join(tmp, "serving.crt"),
		servingKey:  filepath.Join(tmp, "serving.key"),
		saKey:       filepath.Join(tmp, "service-account.key"),
		tokenFile:   filepath.Join(tmp, "tokens.csv"),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubectl-mesh test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return c, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return c, err
	}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}, ca, &servingKey.PublicKey, caKey)
	if err != nil {
		return c, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	if c.adminToken, err = token(); err != nil {
		return c, err
	}
	if c.limitedToken, err = token(); err != nil {
		return c, err
	}
	tokens := fmt.Sprintf("%s,%s,%s-uid,\"system:masters\"\n%s,%s,%s-uid\n",
		c.adminToken, adminUser, adminUser, c.limitedToken, limitedUser, limitedUser)

	if err := writePEM(c.caCert, "CERTIFICATE", caDER, 0o644); err != nil {
		return c, err
	}
	if err := writePEM(c.servingCert, "CERTIFICATE", servingDER, 0o644); err != nil {
		return c, err
	}
	if err := writeKey(c.servingKey, servingKey); err != nil {
		return c, err
	}
	if err := writeKey(c.saKey, saKey); err != nil {
		return c, err
	}
	return c, os.WriteFile(c.tokenFile, []byte(tokens), 0o600)
}

func token() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}

// writeKubeconfigs writes both kubeconfigs, each through a rename so a reader never sees half.
func writeKubeconfigs(dir, url string, c credentials) error {
	ca, err := os.ReadFile(c.caCert)
	if err != nil {
		return err
	}
	for _, k := range []struct{ file, user, token string }{
		{"kubeconfig", adminUser, c.adminToken},
		{"kubeconfig-limited", limitedUser, c.limitedToken},
	} {
		text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-apiserver
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: %s
  context:
    cluster: kube-apiserver
    user: %s
    namespace: default
current-context: %s
`, url, base64.StdEncoding.EncodeToString(ca), k.user, k.token, k.user, k.user, k.user)
		path := filepath.Join(dir, k.file)
		if err := os.WriteFile(path+".tmp", []byte(text), 0o600); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
	}
	return nil
}
