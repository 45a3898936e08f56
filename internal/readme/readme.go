// Package readme reads what README.md tells users to type, so that tests
// run exactly that (the install one-liner) instead of a copy of it. Only
// tests import it.
package readme

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var (
	installBlock = regexp.MustCompile("(?s)```sh\n(\\(export LATCH_TOKEN=TOKEN .*?)\n```")
	lineBreaks   = regexp.MustCompile(`\n\s*`)
)

// The placeholders the README's install one-liner uses.
const (
	placeholderToken = "LATCH_TOKEN=TOKEN "
	placeholderCoord = "COORD=https://coord.example.com:7443"
)

// InstallCommand returns the install one-liner of the README.md in dir
// ("Install on a server or laptop"; the console shows the same), as the
// README writes it (several lines), with coord and token filled in.
func InstallCommand(dir, coord, token string) (string, error) {
	text, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		return "", err
	}
	m := installBlock.FindSubmatch(text)
	if m == nil {
		return "", fmt.Errorf("README.md has no install one-liner (a sh block starting %q)", "(export "+placeholderToken)
	}
	cmd := strings.Replace(string(m[1]), placeholderToken, "LATCH_TOKEN="+token+" ", 1)
	return strings.Replace(cmd, placeholderCoord, "COORD="+coord, 1), nil
}

// OneLine joins a command of several lines into one, as the console
// shows it.
func OneLine(cmd string) string { return lineBreaks.ReplaceAllString(cmd, " ") }
