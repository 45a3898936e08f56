package cli

import "testing"

func TestUnifiedDiff(t *testing.T) {
	for _, tc := range []struct {
		name, a, b, want string
	}{{
		name: "equal",
		a:    "x\ny\n", b: "x\ny\n",
		want: "",
	}, {
		name: "new file",
		a:    "", b: "x\ny\n",
		want: "--- A\n+++ B\n@@ -0,0 +1,2 @@\n+x\n+y\n",
	}, {
		name: "removed file",
		a:    "x\n", b: "",
		want: "--- A\n+++ B\n@@ -1 +0,0 @@\n-x\n",
	}, {
		name: "one line changed, context of three",
		a:    "1\n2\n3\n4\n5\n6\n7\n8\n9\n", b: "1\n2\n3\n4\nfive\n6\n7\n8\n9\n",
		want: "--- A\n+++ B\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n",
	}, {
		name: "changes six lines apart share a hunk",
		a:    "a\n1\n2\n3\n4\n5\n6\nb\n", b: "A\n1\n2\n3\n4\n5\n6\nB\n",
		want: "--- A\n+++ B\n@@ -1,8 +1,8 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n 6\n-b\n+B\n",
	}, {
		name: "changes seven lines apart make two hunks",
		a:    "a\n1\n2\n3\n4\n5\n6\n7\nb\n", b: "A\n1\n2\n3\n4\n5\n6\n7\nB\n",
		want: "--- A\n+++ B\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n@@ -6,4 +6,4 @@\n 5\n 6\n 7\n-b\n+B\n",
	}, {
		name: "insertion only",
		a:    "a\nc\n", b: "a\nb\nc\n",
		want: "--- A\n+++ B\n@@ -1,2 +1,3 @@\n a\n+b\n c\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unifiedDiff("A", "B", tc.a, tc.b); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}
