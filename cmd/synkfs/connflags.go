package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"

	"github.com/synkfs/synkfs/auth"
	"github.com/synkfs/synkfs/client"
)

// connFlags are the flags of every command that connects to a server
// (sync, mount): how to prove who we are and whom to trust. Embed it:
//
//	connFlags `embed:""`
//
// and call apply on the client.Options before client.New. The secret itself
// is never a flag: it would show in the process list.
type connFlags struct {
	TokenFile string `help:"File holding the token secret that 'synkfs token add' printed (default: the SYNKFS_TOKEN environment variable, if set)." type:"path" placeholder:"FILE" env:"SYNKFS_TOKEN_FILE"`
	CA        string `name:"ca" help:"PEM file of the certificate authorities to trust for a wss:// server (default: the system's)." type:"path" placeholder:"FILE"`
}

// apply sets o's Authorization header and TLS trust from the flags.
func (f *connFlags) apply(o *client.Options) error {
	secret, err := auth.ClientSecret(f.TokenFile)
	if err != nil {
		return err
	}
	if secret != "" {
		if o.Header == nil {
			o.Header = http.Header{}
		}
		o.Header.Set("Authorization", "Bearer "+secret)
	}
	if f.CA == "" {
		return nil
	}
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return fmt.Errorf("read --ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("--ca %s holds no PEM certificate", f.CA)
	}
	o.HTTPClient = &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	return nil
}
