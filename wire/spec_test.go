package wire

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitSpec(t *testing.T) {
	got, err := SplitSpec(" name=a , ,labels=k=v;x=y,")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]SpecField{{"name", "a"}, {"labels", "k=v;x=y"}}, got); diff != "" {
		t.Errorf("SplitSpec (-want +got):\n%s", diff)
	}
	for spec, want := range map[string]string{"name=a,bogus": `field "bogus" is not key=value`, "name=a,name=b": `field "name" given twice`} {
		if _, err := SplitSpec(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SplitSpec(%q): %v, want %q", spec, err, want)
		}
	}
}

func TestParseLabelList(t *testing.T) {
	got, err := ParseLabelList("app=web; tier=front;;")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"app": "web", "tier": "front"}, got); diff != "" {
		t.Errorf("ParseLabelList (-want +got):\n%s", diff)
	}
	if got, err := ParseLabelList(""); err != nil || got != nil {
		t.Errorf("ParseLabelList(\"\") = %v, %v; want nil, nil", got, err)
	}
	for s, want := range map[string]string{"app": `"app" is not key=value`, "=x": `"=x" is not key=value`, "a=1;a=2": `key "a" given twice`} {
		if _, err := ParseLabelList(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLabelList(%q): %v, want %q", s, err, want)
		}
	}
}
