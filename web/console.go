// Package web is the coordinator's web admin console: its HTTP handlers
// (login, logout, pages, the overview's recent denied flows), console
// sessions, the login rate limit, the first admin account, and its assets
// (HTML, JavaScript, CSS), embedded with go:embed so the binary serves
// everything itself.
//
// The pages are static; their script reads and changes everything
// through the same admin API as the CLI (/v1/admin/...), authenticated by
// the session cookie plus the session's CSRF token in a header, so every
// change goes through package state and the audit log.
//
// Only package coordinator (which runs the coordinator), and tests, import
// it; it mounts itself on the admin API's echo server through
// api.Config.Extensions. It must not import package coordinator.
package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/api"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/ratelimit"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/internal/atomicfile"
	"github.com/latchnet/latch/wire"
)

//go:embed assets
var assetFS embed.FS

// Prefix is where the console is served.
const Prefix = "/console/"

// publicAssets may be fetched without a session: what the login page
// needs. Everything else needs one.
var publicAssets = map[string]bool{"style.css": true, "login.js": true, "login.html": true}

// Config wires a Console.
type Config struct {
	State *state.State
	// Flows answers the overview's "recent denied flows": StoredFlows
	// over the coordinator's flow records; nil when there is no flow
	// telemetry (the panel then says there is no flow data).
	Flows FlowSource
	Now   func() time.Time
	Log   *slog.Logger
	// Limiter limits failed logins per user name and address; default
	// NewLimiter(5, 15 min, 10000 keys).
	Limiter *Limiter
	// SourceLimit limits login attempts per address, whatever the user
	// name; default ratelimit.New(1, 20, 10000): 20 at once, then one a
	// second.
	SourceLimit *ratelimit.Limiter
	// MaxHashing bounds the logins checking a password at once (argon2id
	// takes 19 MiB each); more are answered 429 at once. Default 4.
	MaxHashing int
	// VerifyPassword checks a password against its hash; default
	// auth.VerifyPassword. Tests hold it to fill the hashing slots.
	VerifyPassword func(encoded, pw string) (bool, error)
}

// LoginBodyLimit is the most a login request may send: a user name and a
// password fit in far less.
const LoginBodyLimit = 16 << 10

// Console serves the web console.
type Console struct {
	cfg    Config
	assets fs.FS
	// hashing holds a token per login checking a password.
	hashing chan struct{}
}

// New builds the console.
func New(cfg Config) *Console {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(5, 15*time.Minute, 10000, cfg.Now)
	}
	if cfg.SourceLimit == nil {
		cfg.SourceLimit = ratelimit.New(1, 20, 10000, nil)
	}
	if cfg.MaxHashing <= 0 {
		cfg.MaxHashing = 4
	}
	if cfg.VerifyPassword == nil {
		cfg.VerifyPassword = auth.VerifyPassword
	}
	sub, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embedded directory exists
	}
	return &Console{cfg: cfg, assets: sub, hashing: make(chan struct{}, cfg.MaxHashing)}
}

// Mount adds the console's routes; pass it in api.Config.Extensions.
func (k *Console) Mount(root *echo.Echo, admin *echo.Group) {
	page := root.Group("", securityHeaders)
	page.GET("/", k.redirectHome)
	page.GET("/console", k.redirectHome)
	page.GET(Prefix, k.index)
	page.GET(Prefix+"login", k.loginPage)
	page.POST(Prefix+"login", k.login, k.sourceLimit, api.BodyLimit(LoginBodyLimit))
	page.POST(Prefix+"logout", k.logout)
	page.GET(Prefix+"assets/*", k.asset)
	admin.GET("/flows/denied", k.deniedFlows)
}

// securityHeaders keeps the pages to their own origin: no inline script,
// no framing, no sniffing.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		return next(c)
	}
}

func (k *Console) redirectHome(c echo.Context) error {
	return c.Redirect(http.StatusSeeOther, Prefix)
}

// session returns the principal of the request's session cookie.
func (k *Console) session(c echo.Context) (state.Principal, string, bool) {
	ck, err := c.Request().Cookie(auth.SessionCookie)
	if err != nil || ck.Value == "" {
		return state.Principal{}, "", false
	}
	p, err := k.cfg.State.SessionPrincipal(c.Request().Context(), ck.Value)
	if err != nil {
		return state.Principal{}, "", false
	}
	return p, ck.Value, true
}

