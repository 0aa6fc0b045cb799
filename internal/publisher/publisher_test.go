package publisher

import (
	"testing"
)

func TestData(t *testing.T) {
	for in, want := range map[string]string{
		"42": "42", " true ": "true", `{"a":1}`: `{"a":1}`, `"quoted"`: `"quoted"`,
		"hello world": `"hello world"`, "{broken": `"{broken"`, "": `""`,
	} {
		if got := string(Data(in)); got != want {
			t.Errorf("Data(%q) = %s, want %s", in, got, want)
		}
	}
}
