package e2e

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"os"
	"strings"
	"testing"
)

// TestEveryTestListed fails when a test function of the suite is not in
// tests: Run would silently not run it.
func TestEveryTestListed(t *testing.T) {
	listed := map[string]bool{}
	for _, tc := range tests {
		if listed[tc.name] {
			t.Errorf("%s listed twice", tc.name)
		}
		listed[tc.name] = true
	}
	fset := gotoken.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") {
				continue
			}
			found++
			if !listed[strings.TrimPrefix(fn.Name.Name, "Test")] {
				t.Errorf("%s (%s) is not in tests: Run does not run it", fn.Name.Name, name)
			}
		}
	}
	if found != len(tests) {
		t.Errorf("%d test functions, %d listed", found, len(tests))
	}
}
