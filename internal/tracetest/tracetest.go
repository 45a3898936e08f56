// Package tracetest runs a command under strace(1) and reports what every
// process it started had on its command line and which files they created
// or opened for writing. The install script's tests use it to show that a
// join token never reaches a command line (which any local user can read
// in ps) and that temporary files stay inside private (0700) directories.
// Only tests import it.
package tracetest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Trace is what a traced command did.
type Trace struct {
	// Execs holds each execve call as strace printed it: program, argv and
	// (abbreviated) environment.
	Execs []string
	// Dirs maps each directory created to its mode ("0700").
	Dirs map[string]string
	// Writes lists the absolute paths opened with O_CREAT, O_WRONLY or
	// O_RDWR, or created with creat.
	Writes []string
}

// Wrap returns argv prefixed with strace, following forks, and a function
// that reads the trace once the command has ended. Without strace the test
// fails under CI=true and skips elsewhere.
func Wrap(tb testing.TB, argv ...string) ([]string, func() Trace) {
	tb.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("this test needs strace (make deps installs it): %v", err)
		}
		tb.Skipf("strace is not installed (make deps installs it): %v", err)
	}
	out := filepath.Join(tb.TempDir(), "strace.out")
	wrapped := append([]string{strace, "-f", "-qq", "-s", "65535", "-o", out,
		"-e", "trace=execve,open,openat,creat,mkdir,mkdirat"}, argv...)
	return wrapped, func() Trace {
		tb.Helper()
		f, err := os.Open(out)
		if err != nil {
			tb.Fatalf("reading the trace: %v", err)
		}
		defer f.Close()
		return parse(tb, bufio.NewScanner(f))
	}
}

var (
	// The first quoted argument after the optional dirfd: a path.
	openCall  = regexp.MustCompile(`\b(open|openat|creat)\((?:AT_FDCWD, )?"((?:[^"\\]|\\.)*)"(.*)`)
	mkdirCall = regexp.MustCompile(`\b(mkdir|mkdirat)\((?:AT_FDCWD, )?"((?:[^"\\]|\\.)*)", (0[0-7]+)\) = 0`)
	writeFlag = regexp.MustCompile(`\bO_(CREAT|WRONLY|RDWR)\b`)
)

func parse(tb testing.TB, sc *bufio.Scanner) Trace {
	tb.Helper()
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	tr := Trace{Dirs: map[string]string{}}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "execve("):
			tr.Execs = append(tr.Execs, line)
		case mkdirCall.MatchString(line):
			m := mkdirCall.FindStringSubmatch(line)
			tr.Dirs[m[2]] = m[3]
		case openCall.MatchString(line):
			m := openCall.FindStringSubmatch(line)
			if (m[1] == "creat" || writeFlag.MatchString(m[3])) && strings.HasPrefix(m[2], "/") {
				tr.Writes = append(tr.Writes, m[2])
			}
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("reading the trace: %v", err)
	}
	return tr
}

// ExecsWith returns the execve calls whose program or arguments contain s
// (the environment, which only the process's owner can read, is not
// looked at).
func (tr Trace) ExecsWith(s string) []string {
	var out []string
	for _, e := range tr.Execs {
		// execve("/bin/x", ["x", "arg"], 0x7ff... /* 12 vars */) = 0
		argv := e
		if i := strings.Index(e, "], "); i >= 0 {
			argv = e[:i]
		}
		if strings.Contains(argv, s) {
			out = append(out, e)
		}
	}
	return out
}

// PublicWritesUnder returns the files written under dir (or dir itself)
// that are not inside a directory the traced command created with mode
// 0700: a file another local user could have placed or may read there.
func (tr Trace) PublicWritesUnder(dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, w := range tr.Writes {
		if w != dir && !strings.HasPrefix(w, dir+"/") {
			continue
		}
		private := false
		for d, mode := range tr.Dirs {
			if mode == "0700" && strings.HasPrefix(w, filepath.Clean(d)+"/") {
				private = true
			}
		}
		if !private {
			out = append(out, w)
		}
	}
	return out
}