func (k *Console) index(c echo.Context) error {
	if _, _, ok := k.session(c); !ok {
		return c.Redirect(http.StatusSeeOther, Prefix+"login")
	}
	return k.serveFile(c, "index.html")
}

func (k *Console) loginPage(c echo.Context) error {
	if _, _, ok := k.session(c); ok {
		return c.Redirect(http.StatusSeeOther, Prefix)
	}
	return k.serveFile(c, "login.html")
}

// asset serves an embedded file by its plain name: no directories, no
// dot segments, nothing outside the embedded assets.
func (k *Console) asset(c echo.Context) error {
	name := c.Param("*")
	if name == "" || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") || path.Clean(name) != name {
		return echo.NewHTTPError(http.StatusNotFound, "no such asset")
	}
	if !publicAssets[name] {
		if _, _, ok := k.session(c); !ok {
			return echo.NewHTTPError(http.StatusUnauthorized, "not logged in: log in at "+Prefix+"login")
		}
	}
	return k.serveFile(c, name)
}

func (k *Console) serveFile(c echo.Context, name string) error {
	data, err := fs.ReadFile(k.assets, name)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound, "no such asset")
	}
	ct := mime.TypeByExtension(filepath.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return c.Blob(http.StatusOK, ct, data)
}

// loginRequest is the login form, sent as JSON (a cross-site form cannot
// send JSON, which keeps login CSRF out).
type loginRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// sourceLimit refuses an address over its login budget (SourceLimit)
// with 429, before anything is read.
func (k *Console) sourceLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ok, wait := k.cfg.SourceLimit.Allow(ratelimit.Source(c.Request().RemoteAddr)); !ok {
			secs := int(wait/time.Second) + 1
			c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
			return c.JSON(http.StatusTooManyRequests, wire.Error{Error: fmt.Sprintf("too many logins from this address: try again in %d s", secs), Code: "rate_limited"})
		}
		return next(c)
	}
}

// login checks a user name and password and starts a session. What
// cannot be a user is refused before anything is hashed or kept: a body
// over LoginBodyLimit, a name that auth.CheckUserName refuses, a password
// longer than any user has. Failures are limited per user name and
// address (Limiter), and at most MaxHashing logins hash at once.
func (k *Console) login(c echo.Context) error {
	r := c.Request()
	var req loginRequest
	if err := api.ReadJSON(c, &req, true); err != nil {
		return err
	}
	name := req.Name
	if len(name) <= auth.MaxUserNameLength {
		name = strings.ToLower(strings.TrimSpace(name))
	}
	if err := auth.CheckUserName(name); err != nil {
		return c.JSON(http.StatusBadRequest, wire.Error{Error: err.Error(), Code: "bad_request"})
	}
	if len(req.Password) > auth.MaxPasswordLength {
		return c.JSON(http.StatusBadRequest, wire.Error{Error: fmt.Sprintf("password longer than %d bytes: no user has one", auth.MaxPasswordLength), Code: "bad_request"})
	}
	ip := ratelimit.Source(r.RemoteAddr).Addr().String()
	// The key is the peer address, not X-Forwarded-For, which a client
	// could set to dodge the limit; both parts are bounded.
	key := name + "|" + ip
	if wait := k.cfg.Limiter.Blocked(key); wait > 0 {
		c.Response().Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		return c.JSON(http.StatusTooManyRequests, wire.Error{Error: fmt.Sprintf("too many failed logins for %q from this address: try again in %s", name, wait.Round(time.Second)), Code: "rate_limited"})
	}
	select {
	case k.hashing <- struct{}{}:
	default:
		c.Response().Header().Set("Retry-After", "1")
		return c.JSON(http.StatusTooManyRequests, wire.Error{Error: "the coordinator is busy checking other logins: try again in a second", Code: "busy"})
	}
	u, ok, err := k.checkPassword(c, name, req.Password)
	<-k.hashing
	if err != nil {
		return err
	}
	if !ok {
		k.cfg.Limiter.Fail(key)
		k.cfg.Log.Warn("console login failed", "user", name, "ip", ip)
		return c.JSON(http.StatusUnauthorized, wire.Error{Error: "wrong user name or password", Code: "unauthorized"})
	}
	k.cfg.Limiter.Reset(key)
	id := auth.NewSecret()
	now := k.cfg.Now()
	sess := store.Session{IDHash: auth.HashSecret(id), User: u.Name, CSRF: auth.NewSecret(), CreatedAt: now, ExpiresAt: now.Add(state.SessionTTL)}
	if err := k.cfg.State.Login(r.Context(), sess); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: auth.SessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, Expires: sess.ExpiresAt})
	return c.JSON(http.StatusOK, state.Principal{Name: u.Name, Role: u.Role, Via: "session", CSRF: sess.CSRF})
}

