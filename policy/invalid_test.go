package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latchnet/latch/policy"
)

// Each file in testdata/invalid must be refused, with a message that names
// the file and contains every "# want: SUBSTRING" of the file's header.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata/invalid: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var wants []string
			for _, l := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(l, "# want: "); ok {
					wants = append(wants, strings.TrimSpace(w))
				}
			}
			if len(wants) == 0 {
				t.Fatal("case has no # want: line")
			}
			ps, err := policy.Parse(f, data)
			if err == nil {
				t.Fatalf("accepted %d policies; want an error", len(ps))
			}
			if ps != nil {
				t.Errorf("returned policies with an error: nothing may be applied")
			}
			if !errors.Is(err, policy.ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, f) {
				t.Errorf("message does not name the file %s:\n%s", f, msg)
			}
			for _, w := range wants {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestValid(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no cases in testdata/valid")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := policy.Parse(f, data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
		if len(ps) == 0 {
			t.Errorf("%s: no policies read", f)
		}
	}
}
