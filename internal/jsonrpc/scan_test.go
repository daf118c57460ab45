package jsonrpc

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCountElements(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
	}{
		{`[]`, 0},
		{` [ ] `, 0},
		{`{}`, 0},
		{`[1]`, 1},
		{`[1,2,3]`, 3},
		{`[ "a,b", "c\"],[" ]`, 2},
		{`[[1,2],{"a":[3,4]},"x"]`, 3},
		{`{"a":1,"b":[1,2,3],"c":{"d":","}}`, 3},
		{`["\\",1]`, 2},
		{`1`, 0},
		{`"[1,2]"`, 0},
		{`[1,2`, 2}, // malformed: counted as far as it goes
	} {
		if got := countElements([]byte(tt.in), 100); got != tt.want {
			t.Errorf("countElements(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
	// It stops once over the limit, without reading the rest.
	big := "[" + strings.Repeat("1,", 1<<20) + "1]"
	if got := countElements([]byte(big), 1000); got != 1001 {
		t.Errorf("over the limit: %d, want 1001", got)
	}
}

// FuzzCountElements: on valid JSON, the scan agrees with the decoder.
func FuzzCountElements(f *testing.F) {
	for _, s := range []string{`[]`, `[1,"a",[2,3],{"b":"]"}]`, `{"a":1,"b":"\"}"}`, `"x"`, `[1,`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := countElements(b, 1<<30)
		if !json.Valid(b) {
			return
		}
		var arr []json.RawMessage
		if json.Unmarshal(b, &arr) == nil && arr != nil {
			if got != len(arr) {
				t.Fatalf("%q: counted %d, decoded %d", b, got, len(arr))
			}
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) == nil && obj != nil {
			// Duplicate keys decode once but are members each.
			if got < len(obj) {
				t.Fatalf("%q: counted %d, decoded %d members", b, got, len(obj))
			}
			return
		}
		if got != 0 {
			t.Fatalf("%q: counted %d in a scalar", b, got)
		}
	})
}
