package cli

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// termSafe returns s with everything a terminal could act on escaped:
// C0 and C1 control characters (ESC, CSI, BEL, tab, newline, ...) and
// DEL as \xNN or \u00NN, other non-graphic runes (bidirectional
// overrides, zero-width and other format characters, separators) as
// \uNNNN, bytes that are not UTF-8 as \xNN. Text from a node, a user or a
// file goes through it before it reaches a terminal: label values, flow
// reasons, names in tables.
func termSafe(s string) string {
	if !strings.ContainsFunc(s, needsEscape) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r) && r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r != ' ' && !unicode.IsGraphic(r))
}

// writeRow writes one row of a tabwriter table: each cell (formatted with
// fmt.Sprint) made terminal-safe, so that no cell can carry escape
// sequences or shift the columns with a tab or a newline. Every table the
// CLI prints writes its rows through it.
func writeRow(w io.Writer, cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = termSafe(fmt.Sprint(c))
	}
	fmt.Fprintln(w, strings.Join(parts, "\t"))
}
