package calc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/nexo-project/nexo/service"
)

// jsonCodec makes math.* callable with params [a, b] of JSON integers,
// every int64 exactly: JSON text carries any integer, and the operands are
// read from it, never through a float64. Integer results are JSON
// integers, every int64 exactly; quotients are JSON numbers, the shortest
// text that reads back as the same float64 (3.5, 9.223372036854776e+18).
func jsonCodec(quotient bool) *service.JSONCodec {
	return &service.JSONCodec{
		MaxParams: 2,
		Params: func(params, dst []byte) ([]byte, error) {
			if a, b, ok := intPair(params); ok {
				return AppendOperands(dst, a, b), nil
			}
			var raw []json.RawMessage
			if err := json.Unmarshal(params, &raw); err != nil || len(raw) != 2 {
				return dst, fmt.Errorf("%w: want [a, b], two integers", service.ErrBadParams)
			}
			var ab [2]int64
			for i, r := range raw {
				v, err := jsonInt(r)
				if err != nil {
					return dst, fmt.Errorf("%w: params[%d]: %w", service.ErrBadParams, i, err)
				}
				ab[i] = v
			}
			return AppendOperands(dst, ab[0], ab[1]), nil
		},
		Result: func(payload, dst []byte) ([]byte, error) {
			if len(payload) != 8 {
				return dst, fmt.Errorf("calc: response of %d bytes", len(payload))
			}
			v := binary.BigEndian.Uint64(payload)
			if quotient {
				return AppendQuotient(dst, math.Float64frombits(v)), nil
			}
			return strconv.AppendInt(dst, int64(v), 10), nil
		},
	}
}

// AppendQuotient appends a quotient as text: the shortest digits that read
// back as the same float64, in plain decimal while that is exact and short
// (3.5, 1000000, 0.000001), with an exponent from 2^53 up, where plain
// decimal would invent digits (9.223372036854776e+18, not
// 9223372036854776000), and below 1e-6 (1e-07).
// -0 is 0.
func AppendQuotient(dst []byte, q float64) []byte {
	if q == 0 {
		q = 0
	}
	if a := math.Abs(q); a >= 1<<53 || (a != 0 && a < 1e-6) {
		return strconv.AppendFloat(dst, q, 'e', -1, 64)
	}
	return strconv.AppendFloat(dst, q, 'f', -1, 64)
}

// intPair reads params of the form [a, b], two JSON integers within
// int64, without encoding/json; ok is false for anything else, which
// the codec then reads with encoding/json to say what is wrong.
func intPair(params []byte) (a, b int64, ok bool) {
	params = trimSpace(params)
	if len(params) < 5 || params[0] != '[' || params[len(params)-1] != ']' {
		return 0, 0, false
	}
	x, y, found := bytes.Cut(params[1:len(params)-1], []byte{','})
	if !found {
		return 0, 0, false
	}
	a, okA := plainInt(trimSpace(x))
	b, okB := plainInt(trimSpace(y))
	return a, b, okA && okB
}

// trimSpace cuts JSON's white space (not all of Unicode's) from both ends.
func trimSpace(b []byte) []byte {
	return bytes.TrimFunc(b, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// plainInt parses a JSON integer, -?(0|[1-9][0-9]*), within int64.
func plainInt(t []byte) (int64, bool) {
	d := t
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) == 0 || (d[0] == '0' && len(d) > 1) {
		return 0, false
	}
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(string(t), 10, 64)
	return v, err == nil
}

// jsonInt parses a JSON integer within int64, exactly: 1.5, 1e3, "1" and
// 9223372036854775808 are refused, never rounded.
func jsonInt(r json.RawMessage) (int64, error) {
	r = bytes.TrimSpace(r)
	v, err := strconv.ParseInt(string(r), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("%.40s is beyond int64", r)
	}
	if err != nil {
		return 0, fmt.Errorf("%.40s is not an integer", r)
	}
	return v, nil
}
