package jsonrpc

// countElements counts the top-level elements of a JSON array, or the
// members of a JSON object, by scanning b without decoding it: nothing is
// built, so a message is measured against its limits before any of it is
// allocated. It stops once it has counted more than limit. Anything that
// is not an array or an object counts 0; malformed JSON is counted as far
// as it goes, and left for the decoder to report.
func countElements(b []byte, limit int) int {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i == len(b) || (b[i] != '[' && b[i] != '{') {
		return 0
	}
	depth, n := 0, 0
	inString, escaped, value := false, false, false
	for ; i < len(b); i++ {
		c := b[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			if depth == 1 {
				value = true
			}
		case '[', '{':
			if depth == 1 {
				value = true
			}
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				if value {
					n++
				}
				return n
			}
		case ',':
			if depth == 1 {
				n++
				value = false
				if n > limit {
					return n
				}
			}
		case ' ', '\t', '\n', '\r':
		default:
			if depth == 1 {
				value = true
			}
		}
	}
	if value {
		n++
	}
	return n
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
