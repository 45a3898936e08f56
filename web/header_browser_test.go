package web

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// headerLayout is where the console's header and what follows it sit,
// measured in the page.
type headerLayout struct {
	Top, Bottom float64 // the header's box
	Row         float64 // height of its tallest item
	Padding     float64 // its vertical padding and border
	// Wrapped names the header's items that do not sit on its first row.
	Wrapped []string
	// Below are the first elements under the header: the event banner
	// (#notice) and the page's heading.
	Below []belowBox
}

type belowBox struct {
	Sel       string
	Top       float64
	Text      string
	Covered   bool   // the point at its first line belongs to another element
	CoveredBy string // that element
}

const measureHeader = `(() => {
  const hdr = document.querySelector('header.top');
  const r = hdr.getBoundingClientRect();
  const cs = getComputedStyle(hdr);
  const pad = ['paddingTop', 'paddingBottom', 'borderTopWidth', 'borderBottomWidth'].reduce((s, k) => s + parseFloat(cs[k]), 0);
  const items = [hdr.querySelector('.brand'), ...document.querySelectorAll('#nav > li'), hdr.querySelector('.who')];
  const boxes = items.map((e) => [e, e.getBoundingClientRect()]);
  const first = boxes[0][1];
  const wrapped = boxes.filter(([, b]) => b.top >= first.bottom).map(([e]) => e.textContent.trim().slice(0, 30));
  const below = ['#notice', 'main h1'].map((sel) => {
    const e = document.querySelector(sel);
    const b = e.getBoundingClientRect();
    const at = document.elementFromPoint(b.left + 4, b.top + 4);
    const covered = !at || !(e === at || e.contains(at));
    return { Sel: sel, Top: b.top, Text: e.textContent, Covered: covered, CoveredBy: at ? at.outerHTML.slice(0, 80) : 'nothing' };
  });
  return { Top: r.top, Bottom: r.bottom, Row: Math.max(...boxes.map(([, b]) => b.height)), Padding: pad, Wrapped: wrapped, Below: below };
})()`

// TestConsoleHeader: at 1280 px the console's header is one row, groups its
// pages in a few menus that work with the keyboard, and covers nothing:
// the event banner and the page heading start below it.
func TestConsoleHeader(t *testing.T) {
	h := newHarness(t)
	b := newBrowser(t, h)
	b.login("admin", h.adminPW)
	b.run("narrowing the window to 1280 px", chromedp.EmulateViewport(1280, 800))

	// An event fills the banner under the header.
	b.page("tokens")
	b.run("creating a join token", set("#token-namespace", "prod"), click("#token-create"), visible("#token-value"))
	token := value(b, "#token-value")
	b.page("overview")
	h.MustEnroll(token, "web-1")
	b.run("waiting for the event banner", chromedp.Poll[chromedp.Void](`document.getElementById('notice').textContent.includes('web-1')`))
	b.screenshot("header-1280")

	l := js[headerLayout](b, "measuring the header", measureHeader)
	t.Logf("header at 1280 px: %+v", l)
	if len(l.Wrapped) > 0 {
		t.Errorf("the header wraps at 1280 px: %q are not on its first row", l.Wrapped)
	}
	if l.Bottom-l.Top > l.Row+l.Padding+1 {
		t.Errorf("the header is %.0f px high; one row is %.0f px plus %.0f px of padding", l.Bottom-l.Top, l.Row, l.Padding)
	}
	for _, e := range l.Below {
		if e.Top < l.Bottom {
			t.Errorf("%s starts at %.0f px, under the header (which ends at %.0f px)", e.Sel, e.Top, l.Bottom)
		}
		if e.Covered {
			t.Errorf("the first line of %s (%q) is covered by %s", e.Sel, e.Text, e.CoveredBy)
		}
	}
	if !strings.Contains(l.Below[0].Text, "web-1") {
		t.Errorf("the event banner says %q; want the node's event", l.Below[0].Text)
	}

	// Few top-level entries, each group a disclosure button.
	top := js[[]string](b, "reading the top-level entries", `Array.from(document.querySelectorAll('#nav > li')).map((li) => {
		const c = li.firstElementChild;
		return c.tagName + ':' + c.textContent.trim() + ':' + (c.getAttribute('aria-expanded') || '') + ':' + (c.getAttribute('aria-controls') || '');
	})`)
	if len(top) > 6 {
		t.Errorf("the header has %d top-level entries: %q; group them", len(top), top)
	}
	for _, e := range top[1:] {
		if f := strings.Split(e, ":"); f[0] != "BUTTON" || f[2] != "false" || f[3] == "" {
			t.Errorf("top-level entry %q: want a closed disclosure button (aria-expanded=false, aria-controls)", e)
		}
	}

	// Keyboard: Enter opens a group, Tab reaches its first page, Enter
	// goes there; the group then shows it holds the current page.
	b.run("opening the Network menu", chromedp.Focus(chromedp.ID("nav-network-button")), chromedp.KeyEvent(kb.Enter), visible("#nav-network a"))
	if got := js[string](b, "reading aria-expanded", `document.getElementById('nav-network-button').getAttribute('aria-expanded')`); got != "true" {
		t.Errorf("after Enter the Network button has aria-expanded=%q; want true", got)
	}
	b.screenshot("header-menu-open")
	b.run("choosing Nodes", chromedp.KeyEvent(kb.Tab))
	if id, outline := b.focusOutline(); id != "A" || !strings.HasPrefix(outline, "solid") {
		t.Errorf("after Tab the focus is on %s with outline %q; want the menu's first link, visibly focused", id, outline)
	}
	b.run("going to Nodes", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.CSS(`main[data-page="nodes"] h1`)), chromedp.WaitNotVisible(chromedp.CSS("#nav-network")))
	state := js[[]string](b, "reading the current page", `[document.querySelector('#nav a[aria-current="page"]').getAttribute('href'),
		document.getElementById('nav-network-button').dataset.current || '', document.getElementById('nav-policy-button').dataset.current || '']`)
	if state[0] != "#nodes" || state[1] != "true" || state[2] != "" {
		t.Errorf("on the nodes page: current link %s, Network group current %q, Policy group current %q; want #nodes, true, empty", state[0], state[1], state[2])
	}
	// Escape closes an open menu and gives the focus back to its button.
	b.run("opening and closing the Policy menu", chromedp.Focus(chromedp.ID("nav-policy-button")), chromedp.KeyEvent(kb.Enter), visible("#nav-policy a"),
		chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#nav-policy")))
	if id, _ := b.focusOutline(); id != "nav-policy-button" {
		t.Errorf("after Escape the focus is on %s; want nav-policy-button", id)
	}
	// Opening one menu closes the other; a click elsewhere closes it.
	b.run("opening Admin, then Network", click("#nav-admin-button"), visible("#nav-admin a"), click("#nav-network-button"), visible("#nav-network a"), chromedp.WaitNotVisible(chromedp.CSS("#nav-admin")))
	b.run("clicking the page", click("main h1"), chromedp.WaitNotVisible(chromedp.CSS("#nav-network")))
}
