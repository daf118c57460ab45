package calc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"

	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// PayloadLen is the size of every math request payload: a and b, int64
// big-endian.
const PayloadLen = 16

// Methods returns the math service's methods.
func Methods() []service.Method {
	return []service.Method{
		intMethod("math.add", "a + b, int64, OVERFLOW when it does not fit", Add,
			example(`[2,3]`, `5`), example(`[9223372036854775807,1]`, "OVERFLOW")),
		intMethod("math.sub", "a - b, int64, OVERFLOW when it does not fit", Sub,
			example(`[2,3]`, `-1`), example(`[-9223372036854775808,1]`, "OVERFLOW")),
		intMethod("math.mul", "a * b, int64, OVERFLOW when it does not fit", Mul,
			example(`[9007199254740991,3]`, `27021597764222973`), example(`[4294967296,2147483648]`, "OVERFLOW")),
		{
			Name: "math.div", Summary: "a / b as float64, DIVISION_BY_ZERO when b is 0",
			Inline: true, Idempotent: true, JSON: jsonCodec(true),
			Desc: service.Description{
				Params: operandsSchema, Result: json.RawMessage(`{"type":"number","description":"a / b, the float64 nearest the quotient"}`),
				Errors: []wire.Code{wire.CodeDivisionByZero, wire.CodeBadPayload},
				Binary: "a, b: big-endian int64 each (16 bytes) → a / b: big-endian IEEE 754 float64 (8 bytes)",
				Examples: []service.Example{
					{Params: json.RawMessage(`[7,2]`), Result: json.RawMessage(`3.5`)},
					{Params: json.RawMessage(`[-9223372036854775808,-1]`), Result: json.RawMessage(`9.223372036854776e+18`)},
					{Params: json.RawMessage(`[1,0]`), Error: "DIVISION_BY_ZERO"},
				},
			},
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

// operandsSchema is the JSON form of every math method's params: [a, b],
// two int64 integers, read exactly.
var operandsSchema = json.RawMessage(`{"type":"array","prefixItems":[{"title":"a",` + int64Schema[1:] + `,{"title":"b",` + int64Schema[1:] +
	`],"minItems":2,"maxItems":2,"items":false,"description":"[a, b]"}`)

// int64Schema is a JSON integer within int64.
const int64Schema = `{"type":"integer","minimum":-9223372036854775808,"maximum":9223372036854775807}`

// example is a call of a math method: its params, and its result or, when
// result is an error's name, that error.
func example(params, result string) service.Example {
	if result == "OVERFLOW" {
		return service.Example{Params: json.RawMessage(params), Error: result}
	}
	return service.Example{Params: json.RawMessage(params), Result: json.RawMessage(result)}
}

func intMethod(name, summary string, op func(a, b int64) (int64, error), examples ...service.Example) service.Method {
	return service.Method{
		Name: name, Summary: summary, Inline: true, Idempotent: true, JSON: jsonCodec(false),
		Desc: service.Description{
			Params: operandsSchema, Result: json.RawMessage(int64Schema),
			Errors:   []wire.Code{wire.CodeOverflow, wire.CodeBadPayload},
			Binary:   "a, b: big-endian int64 each (16 bytes) → big-endian int64 (8 bytes)",
			Examples: examples,
		},
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
