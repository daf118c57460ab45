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
