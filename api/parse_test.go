package api

import (
	"bytes"
	"reflect"
	"testing"
)

var publishBodies = []string{
	`{"channel":"bench","data":{"t":1,"n":2}}`,
	" \r\n\t{ \"channel\" : \"news\" ,\n \"data\" :\t[1, 2, {\"a\": \"b c\"}] }\n",
	`{"channel":"","data":1}`,
	`{"channel":"a:b@c=d-e.f_g","data":null}`,
	`{"channel":"x","data":"\u00e9\n"}`,
	`{"channel":"x","data":"caf` + "\xc3\xa9" + `"}`,
	`{"channel":"<&>","data":true}`,
	// For decodeJSON: other shapes, and bodies it must refuse or accept
	// as the Decoder does.
	`{"channel":"x","data":1,"data":2}`,
	`{"Channel":"x","DATA":1}`,
	`{"data":1,"channel":"x"}`,
	`{"channels":["a","b"],"data":1}`,
	`{"channel":"a\"b","data":1}`,
	`{"channel":"a\u0041","data":1}`,
	`{"channel":"caf` + "\xc3\xa9" + `","data":1}`,
	`{"channel":"x","data":}`,
	`{"channel":"x","data":1,}`,
	`{"channel":"x","data":1 2}`,
	`{"channel":"x","data":{"a":1}}}`,
	`{"channel":"x","data":{"a":1}} {}`,
	`{"channel":"x"}`,
	`{"channel":1,"data":1}`,
	`{"channel":"x","data":1`,
	"{\"channel\":\"x\",\"data\":1}\v",
	`[]`,
	``,
}

// TestParsePublishAgreesWithDecoder: whatever parsePublish accepts,
// decodeJSON decodes to the same request.
func TestParsePublishAgreesWithDecoder(t *testing.T) {
	accepted := 0
	for _, body := range publishBodies {
		if checkParsePublish(t, []byte(body)) {
			accepted++
		}
	}
	if accepted < 7 {
		t.Errorf("parsePublish accepted %d of the 7 usual bodies", accepted)
	}
}

func FuzzParsePublish(f *testing.F) {
	for _, body := range publishBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkParsePublish(t, body) })
}

func checkParsePublish(t *testing.T, body []byte) bool {
	t.Helper()
	var fast, slow publishRequest
	orig := bytes.Clone(body)
	if !parsePublish(body, &fast) {
		return false
	}
	if err := decodeJSON(body, &slow); err != nil {
		t.Fatalf("%q: parsePublish accepted it, decodeJSON: %v", body, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: parsePublish %+v, decodeJSON %+v", body, fast, slow)
	}
	// Nothing kept may point into the body (a pooled buffer); the
	// decoder's copy shows what the data was.
	clear(body)
	if !bytes.Equal(fast.Data, slow.Data) {
		t.Fatalf("%q: data shares the body's buffer", orig)
	}
	return true
}
