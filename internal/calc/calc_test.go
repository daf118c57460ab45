package calc

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/nexo-project/nexo/service"
)

const (
	maxI = math.MaxInt64
	minI = math.MinInt64
)

func TestIntOps(t *testing.T) {
	tests := []struct {
		name string
		op   func(a, b int64) (int64, error)
		a, b int64
		want int64
		err  error
	}{
		{"add", Add, 2, 3, 5, nil},
		{"add negative", Add, -2, -3, -5, nil},
		{"add max", Add, maxI, 0, maxI, nil},
		{"add overflow", Add, maxI, 1, 0, ErrOverflow},
		{"add underflow", Add, minI, -1, 0, ErrOverflow},
		{"add min+max", Add, minI, maxI, -1, nil},
		{"sub", Sub, 2, 3, -1, nil},
		{"sub overflow", Sub, minI, 1, 0, ErrOverflow},
		{"sub overflow 2", Sub, maxI, -1, 0, ErrOverflow},
		{"sub 0-min", Sub, 0, minI, 0, ErrOverflow},
		{"sub -1-min", Sub, -1, minI, maxI, nil},
		{"mul", Mul, -4, 5, -20, nil},
		{"mul zero", Mul, 0, minI, 0, nil},
		{"mul min*-1", Mul, minI, -1, 0, ErrOverflow},
		{"mul -1*min", Mul, -1, minI, 0, ErrOverflow},
		{"mul min*1", Mul, minI, 1, minI, nil},
		{"mul overflow", Mul, 1 << 32, 1 << 31, 0, ErrOverflow},
		{"mul fits", Mul, 1 << 31, 1 << 31, 1 << 62, nil},
		{"mul max*max", Mul, maxI, maxI, 0, ErrOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.op(tt.a, tt.b)
			if !errors.Is(err, tt.err) || (err == nil && got != tt.want) {
				t.Errorf("(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestDiv(t *testing.T) {
	tests := []struct {
		a, b int64
		want float64
		err  error
	}{
		{7, 2, 3.5, nil},
		{-7, 2, -3.5, nil},
		{1, 3, 1.0 / 3, nil},
		{0, -5, 0, nil},
		{minI, -1, 9223372036854775808, nil},
		{1, 0, 0, ErrDivideByZero},
		{0, 0, 0, ErrDivideByZero},
	}
	for _, tt := range tests {
		got, err := Div(tt.a, tt.b)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Div(%d, %d) = %v, %v; want %v, %v", tt.a, tt.b, got, err, tt.want, tt.err)
		}
		if err == nil && math.Signbit(got) != (tt.want < 0) {
			t.Errorf("Div(%d, %d) = %v has the wrong sign (never -0)", tt.a, tt.b, got)
		}
	}
}

// TestAgainstBig checks the int64 operations against math/big on random
// operands, biased towards the edges where overflow lives.
func TestAgainstBig(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	edge := []int64{0, 1, -1, 2, -2, maxI, minI, maxI - 1, minI + 1, 1 << 32, -(1 << 32), 3037000499, 3037000500, -3037000500}
	pick := func() int64 {
		switch r.IntN(3) {
		case 0:
			return edge[r.IntN(len(edge))]
		case 1:
			return int64(r.Uint64())
		}
		return r.Int64N(1<<33) - 1<<32
	}
	ops := []struct {
		name string
		f    func(a, b int64) (int64, error)
		ref  func(z, a, b *big.Int) *big.Int
	}{
		{"add", Add, (*big.Int).Add}, {"sub", Sub, (*big.Int).Sub}, {"mul", Mul, (*big.Int).Mul},
	}
	for i := 0; i < 200000; i++ {
		a, b := pick(), pick()
		for _, op := range ops {
			want := op.ref(new(big.Int), big.NewInt(a), big.NewInt(b))
			got, err := op.f(a, b)
			if fits := want.IsInt64(); fits != (err == nil) || (fits && got != want.Int64()) {
				t.Fatalf("%s(%d, %d) = %d, %v; exact result %v", op.name, a, b, got, err, want)
			}
		}
	}
}

func TestMethodsPayloads(t *testing.T) {
	byName := map[string]service.Method{}
	for _, m := range Methods() {
		if !m.Inline || !m.Idempotent {
			t.Errorf("%s should be inline and idempotent", m.Name)
		}
		byName[m.Name] = m
	}
	call := func(name string, payload []byte) ([]byte, error) {
		return byName[name].Handler(context.Background(), service.Request{Payload: payload}, nil)
	}
	out, err := call("math.sub", AppendOperands(nil, 2, 5))
	if err != nil || int64(binary.BigEndian.Uint64(out)) != -3 {
		t.Errorf("math.sub = % x, %v", out, err)
	}
	out, err = call("math.div", AppendOperands(nil, 7, 2))
	if err != nil || math.Float64frombits(binary.BigEndian.Uint64(out)) != 3.5 {
		t.Errorf("math.div = % x, %v", out, err)
	}
	for _, p := range [][]byte{nil, make([]byte, 15), make([]byte, 17)} {
		for name := range byName {
			if _, err := call(name, p); !errors.Is(err, service.ErrBadPayload) {
				t.Errorf("%s with %d bytes: %v, want ErrBadPayload", name, len(p), err)
			}
		}
	}
}

// FuzzMath checks every math method against a math/big reference on
// arbitrary operands.
func FuzzMath(f *testing.F) {
	f.Add(int64(maxI), int64(1))
	f.Add(int64(minI), int64(-1))
	f.Add(int64(7), int64(0))
	f.Fuzz(func(t *testing.T, a, b int64) {
		for _, c := range []struct {
			f   func(a, b int64) (int64, error)
			ref func(z, a, b *big.Int) *big.Int
		}{{Add, (*big.Int).Add}, {Sub, (*big.Int).Sub}, {Mul, (*big.Int).Mul}} {
			want := c.ref(new(big.Int), big.NewInt(a), big.NewInt(b))
			got, err := c.f(a, b)
			if want.IsInt64() != (err == nil) || (err == nil && got != want.Int64()) {
				t.Fatalf("(%d, %d) = %d, %v; exact %v", a, b, got, err, want)
			}
		}
		q, err := Div(a, b)
		if (b == 0) != errors.Is(err, ErrDivideByZero) || (b != 0 && (q != float64(a)/float64(b) || (q == 0 && math.Signbit(q)))) {
			t.Fatalf("Div(%d, %d) = %v, %v", a, b, q, err)
		}
	})
}

// FuzzIntPair holds the codec's fast path for [a, b] to encoding/json:
// params it takes are a JSON array of two integers that encoding/json
// reads to the same operands.
func FuzzIntPair(f *testing.F) {
	for _, s := range []string{`[1,2]`, ` [ -9223372036854775808 , 9223372036854775807 ] `, `[01,2]`, `[1,2,3]`, `[+1,2]`,
		"[\v1,2]", `[1.0,2]`, `[1e3,2]`, `[-0,0]`, `[9223372036854775808,1]`, `["1",2]`, `[1,[2]]`, `[,]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, params []byte) {
		a, b, ok := intPair(params)
		if !ok {
			return
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(params, &raw); err != nil || len(raw) != 2 {
			t.Fatalf("intPair took %q, which encoding/json reads as %d values (%v)", params, len(raw), err)
		}
		x, errX := jsonInt(raw[0])
		y, errY := jsonInt(raw[1])
		if errX != nil || errY != nil || x != a || y != b {
			t.Fatalf("intPair(%q) = %d, %d; encoding/json and jsonInt: %d, %d (%v, %v)", params, a, b, x, y, errX, errY)
		}
	})
}
