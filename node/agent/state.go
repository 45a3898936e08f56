package agent

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/latchnet/latch/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/latchnet/latch/view"
	"github.com/latchnet/latch/wire"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Files in the state directory. All are written 0600 through a temporary
// file and a rename, so a crash leaves the old or the new content.
const (
	KeyFile    = "node.key"   // PKCS#8 PEM ECDSA P-256 key of the SVID
	SVIDFile   = "svid.pem"   // PEM certificate chain, leaf first
	BundleFile = "bundle.pem" // PEM CA certificates of the trust domain
	WGKeyFile  = "wg.key"     // WireGuard private key, base64
	ViewFile   = "view.json"  // the last view received
	NodeFile   = "node.json"  // wire.NodeInfo
	SocketFile = "latch.sock" // the local status API
	oldKeyFile = "node.key.old"
)

// stateDir reads and writes the agent's files.
type stateDir string

func (d stateDir) path(name string) string { return filepath.Join(string(d), name) }

// create makes the directory (0700), tightening an existing one.
func (d stateDir) create() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	if err := os.Chmod(string(d), 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// write replaces name with data atomically, mode 0600.
func (d stateDir) write(name string, data []byte) error {
	return atomicfile.Write(d.path(name), data, 0o600)
}

// read returns the content of name; ok is false if it does not exist.
func (d stateDir) read(name string) (data []byte, ok bool, err error) {
	data, err = os.ReadFile(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading state: %w", err)
	}
	return data, true, nil
}

func (d stateDir) writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return d.write(name, append(data, '\n'))
}

// readJSON decodes name into v; ok is false if it does not exist.
func (d stateDir) readJSON(name string, v any) (ok bool, err error) {
	data, ok, err := d.read(name)
	if !ok || err != nil {
		return ok, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("reading %s: %w", d.path(name), err)
	}
	return true, nil
}

// wgKey returns the saved WireGuard key, making and saving one the first
// time.
func (d stateDir) wgKey() (wgtypes.Key, error) {
	data, ok, err := d.read(WGKeyFile)
	if err != nil {
		return wgtypes.Key{}, err
	}
	if ok {
		k, err := wgtypes.ParseKey(string(trimSpace(data)))
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("reading %s: %w: remove it to make a new key", d.path(WGKeyFile), err)
		}
		return k, nil
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generating WireGuard key: %w", err)
	}
	if err := d.write(WGKeyFile, []byte(k.String()+"\n")); err != nil {
		return wgtypes.Key{}, err
	}
	return k, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// saveIdentity writes the key, chain and bundle. The key is replaced
// before the chain; the previous key stays in node.key.old until the chain
// is replaced too, so loadIdentity can pair them after a crash in between.
func (d stateDir) saveIdentity(id *identity) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(id.key)
	if err != nil {
		return fmt.Errorf("encoding SVID key: %w", err)
	}
	if err := d.write(BundleFile, encodeCerts(id.bundle)); err != nil {
		return err
	}
	os.Remove(d.path(oldKeyFile))
	if err := os.Link(d.path(KeyFile), d.path(oldKeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keeping the previous SVID key: %w", err)
	}
	if err := d.write(KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	if err := d.write(SVIDFile, encodeCerts(id.chain)); err != nil {
		return err
	}
	os.Remove(d.path(oldKeyFile))
	return nil
}

// loadIdentity reads the saved SVID; ok is false if the node has not
// enrolled.
func (d stateDir) loadIdentity() (id *identity, ok bool, err error) {
	chainPEM, ok, err := d.read(SVIDFile)
	if !ok || err != nil {
		return nil, false, err
	}
	fail := func(err error) (*identity, bool, error) {
		return nil, false, fmt.Errorf("reading the node's identity from %s: %w; to start over, remove the state directory and enroll with a new join token", string(d), err)
	}
	chain, err := decodeCerts(chainPEM)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", SVIDFile, err))
	}
	bundlePEM, ok, err := d.read(BundleFile)
	if err != nil {
		return fail(err)
	}
	if !ok {
		return fail(fmt.Errorf("%s is missing", BundleFile))
	}
	bundle, err := decodeCerts(bundlePEM)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", BundleFile, err))
	}
	var firstErr error
	for _, kf := range []string{KeyFile, oldKeyFile} {
		keyPEM, ok, err := d.read(kf)
		if err != nil {
			return fail(err)
		}
		if !ok {
			continue
		}
		key, err := parseKeyPEM(keyPEM)
		if err == nil {
			id, err = newIdentity(chain, key, bundle)
		}
		if err == nil {
			return id, true, nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", kf, err)
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%s is missing", KeyFile)
	}
	return fail(firstErr)
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func decodeCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return out, nil
}

// loadView returns the saved view, or nil.
func (d stateDir) loadView() (*view.View, error) {
	var v view.View
	ok, err := d.readJSON(ViewFile, &v)
	if !ok || err != nil {
		return nil, err
	}
	return &v, nil
}

func (d stateDir) loadNode() (wire.NodeInfo, bool, error) {
	var n wire.NodeInfo
	ok, err := d.readJSON(NodeFile, &n)
	return n, ok, err
}
