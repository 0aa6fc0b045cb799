package api

import (
	"bytes"
	"encoding/json"
)

// parsePublish reads the usual publish body, {"channel":"name","data":V}
// in that order, without reflection: encoding/json was about half of the
// publish handler's CPU. Anything else (other keys, another order, case
// variants of the keys, escapes or non-ASCII in the name, V not one JSON
// value) reports false and goes to decodeJSON, so that this only accepts
// bodies that json.Unmarshal decodes to the same request. Like
// encoding/json, it copies what it keeps out of body.
func parsePublish(body []byte, req *publishRequest) bool {
	p := trimJSONSpace(body)
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return false
	}
	p = p[1 : len(p)-1]
	var ok bool
	for _, tok := range []string{`"channel"`, ":", `"`} {
		if p, ok = cutToken(p, tok); !ok {
			return false
		}
	}
	end := bytes.IndexByte(p, '"')
	if end < 0 {
		return false
	}
	for _, c := range p[:end] {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	name := p[:end]
	p = p[end+1:]
	for _, tok := range []string{",", `"data"`, ":"} {
		if p, ok = cutToken(p, tok); !ok {
			return false
		}
	}
	data := trimJSONSpace(p)
	if !json.Valid(data) {
		return false
	}
	*req = publishRequest{Channel: string(name), Data: bytes.Clone(data)}
	return true
}

// cutToken skips JSON whitespace and then tok.
func cutToken(p []byte, tok string) ([]byte, bool) {
	for len(p) > 0 && isJSONSpace(p[0]) {
		p = p[1:]
	}
	if !bytes.HasPrefix(p, []byte(tok)) {
		return p, false
	}
	return p[len(tok):], true
}

// trimJSONSpace trims JSON's four whitespace bytes (bytes.TrimSpace also
// trims others, which JSON does not allow).
func trimJSONSpace(p []byte) []byte {
	for len(p) > 0 && isJSONSpace(p[0]) {
		p = p[1:]
	}
	for len(p) > 0 && isJSONSpace(p[len(p)-1]) {
		p = p[:len(p)-1]
	}
	return p
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
