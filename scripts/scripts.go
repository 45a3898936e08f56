// Package scripts embeds install.sh, the install script for servers and
// laptops, so that the coordinator can serve it at /install.sh with its own
// URL baked in. The shell scripts in this directory are the source; this
// package only carries install.sh into the binary. Only package
// coordinator, and the tests of coordinator/api, import it.
package scripts

import (
	_ "embed"
	"fmt"
	"regexp"
	"strings"
)

//go:embed install.sh
var installScript string

// coordinatorLine is the line of install.sh that the serving coordinator
// replaces with its URL.
const coordinatorLine = "default_coordinator=''"

// urlPattern is what may be baked into the script: https, a host name or
// IP address and a port, nothing the shell would interpret.
var urlPattern = regexp.MustCompile(`^https://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// InstallScript returns install.sh with coordinatorURL (https://HOST[:PORT])
// as the default --coordinator.
func InstallScript(coordinatorURL string) ([]byte, error) {
	if !urlPattern.MatchString(coordinatorURL) {
		return nil, fmt.Errorf("coordinator URL %q: want https://HOST[:PORT] (letters, digits, dots, dashes, or an IP address in brackets)", coordinatorURL)
	}
	if strings.Count(installScript, "\n"+coordinatorLine+"\n") != 1 {
		return nil, fmt.Errorf("install.sh has no single %q line to set the coordinator URL in", coordinatorLine)
	}
	return []byte(strings.Replace(installScript, "\n"+coordinatorLine+"\n", "\ndefault_coordinator='"+coordinatorURL+"'\n", 1)), nil
}

// ValidURL reports whether url can be baked into the install script.
func ValidURL(url string) bool { return urlPattern.MatchString(url) }
