package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synkfs/synkfs"
	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/client"
	"github.com/synkfs/synkfs/client/memreplica"
	"github.com/synkfs/synkfs/internal/syncbuf"
	"github.com/synkfs/synkfs/wire"
)

func TestIsLoopback(t *testing.T) {
	for listen, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.9.9.9:1": true, "[::1]:8080": true, "localhost:80": true, "LOCALHOST:80": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "192.168.1.2:8080": false, "example.com:80": false,
	} {
		got, err := isLoopback(listen)
		if err != nil || got != want {
			t.Errorf("isLoopback(%q) = %v, %v; want %v", listen, got, err, want)
		}
	}
	if _, err := isLoopback("8080"); err == nil {
		t.Error("a listen address without a port was taken")
	}
}

// TestServeRefusesAnOpenNetwork: no tokens on a non-loopback address is a
// usage error that says what to do.
func TestServeRefusesAnOpenNetwork(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--listen", listen}, &out, &errb)
		if code != exitUsage || !strings.Contains(errb.String(), "--tokens") || !strings.Contains(errb.String(), "--insecure-no-auth") {
			t.Fatalf("serve --listen %s: exit %d\n%s", listen, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "--tls-cert", "x.pem"}, &out, &errb); code != exitUsage {
		t.Fatalf("--tls-cert without --tls-key: exit %d\n%s", code, errb.String())
	}
}

// TestTokenAdd: the secret is printed once, alone on stdout; the file keeps
// its hash only, with mode 0600; list shows names and roles, no secrets.
func TestTokenAdd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	var out, errb bytes.Buffer
	if code := run([]string{"token", "add", "--tokens", file, "--name", "laptop", "--role", "read-only", "--types", "note, todo"}, &out, &errb); code != exitOK {
		t.Fatalf("token add: exit %d\n%s", code, errb.String())
	}
	secret := strings.TrimSuffix(out.String(), "\n")
	if !strings.HasPrefix(secret, auth.SecretPrefix) || strings.ContainsAny(secret, " \n\t") {
		t.Fatalf("stdout %q is not just the secret", out.String())
	}
	if strings.Contains(errb.String(), secret) {
		t.Fatal("the secret is also on stderr")
	}
	data, _ := os.ReadFile(file)
	if strings.Contains(string(data), secret) {
		t.Fatal("the token file holds the secret")
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	set, err := auth.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := set.Check(secret); !ok || tok.Role != auth.ReadOnly || strings.Join(tok.Types, ",") != "note,todo" {
		t.Fatalf("token: %+v %v", tok, ok)
	}
	out.Reset()
	if code := run([]string{"token", "add", "--tokens", file, "--name", "laptop", "--role", "read-write"}, &out, &errb); code != exitError || out.Len() != 0 {
		t.Fatalf("duplicate name: exit %d, stdout %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"token", "list", "--tokens", file}, &out, &errb); code != exitOK || out.String() != "laptop\tread-only\tnote,todo\n" {
		t.Fatalf("token list: exit %d\n%q", code, out.String())
	}
}

// writeCert makes a CA and a server certificate for 127.0.0.1 signed by
// it, and writes ca.pem, cert.pem and key.pem in dir.
func writeCert(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "synkfs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", srvDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestServeTLSWithTokens runs serve with --tokens, --tls-cert and --tls-key
// and connects Go clients through connFlags: with the CA and the token
// file it syncs; without a token it is refused as unauthorized (a
// permanent error); without the CA the certificate is not trusted; the
// secret never reaches the server's logs.
func TestServeTLSWithTokens(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := writeCert(t, dir)
	tokens := filepath.Join(dir, "tokens.json")
	secret, err := auth.Add(tokens, "laptop", auth.ReadWrite, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "laptop.token")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	addrFile := filepath.Join(dir, "addr")
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := &env{ctx: ctx, stdout: logs, stderr: logs, log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	cmd := &serveCmd{Listen: "127.0.0.1:0", AddrFile: addrFile, TombstoneRetention: time.Hour, securityFlags: securityFlags{
		Tokens: tokens, TLSCert: cert, TLSKey: key, MaxConns: 10, RateLimit: 100, MaxMessage: 4, HandshakeTimeout: 30 * time.Second,
	}}
	done := make(chan error, 1)
	go func() { done <- cmd.Run(e) }()
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
	}
	if addr == "" {
		t.Fatalf("serve did not start:\n%s", logs.String())
	}
	url := "wss://" + addr + "/"
	syncOnce := func(f connFlags) error {
		t.Helper()
		o := client.Options{URL: url, ClientID: "c", PingTimeout: 5 * time.Second}
		if err := f.apply(&o); err != nil {
			t.Fatal(err)
		}
		r := memreplica.New()
		r.Put(synkfs.Key{Type: "note", ID: "1"}, `{"x":1}`)
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		return client.New(o, r).SyncOnce(sctx)
	}

	if err := syncOnce(connFlags{TokenFile: secretFile, CA: ca}); err != nil {
		t.Fatalf("sync with the token and the CA: %v", err)
	}
	t.Setenv(auth.EnvToken, secret)
	if err := syncOnce(connFlags{CA: ca}); err != nil {
		t.Fatalf("sync with the token in %s: %v", auth.EnvToken, err)
	}
	t.Setenv(auth.EnvToken, "")
	err = syncOnce(connFlags{CA: ca})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != wire.CodeUnauthorized || !se.Permanent() {
		t.Fatalf("sync without a token: %v", err)
	}
	err = syncOnce(connFlags{TokenFile: secretFile})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("sync without the CA: %v", err)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	out := logs.String()
	if strings.Contains(out, secret) || strings.Contains(out, strings.TrimPrefix(secret, auth.SecretPrefix)) {
		t.Fatalf("the secret is in the server's logs:\n%s", out)
	}
	if !strings.Contains(out, "url=wss://") {
		t.Errorf("serve did not announce a wss:// URL:\n%s", out)
	}
}
