package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
)

// RunStore runs the broker.Store contract against s. Keys are prefixed
// with the test name so that runs on one server do not meet.
func RunStore(t *testing.T, s broker.Store) {
	ctx := context.Background()
	p := t.Name() + ":"
	if v, err := s.GetKey(ctx, p+"absent"); err != nil || v != nil {
		t.Fatalf("GetKey(absent) = %q, %v; want nil, nil", v, err)
	}
	if err := s.SetKey(ctx, p+"ban", []byte("spam"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetKey(ctx, p+"ban"); err != nil || string(v) != "spam" {
		t.Fatalf("GetKey = %q, %v", v, err)
	}
	if err := s.SetKey(ctx, p+"short", nil, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v, err := s.GetKey(ctx, p+"short"); err != nil || v == nil {
		t.Fatalf("an empty value reads as absent: %q, %v", v, err)
	}
	WaitUntil(t, WaitTimeout, func() error {
		if v, _ := s.GetKey(ctx, p+"short"); v != nil {
			return errString("key not expired yet")
		}
		return nil
	})

	set := p + "presence"
	if err := s.AddMembers(ctx, set, map[string][]byte{"a": []byte(`{"u":"a"}`), "b": []byte(`{}`)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMembers(ctx, set, map[string][]byte{"late": []byte(`1`)}, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m, err := s.Members(ctx, set)
	if err != nil || len(m) != 3 || string(m["a"]) != `{"u":"a"}` {
		t.Fatalf("Members = %q, %v", m, err)
	}
	WaitUntil(t, WaitTimeout, func() error {
		if m, _ := s.Members(ctx, set); len(m) != 2 || m["late"] != nil {
			return errString("late member not expired yet")
		}
		return nil
	})
	if err := s.RemoveMember(ctx, set, "a"); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Members(ctx, set); err != nil || len(m) != 1 || m["b"] == nil {
		t.Fatalf("after RemoveMember: %q, %v", m, err)
	}
	if m, err := s.Members(ctx, p+"empty"); err != nil || len(m) != 0 {
		t.Fatalf("empty set: %q, %v", m, err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
