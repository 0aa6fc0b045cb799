package demo

import (
	"testing"

	"github.com/heraldpush/herald/push"
)

func TestAddDemoNamespacesKeepsTheUsers(t *testing.T) {
	mine := &push.Namespace{HistorySize: 7}
	namespaces := map[string]*push.Namespace{"stocks": mine}
	added := AddNamespaces(namespaces)
	if len(added) != 3 || namespaces["stocks"] != mine {
		t.Fatalf("added %v, stocks %+v: want the other 3 added and stocks kept", added, namespaces["stocks"])
	}
	for _, name := range []string{"sports", "danmaku", "chat"} {
		if namespaces[name] == nil {
			t.Errorf("namespace %q missing", name)
		}
	}
}
