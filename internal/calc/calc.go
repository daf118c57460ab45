// Package calc is the math service: int64 arithmetic whose overflow and
// division by zero are reported, never wrapped.
//
// The arithmetic is pure functions; methods.go adapts them to the wire
// payloads of math.add, math.sub, math.mul and math.div.
package calc

import (
	"math"

	"github.com/nexo-project/nexo/wire"
)

// Errors reported by the arithmetic. They carry their protocol code, so
// errors.Is(err, wire.CodeOverflow) also holds.
var (
	ErrOverflow     error = &wire.Error{Code: wire.CodeOverflow, Msg: "calc: integer overflow"}
	ErrDivideByZero error = &wire.Error{Code: wire.CodeDivisionByZero, Msg: "calc: division by zero"}
)

// Add returns a+b, or ErrOverflow when it does not fit an int64.
func Add(a, b int64) (int64, error) {
	s := a + b
	// Overflow happened when both operands have the sign that s lacks.
	if (a^s)&(b^s) < 0 {
		return 0, ErrOverflow
	}
	return s, nil
}

// Sub returns a-b, or ErrOverflow when it does not fit an int64.
func Sub(a, b int64) (int64, error) {
	d := a - b
	// Overflow happened when a and b differ in sign and d's sign is not a's.
	if (a^b)&(a^d) < 0 {
		return 0, ErrOverflow
	}
	return d, nil
}

// Mul returns a*b, or ErrOverflow when it does not fit an int64.
func Mul(a, b int64) (int64, error) {
	if a == 0 || b == 0 {
		return 0, nil
	}
	p := a * b
	if (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) || p/b != a {
		return 0, ErrOverflow
	}
	return p, nil
}

// Div returns the IEEE-754 quotient float64(a) / float64(b), or
// ErrDivideByZero. A zero quotient is +0, never -0.
func Div(a, b int64) (float64, error) {
	if b == 0 {
		return 0, ErrDivideByZero
	}
	q := float64(a) / float64(b)
	if q == 0 {
		return 0, nil
	}
	return q, nil
}
