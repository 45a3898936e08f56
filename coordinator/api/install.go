package api

import (
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"regexp"

	"github.com/labstack/echo/v4"
)

// Public paths: no authentication, like a package repository. What they
// serve is public; the install script checks the CA certificate against
// the join token before it trusts anything it downloads.
const (
	PathInstallScript = "/install.sh"
	PathCACert        = "/ca.pem"
	PathDownloads     = "/dl/"
)

// distName is what /dl/ serves: the sums file and the binaries `make dist`
// writes. Nothing else, so no path can leave the directory.
var distName = regexp.MustCompile(`^(SHA256SUMS|latch-[a-z0-9]+-[a-z0-9]+)$`)

func (s *Server) installRoutes() {
	s.e.GET(PathInstallScript, s.installScript)
	s.e.GET(PathCACert, s.caCert)
	s.e.GET(PathDownloads+":file", s.download)
}

// installScript serves the install script with the coordinator URL baked
// in: the configured public URL, else the URL the script was fetched from.
func (s *Server) installScript(c echo.Context) error {
	if s.cfg.InstallScript == nil {
		return fail(http.StatusNotFound, "not_found", "this coordinator serves no install script")
	}
	url := s.cfg.PublicURL
	if url == "" {
		url = "https://" + c.Request().Host
	}
	// InstallScript refuses a URL with anything the shell would interpret.
	script, err := s.cfg.InstallScript(url)
	if err != nil {
		return fail(http.StatusBadRequest, "bad_host", "%v: fetch the script with the coordinator's address", err)
	}
	return c.Blob(http.StatusOK, "text/x-shellscript; charset=utf-8", script)
}

// caCert serves the coordinator CA certificate (public: its SPKI hash is in
// every join token, which is how the install script checks it). It is one
// PEM certificate and nothing else: the script and the documented one-liner
// trust exactly one certificate, checked against the token, and the script
// refuses a ca.pem holding anything more (curl --cacert would trust every
// certificate in the file).
func (s *Server) caCert(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/x-pem-file", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cfg.CA.Root().Raw}))
}

// download serves SHA256SUMS and latch-OS-ARCH from the dist directory.
func (s *Server) download(c echo.Context) error {
	if s.cfg.DistDir == "" {
		return fail(http.StatusNotFound, "no_dist", "this coordinator serves no binaries: start it with --dist-dir DIR, DIR holding the output of `make dist`")
	}
	name := c.Param("file")
	if !distName.MatchString(name) {
		return fail(http.StatusNotFound, "not_found", "no download %q: the files are SHA256SUMS and latch-OS-ARCH", name)
	}
	root, err := os.OpenRoot(s.cfg.DistDir)
	if err != nil {
		return fail(http.StatusNotFound, "no_dist", "the dist directory: %v", err)
	}
	defer root.Close()
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(http.StatusNotFound, "not_found", "%s is not in this coordinator's dist directory (make dist builds linux-amd64, linux-arm64 and darwin-arm64)", name)
	}
	if err != nil { // a symlink out of the directory, say
		return fail(http.StatusNotFound, "not_found", "%s: %v", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fail(http.StatusNotFound, "not_found", "%s is not a regular file", name)
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/octet-stream")
	http.ServeContent(c.Response(), c.Request(), name, fi.ModTime(), f)
	return nil
}
