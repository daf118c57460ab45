package calc

import (
	"context"
	"encoding/binary"
	"math"

	"github.com/nexo-project/nexo/internal/service"
)

// PayloadLen is the size of every math request payload: a and b, int64
// big-endian.
const PayloadLen = 16

// Methods returns the math service's methods.
func Methods() []service.Method {
	return []service.Method{
		intMethod("math.add", "a + b, int64, OVERFLOW when it does not fit", Add),
		intMethod("math.sub", "a - b, int64, OVERFLOW when it does not fit", Sub),
		intMethod("math.mul", "a * b, int64, OVERFLOW when it does not fit", Mul),
		{
			Name: "math.div", Summary: "a / b as float64, DIVISION_BY_ZERO when b is 0",
			Inline: true, Idempotent: true, JSON: jsonCodec(true),
			Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
				a, b, err := operands(req.Payload)
				if err != nil {
					return dst, err
				}
				q, err := Div(a, b)
				if err != nil {
					return dst, err
				}
				return binary.BigEndian.AppendUint64(dst, math.Float64bits(q)), nil
			},
		},
	}
}

func intMethod(name, summary string, op func(a, b int64) (int64, error)) service.Method {
	return service.Method{
		Name: name, Summary: summary, Inline: true, Idempotent: true, JSON: jsonCodec(false),
		Handler: func(_ context.Context, req service.Request, dst []byte) ([]byte, error) {
			a, b, err := operands(req.Payload)
			if err != nil {
				return dst, err
			}
			r, err := op(a, b)
			if err != nil {
				return dst, err
			}
			return binary.BigEndian.AppendUint64(dst, uint64(r)), nil
		},
	}
}

func operands(p []byte) (a, b int64, err error) {
	if len(p) != PayloadLen {
		return 0, 0, service.ErrBadPayload
	}
	return int64(binary.BigEndian.Uint64(p)), int64(binary.BigEndian.Uint64(p[8:])), nil
}

// AppendOperands appends the payload of a math request.
func AppendOperands(dst []byte, a, b int64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(a))
	return binary.BigEndian.AppendUint64(dst, uint64(b))
}
