package jsonrpc

import (
	"bytes"
	"unicode/utf8"
)

// The fast path: a call in the form every client sends, and the answer a
// successful call gets, are read and written here in one pass over the
// bytes, without reflection or allocation. Anything else (a batch, a key
// other than the four of a call, a name or string with escapes, an error
// answer) is left to encoding/json, and the fast path's results are
// exactly encoding/json's wherever it takes a message (FuzzFastCall
// holds it to that).

// maxFastDepth is the deepest nesting the fast path reads; deeper params
// are left to encoding/json (which allows 10,000).
const maxFastDepth = 64

// parseFast reads msg, with no space around it, as one call: an object
// whose keys are only "jsonrpc" (the string "2.0"), "method" (a string
// without escapes), "params" (an array or an object) and "id" (a string,
// a number or null), each without escapes, method present. ok is false for
// anything else, valid or not: encoding/json then decides.
func parseFast(msg []byte) (req request, ok bool) {
	if len(msg) < 2 || msg[0] != '{' || msg[len(msg)-1] != '}' {
		return req, false
	}
	i := skipSpace(msg, 1)
	var version, method bool
	for i < len(msg) && msg[i] != '}' {
		if version || method || req.Params != nil || req.ID != nil { // not the first member
			if msg[i] != ',' {
				return req, false
			}
			i = skipSpace(msg, i+1)
		}
		key, end, ok := plainString(msg, i)
		if !ok {
			return req, false
		}
		i = skipSpace(msg, end)
		if i == len(msg) || msg[i] != ':' {
			return req, false
		}
		i = skipSpace(msg, i+1)
		switch string(key) {
		case "jsonrpc":
			s, end, ok := plainString(msg, i)
			if !ok || string(s) != "2.0" {
				return req, false
			}
			version, i = true, end
		case "method":
			s, end, ok := plainString(msg, i)
			if !ok || !utf8.Valid(s) {
				return req, false
			}
			req.Method, method, i = string(s), true, end
		case "params":
			if i == len(msg) || (msg[i] != '[' && msg[i] != '{') {
				return req, false
			}
			end, ok := skipValue(msg, i, 0)
			if !ok {
				return req, false
			}
			req.Params, i = msg[i:end:end], end
		case "id":
			end, ok := skipValue(msg, i, 0)
			if !ok || !validID(msg[i:end]) {
				return req, false
			}
			req.ID, i = msg[i:end:end], end
		default:
			return req, false
		}
		i = skipSpace(msg, i)
	}
	// The loop ends at a '}': the last byte only, since values are skipped
	// whole.
	return req, version && method && i == len(msg)-1
}

// plainString returns the contents of the JSON string at b[i], when it has
// neither escapes nor control characters, and the index after it.
func plainString(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipValue returns the index after the JSON value at b[i], checking its
// grammar as encoding/json does (strings may hold any bytes but control
// characters, and only JSON's escapes). ok is false for anything that is
// not one whole value, or nests deeper than maxFastDepth.
func skipValue(b []byte, i, depth int) (end int, ok bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '{' || c == '[':
		if depth == maxFastDepth {
			return 0, false
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == closer {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i = skipString(b, i); i < 0 {
					return 0, false
				}
				if i = skipSpace(b, i); i == len(b) || b[i] != ':' {
					return 0, false
				}
				i = skipSpace(b, i+1)
			}
			if i, ok = skipValue(b, i, depth+1); !ok {
				return 0, false
			}
			if i = skipSpace(b, i); i == len(b) {
				return 0, false
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case closer:
				return i + 1, true
			default:
				return 0, false
			}
		}
	case c == '"':
		i = skipString(b, i)
		return i, i >= 0
	case c == '-' || (c >= '0' && c <= '9'):
		i = skipNumber(b, i)
		return i, i >= 0
	case bytes.HasPrefix(b[i:], []byte("true")):
		return i + 4, true
	case bytes.HasPrefix(b[i:], []byte("false")):
		return i + 5, true
	case bytes.HasPrefix(b[i:], []byte("null")):
		return i + 4, true
	}
	return 0, false
}

// skipString returns the index after the JSON string at b[i], or -1.
func skipString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i == len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// skipNumber returns the index after the JSON number at b[i], or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// appendResult appends the answer to a call that succeeded, as
// encoding/json writes it: {"jsonrpc":"2.0","result":…,"id":…}. ok is
// false when encoding/json would write it otherwise (it compacts raw
// values and escapes <, > and & and U+2028/2029 in them) or refuse it
// (result is not one valid JSON value): the caller then marshals it.
func appendResult(dst, result, id []byte) ([]byte, bool) {
	if !writtenAsIs(result) || !writtenAsIs(id) {
		return dst, false
	}
	if end, ok := skipValue(result, 0, 0); !ok || end != len(result) {
		return dst, false
	}
	dst = append(dst, resultPrefix...)
	dst = append(dst, result...)
	dst = append(dst, `,"id":`...)
	dst = append(dst, id...)
	return append(dst, '}'), true
}

// writtenAsIs reports whether encoding/json writes a raw value exactly as
// it is: it has no white space to compact and nothing to escape for HTML
// (<, >, &, and U+2028 and U+2029, which begin with the byte 0xE2).
func writtenAsIs(raw []byte) bool {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r', '<', '>', '&', 0xE2:
			return false
		}
	}
	return true
}
