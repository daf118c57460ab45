package calc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/nexo-project/nexo/internal/service"
)

// maxSafe is the largest integer magnitude a JSON number carries exactly
// in every client (2^53): larger params are refused, never rounded.
const maxSafe = 1 << 53

// jsonCodec makes math.* callable with params [a, b] of JSON integers.
// Integer results are JSON integers, quotients JSON numbers.
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
				v, err := safeInt(r)
				if err != nil {
					return dst, err
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
				return strconv.AppendFloat(dst, math.Float64frombits(v), 'g', -1, 64), nil
			}
			return strconv.AppendInt(dst, int64(v), 10), nil
		},
	}
}

// safeInt parses a JSON integer within ±2^53.
func safeInt(r json.RawMessage) (int64, error) {
	r = bytes.TrimSpace(r)
	v, err := strconv.ParseInt(string(r), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s is not an integer within ±2^53", service.ErrBadParams, r)
	}
	if v > maxSafe || v < -maxSafe {
		return 0, fmt.Errorf("%w: %s is beyond ±2^53 and would be rounded", service.ErrBadParams, r)
	}
	return v, nil
}
