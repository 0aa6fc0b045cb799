package push

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// checkNumericDates refuses a token whose exp, nbf or iat is not a JSON
// number. RFC 7519 §2 defines NumericDate as a number; jwt/v5 also takes
// a string holding one ("exp":"1900000000"), so a token minted by a
// signer that writes dates as strings would be accepted here and refused
// by stricter verifiers, and the other way round: one rule, the RFC's.
// The token's signature was checked first: this reads trusted bytes.
func checkNumericDates(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("token is not three parts")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return fmt.Errorf("claims: %v", err)
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return fmt.Errorf("claims: %v", err)
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := claims[name]
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		if len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
			return fmt.Errorf("%s must be a JSON number (RFC 7519 NumericDate), not %.20s", name, v)
		}
	}
	return nil
}
