package wire

import (
	"fmt"
	"strconv"
	"strings"
)

// EncodeModel turns a model name into one subject token. It is reversible
// (DecodeModel) and readable: bytes that a subject token cannot hold
// ('.', '*', '>', '%', spaces and control characters) become %XX with two
// upper-case hex digits, so "llama3.2:3b" becomes "llama3%2E2:3b".
func EncodeModel(model string) string {
	var b strings.Builder
	for i := 0; i < len(model); i++ {
		c := model[i]
		if c == '.' || c == '*' || c == '>' || c == '%' || c <= ' ' || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// DecodeModel reverses EncodeModel. It returns an error for a malformed
// escape.
func DecodeModel(token string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(token); i++ {
		c := token[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(token) {
			return "", fmt.Errorf("model token %q: truncated escape", token)
		}
		v, err := strconv.ParseUint(token[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("model token %q: bad escape %q", token, token[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}
