package recent

import (
	"fmt"
	"testing"
)

func TestSetForgetsTheOldest(t *testing.T) {
	s := New(3)
	for _, k := range []string{"a", "b", "c"} {
		if !s.Add(k) {
			t.Fatalf("Add(%q) = false on a new key", k)
		}
	}
	if s.Add("b") {
		t.Error("Add of a key already there = true")
	}
	s.Add("d") // forgets a
	if s.Has("a") || !s.Has("b") || !s.Has("c") || !s.Has("d") || s.Len() != 3 {
		t.Errorf("after d: a %v b %v c %v d %v, len %d", s.Has("a"), s.Has("b"), s.Has("c"), s.Has("d"), s.Len())
	}
}

func TestSetRemove(t *testing.T) {
	s := New(2)
	s.Add("a")
	s.Add("b")
	s.Remove("a", "zz")
	if s.Has("a") || s.Len() != 1 {
		t.Fatalf("after Remove: has a %v, len %d", s.Has("a"), s.Len())
	}
	// The freed place must not make a later key forget a newer one.
	s.Add("a")
	s.Add("c")
	if !s.Has("c") || s.Len() != 2 {
		t.Errorf("len %d, has c %v", s.Len(), s.Has("c"))
	}
	for i := range 100 {
		s.Add(fmt.Sprint(i))
	}
	if s.Len() != 2 || !s.Has("99") || !s.Has("98") {
		t.Errorf("after 100 adds: len %d", s.Len())
	}
}
