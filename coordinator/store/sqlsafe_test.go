package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// queryArgs names the functions that run SQL and which argument holds the
// query: the database/sql methods and this package's wrappers. A wrapper
// may pass its own parameter on (its callers are checked instead). A
// negative index marks a slice of queries.
var queryArgs = map[string]int{
	"Exec": 0, "Query": 0, "QueryRow": 0, "Prepare": 0,
	"ExecContext": 1, "QueryContext": 1, "QueryRowContext": 1, "PrepareContext": 1,
	"exec": 0, "query": 0, "queryRow": 0, "exists": 0, "prepared": 0, "list": 2,
	"savepoint": 0,                 // the name is part of the SQL text
	"migrate":   -4, "prepare": -2, // (index+1), negated: a []string of queries
}

// TestSQLIsParameterized fails when SQL in this package is built from
// values: every query passed to database/sql (or to a wrapper) must be
// made of string constants only (literals, package constants, and local
// variables, slices and fields assigned only such), with values passed as
// '?' arguments. fmt.Sprintf, strconv or a value concatenated into a
// query fails it.
func TestSQLIsParameterized(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	var names []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		names = append(names, f)
		srcs = append(srcs, "")
	}
	problems, calls := checkSQL(t, names, srcs)
	for _, p := range problems {
		t.Error(p)
	}
	if calls < 50 {
		t.Errorf("found only %d SQL calls: the checker no longer recognises this package's wrappers", calls)
	}
}

// TestSQLCheckCatchesValues: the checker refuses queries built with
// fmt.Sprintf, with a value concatenated in, or in a wrapper that splices
// a parameter of its own into the text; it accepts constants.
func TestSQLCheckCatchesValues(t *testing.T) {
	const src = `package store

import "fmt"

const cols = "a, b"

func (t *sqlTx) good(name string) {
	q := "SELECT " + cols + " FROM x"
	q += " WHERE a = ?"
	var where []string
	where = append(where, "b = ?")
	t.exec(q+" AND "+strings.Join(where, " AND "), name)
}

func (t *sqlTx) bad1(name string) { t.exec(fmt.Sprintf("DELETE FROM x WHERE a = '%s'", name)) }
func (t *sqlTx) bad2(name string) { t.queryRow("SELECT 1 FROM x WHERE a = '" + name + "'") }
func (t *sqlTx) bad3(name string) {
	q := "SELECT 1"
	q += name
	t.tx.ExecContext(t.ctx, q)
}
func (t *sqlTx) bad4(name string) { t.savepoint(name, nil) }
`
	problems, calls := checkSQL(t, []string{"fake.go"}, []string{src})
	if calls != 5 || len(problems) != 4 {
		t.Fatalf("%d calls, problems %q; want 5 calls and bad1..bad4 refused", calls, problems)
	}
	for i, p := range problems {
		if want := "bad"; !strings.Contains(p, want) {
			t.Errorf("problem %d %q is not in a bad function", i, p)
		}
	}
}

// checkSQL parses the files (src "" reads the file) and returns a problem
// per SQL call whose query is not made of constants, and the number of
// SQL calls found.
func checkSQL(t *testing.T, names, srcs []string) ([]string, int) {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for i, n := range names {
		var src any
		if srcs[i] != "" {
			src = srcs[i]
		}
		f, err := parser.ParseFile(fset, n, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	c := &sqlChecker{consts: map[string]bool{}, pkgVars: map[string]ast.Expr{}, fields: map[string][]fieldAssign{}}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok {
				for _, s := range g.Specs {
					if vs, ok := s.(*ast.ValueSpec); ok {
						for i, n := range vs.Names {
							if g.Tok == token.CONST {
								c.consts[n.Name] = true
							} else if i < len(vs.Values) {
								c.pkgVars[n.Name] = vs.Values[i]
							}
						}
					}
				}
			}
		}
	}
	// Assignments to struct fields (x.f = ...), by field name.
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if as, ok := n.(*ast.AssignStmt); ok {
					for i, l := range as.Lhs {
						if sel, ok := l.(*ast.SelectorExpr); ok && i < len(as.Rhs) {
							c.fields[sel.Sel.Name] = append(c.fields[sel.Sel.Name], fieldAssign{fd, as.Rhs[i]})
						}
					}
				}
				return true
			})
		}
	}
	var problems []string
	calls := 0
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				name := ""
				switch fn := call.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				case *ast.IndexExpr: // list[T](...)
					if id, ok := fn.X.(*ast.Ident); ok {
						name = id.Name
					}
				}
				idx, ok := queryArgs[name]
				if !ok {
					return true
				}
				slice := idx < 0
				if slice {
					idx = -idx - 1
				}
				if idx >= len(call.Args) || (call.Ellipsis.IsValid() && idx == len(call.Args)-1) {
					return true // no query: a prepared statement's arguments
				}
				calls++
				arg := call.Args[idx]
				safe := c.safe(fd, arg, map[string]bool{})
				if slice {
					safe = c.safeSlice(fd, arg, map[string]bool{})
				}
				if !safe {
					problems = append(problems, fset.Position(call.Pos()).String()+": in "+fd.Name.Name+
						": the query of "+name+" is not made of constants only: pass values as ? arguments")
				}
				return true
			})
		}
	}
	return problems, calls
}

