package cli

import (
	"fmt"
	"strings"
)

// diffContext is the number of unchanged lines around a change, as in
// diff -u.
const diffContext = 3

// maxDiffCells bounds the work of the line matching (lines of a times
// lines of b); beyond it the diff replaces every line, still correct.
const maxDiffCells = 16 << 20

// unifiedDiff is a and b compared line by line in the unified format of
// diff -u, with the file labels from and to; "" when they are equal. An
// empty a is a new file (its hunk starts at -0,0).
func unifiedDiff(from, to, a, b string) string {
	if a == b {
		return ""
	}
	ops := diffLines(splitLines(a), splitLines(b))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", from, to)
	// Hunks: runs of changes less than 2*diffContext unchanged lines
	// apart, with diffContext lines of context on either side.
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-diffContext)
		end := i
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
			} else if j-end >= 2*diffContext {
				break
			}
		}
		stop := min(len(ops), end+diffContext)
		writeHunk(&out, ops, start, stop)
		i = stop
	}
	return out.String()
}

type diffOp struct {
	kind byte // ' ' (both), '-' (only a), '+' (only b)
	line string
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diffLines is an edit script from a to b along a longest common
// subsequence of lines, deletions before insertions.
func diffLines(a, b []string) []diffOp {
	var ops []diffOp
	// The common prefix and suffix need no matching.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		ops = append(ops, diffOp{' ', a[pre]})
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	if len(ma)*len(mb) > maxDiffCells {
		for _, l := range ma {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		// lcs[i][j] is the length of a longest common subsequence of
		// ma[i:] and mb[j:].
		w := len(mb) + 1
		lcs := make([]int32, (len(ma)+1)*w)
		for i := len(ma) - 1; i >= 0; i-- {
			for j := len(mb) - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(ma) || j < len(mb) {
			switch {
			case i < len(ma) && j < len(mb) && ma[i] == mb[j]:
				ops = append(ops, diffOp{' ', ma[i]})
				i++
				j++
			case j == len(mb) || i < len(ma) && lcs[(i+1)*w+j] >= lcs[i*w+j+1]:
				ops = append(ops, diffOp{'-', ma[i]})
				i++
			default:
				ops = append(ops, diffOp{'+', mb[j]})
				j++
			}
		}
	}
	for k := len(a) - suf; k < len(a); k++ {
		ops = append(ops, diffOp{' ', a[k]})
	}
	return ops
}

// writeHunk writes ops[start:stop] as one hunk.
func writeHunk(out *strings.Builder, ops []diffOp, start, stop int) {
	// Line numbers before the hunk, in a and in b.
	na, nb := 0, 0
	for _, op := range ops[:start] {
		if op.kind != '+' {
			na++
		}
		if op.kind != '-' {
			nb++
		}
	}
	ca, cb := 0, 0
	for _, op := range ops[start:stop] {
		if op.kind != '+' {
			ca++
		}
		if op.kind != '-' {
			cb++
		}
	}
	fmt.Fprintf(out, "@@ -%s +%s @@\n", hunkRange(na, ca), hunkRange(nb, cb))
	for _, op := range ops[start:stop] {
		out.WriteByte(op.kind)
		out.WriteString(op.line)
		out.WriteByte('\n')
	}
}

// hunkRange is "first,count" as diff -u writes it: "first" alone for one
// line, and the line before the hunk for none.
func hunkRange(before, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", before)
	case 1:
		return fmt.Sprintf("%d", before+1)
	}
	return fmt.Sprintf("%d,%d", before+1, count)
}
