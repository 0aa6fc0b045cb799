package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestPublishResultJSON: the hand-written answer is byte for byte what
// c.JSON (a json.Encoder) writes, escapes included.
func TestPublishResultJSON(t *testing.T) {
	for _, r := range []publishResult{
		{Channel: "news", Epoch: "2ebcb7cff5c6", Offset: 1},
		{Channel: "news", Epoch: "2ebcb7cff5c6", Offset: 7, Duplicate: true},
		{Channel: "a:b@c=d-e.f_g", Epoch: "", Offset: 1<<64 - 1},
		{Channel: "<&>\"\\", Epoch: "caf\xc3\xa9 \x00\x7f\xff\u2028", Offset: 0},
	} {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(r); err != nil {
			t.Fatal(err)
		}
		if got := r.appendJSON(nil); string(got) != want.String() {
			t.Errorf("appendJSON %q, json.Encoder %q", got, want.String())
		}
	}
}