type fieldAssign struct {
	fn  *ast.FuncDecl
	rhs ast.Expr
}

type sqlChecker struct {
	consts  map[string]bool
	pkgVars map[string]ast.Expr
	fields  map[string][]fieldAssign
}

// param returns the index of name among fn's parameters, or -1.
func param(fn *ast.FuncDecl, name string) int {
	i := 0
	for _, f := range fn.Type.Params.List {
		for _, n := range f.Names {
			if n.Name == name {
				return i
			}
			i++
		}
	}
	return -1
}

// wrapperParam reports whether name is the query parameter of fn, fn being
// one of the wrappers in queryArgs (their callers are checked).
func wrapperParam(fn *ast.FuncDecl, name string, slice bool) bool {
	idx, ok := queryArgs[fn.Name.Name]
	if !ok || (idx < 0) != slice {
		return false
	}
	if slice {
		idx = -idx - 1
	}
	return param(fn, name) == idx
}

// assigns returns the right-hand sides assigned to the local name in fn
// (nil for one it cannot tell), with their operators.
func assigns(fn *ast.FuncDecl, name string) (rhs []ast.Expr, ops []token.Token) {
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch s := n.(type) {
		case *ast.AssignStmt:
			for i, l := range s.Lhs {
				if id, ok := l.(*ast.Ident); ok && id.Name == name {
					if len(s.Rhs) == len(s.Lhs) {
						rhs = append(rhs, s.Rhs[i])
					} else {
						rhs = append(rhs, nil) // a, b := f(): unknown
					}
					ops = append(ops, s.Tok)
				}
			}
		case *ast.ValueSpec:
			for i, id := range s.Names {
				if id.Name == name {
					if i < len(s.Values) {
						rhs = append(rhs, s.Values[i])
					} else {
						rhs = append(rhs, &ast.CompositeLit{}) // var x []string: empty
					}
					ops = append(ops, token.DEFINE)
				}
			}
		case *ast.RangeStmt:
			if id, ok := s.Value.(*ast.Ident); ok && id.Name == name {
				rhs = append(rhs, &ast.IndexExpr{X: s.X})
				ops = append(ops, token.DEFINE)
			}
		}
		return true
	})
	return rhs, ops
}

// safe reports whether e, in fn, is a string made of constants only.
func (c *sqlChecker) safe(fn *ast.FuncDecl, e ast.Expr, seen map[string]bool) bool {
	switch x := e.(type) {
	case *ast.BasicLit:
		return x.Kind == token.STRING
	case *ast.ParenExpr:
		return c.safe(fn, x.X, seen)
	case *ast.BinaryExpr:
		return x.Op == token.ADD && c.safe(fn, x.X, seen) && c.safe(fn, x.Y, seen)
	case *ast.IndexExpr:
		return c.safeSlice(fn, x.X, seen)
	case *ast.CallExpr:
		// strings.Join(constant slice, constant)
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Join" && len(x.Args) == 2 {
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "strings" {
				return c.safeSlice(fn, x.Args[0], seen) && c.safe(fn, x.Args[1], seen)
			}
		}
		return false
	case *ast.Ident:
		if wrapperParam(fn, x.Name, false) {
			return true
		}
		if param(fn, x.Name) >= 0 {
			return false
		}
		if rhs, _ := assigns(fn, x.Name); len(rhs) > 0 {
			if seen[x.Name] {
				return true // its other assignments decide
			}
			seen[x.Name] = true
			for _, r := range rhs {
				if r == nil || !c.safe(fn, r, seen) {
					return false
				}
			}
			return true
		}
		return c.consts[x.Name]
	}
	return false
}

// safeSlice reports whether e, in fn, is a slice of strings made of
// constants only.
func (c *sqlChecker) safeSlice(fn *ast.FuncDecl, e ast.Expr, seen map[string]bool) bool {
	switch x := e.(type) {
	case *ast.CompositeLit:
		for _, el := range x.Elts {
			if !c.safe(fn, el, seen) {
				return false
			}
		}
		return true
	case *ast.CallExpr:
		// append(s, constants...)
		if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "append" && len(x.Args) > 0 {
			if !c.safeSlice(fn, x.Args[0], seen) {
				return false
			}
			for _, a := range x.Args[1:] {
				if !c.safe(fn, a, seen) {
					return false
				}
			}
			return true
		}
		return false
	case *ast.SelectorExpr:
		key := "." + x.Sel.Name
		if seen[key] {
			return true
		}
		seen[key] = true
		for _, a := range c.fields[x.Sel.Name] {
			if !c.safeSlice(a.fn, a.rhs, map[string]bool{key: true}) {
				return false
			}
		}
		return true
	case *ast.Ident:
		if x.Name == "nil" {
			return true
		}
		if wrapperParam(fn, x.Name, true) {
			return true
		}
		if param(fn, x.Name) >= 0 {
			return false
		}
		if rhs, _ := assigns(fn, x.Name); len(rhs) > 0 {
			if seen[x.Name] {
				return true
			}
			seen[x.Name] = true
			for _, r := range rhs {
				if r == nil || !c.safeSlice(fn, r, seen) {
					return false
				}
			}
			return true
		}
		if v, ok := c.pkgVars[x.Name]; ok {
			return c.safeSlice(fn, v, seen)
		}
	}
	return false
}