// checkPassword looks the user up and verifies the password; an unknown
// user costs one verification too, against auth.DummyHash. The caller
// holds a hashing slot.
func (k *Console) checkPassword(c echo.Context, name, pw string) (store.User, bool, error) {
	u, err := k.cfg.State.UserForLogin(c.Request().Context(), name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		_, _ = k.cfg.VerifyPassword(auth.DummyHash(), pw)
		return u, false, nil
	case err != nil:
		return u, false, err
	}
	ok, err := k.cfg.VerifyPassword(u.PasswordHash, pw)
	if err != nil {
		k.cfg.Log.Error("stored password hash unreadable", "user", u.Name, "err", err)
		return u, false, nil
	}
	return u, ok, nil
}

func (k *Console) logout(c echo.Context) error {
	p, id, ok := k.session(c)
	if !ok {
		return c.JSON(http.StatusUnauthorized, wire.Error{Error: "not logged in", Code: "unauthorized"})
	}
	got := c.Request().Header.Get(auth.CSRFHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.CSRF)) != 1 {
		return c.JSON(http.StatusForbidden, wire.Error{Error: "missing or wrong " + auth.CSRFHeader + " header: reload the page", Code: "csrf"})
	}
	if err := k.cfg.State.Logout(c.Request().Context(), p.Name, auth.HashSecret(id)); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: auth.SessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: c.Request().TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	return c.NoContent(http.StatusNoContent)
}

// FirstAdmin is the name of the account made at first start.
const FirstAdmin = "admin"

// PasswordFile is where the first admin's password is written, in the
// data directory.
const PasswordFile = "admin-password"

// EnsureFirstAdmin creates the user "admin" with a random password when no
// user exists and writes the password to dataDir/admin-password (0600);
// the log says where, never the password (logs are read by more people
// and kept longer). It returns the password, or "" when users existed.
func EnsureFirstAdmin(ctx context.Context, st *state.State, dataDir string, log *slog.Logger) (string, error) {
	has, err := st.HasUsers(ctx)
	if err != nil || has {
		return "", err
	}
	pw := auth.NewPassword()
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dataDir, PasswordFile)
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("replacing %s: %w", file, err)
	}
	if err := atomicfile.Create(file, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the first admin's password: %w", err)
	}
	if err := st.CreateUser(ctx, "system", store.User{Name: FirstAdmin, Role: auth.RoleAdmin, PasswordHash: hash}); err != nil {
		return "", fmt.Errorf("creating the first admin: %w", err)
	}
	log.Warn("web console: first admin created; its password is in password_file (read it as root), log in, create your own users, then delete the file",
		"user", FirstAdmin, "password_file", file)
	return pw, nil
}

// DeniedFlow is a recent denied (or would-deny) flow on the overview.
type DeniedFlow = adminapi.DeniedFlow

// FlowSource is where the console reads recent denied flows from: the
// coordinator's flow telemetry (StoredFlows).
type FlowSource interface {
	RecentDenied(ctx context.Context, limit int) ([]DeniedFlow, error)
}

func (k *Console) deniedFlows(c echo.Context) error {
	if k.cfg.Flows == nil {
		return c.JSON(http.StatusOK, adminapi.DeniedFlows{Flows: []DeniedFlow{}})
	}
	fl, err := k.cfg.Flows.RecentDenied(c.Request().Context(), 50)
	if err != nil {
		return err
	}
	if fl == nil {
		fl = []DeniedFlow{}
	}
	return c.JSON(http.StatusOK, adminapi.DeniedFlows{Available: true, Flows: fl})
}
