package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"testing"

	"github.com/nexo-project/nexo/internal/vectors"
)

// nativeVector is one entry of testdata/vectors/native.json.
type nativeVector struct {
	Name     string `json:"name"`
	Hex      string `json:"hex"`
	Valid    bool   `json:"valid"`
	Error    string `json:"error"`
	MaxFrame int    `json:"max_frame"`
	Frame    struct {
		Type       string          `json:"type"`
		ID         uint32          `json:"id"`
		Flags      Flags           `json:"flags"`
		Method     string          `json:"method"`
		DeadlineMS *uint32         `json:"deadline_ms"`
		PayloadHex *string         `json:"payload_hex"`
		BodyHex    *string         `json:"body_hex"`
		Code       Code            `json:"code"`
		CodeName   string          `json:"code_name"`
		Message    string          `json:"message"`
		Topic      string          `json:"topic"`
		Reason     *string         `json:"reason"`
		JSON       json.RawMessage `json:"json"`
		Int        *int64          `json:"int"`
		Float      *float64        `json:"float"`
		MaxFrame   int             `json:"max_frame"`
	} `json:"frame"`
}

// TestNativeVectors decodes every shared conformance vector and, for the
// valid ones, re-encodes the decoded meaning with this package's encoders:
// both must match the bytes exactly.
func TestNativeVectors(t *testing.T) {
	for _, v := range vectors.Load[nativeVector](t, "native.json") {
		t.Run(v.Name, func(t *testing.T) {
			data, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			limit := max(v.MaxFrame, v.Frame.MaxFrame)
			f, err := NewReader(bytes.NewReader(data), limit).ReadFrame()
			if !v.Valid {
				want := error(io.ErrUnexpectedEOF)
				if v.Error != "TRUNCATED" {
					code, ok := ParseCode(v.Error)
					if !ok {
						t.Fatalf("unknown error %q in the vector", v.Error)
					}
					want = code
				}
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := v.Frame
			if f.Type.String() != m.Type || f.ID != m.ID || f.Flags != m.Flags {
				t.Fatalf("got %v id=%d flags=%d", f.Type, f.ID, f.Flags)
			}
			var enc []byte
			switch f.Type {
			case TypeHello, TypeWelcome:
				var got, want any
				if len(f.Body) > 0 {
					if err := json.Unmarshal(f.Body, &got); err != nil {
						t.Fatal(err)
					}
				} else {
					got = map[string]any{}
				}
				_ = json.Unmarshal(m.JSON, &want)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("json %v, want %v", got, want)
				}
				if f.Type == TypeHello {
					if _, err := ParseHello(f.Body); err != nil {
						t.Error(err)
					}
				}
				enc = AppendFrame(nil, f.Type, 0, 0, f.Body)
			case TypeRequest:
				req, err := ParseRequest(f)
				if err != nil {
					t.Fatal(err)
				}
				payload := mustHex(t, m.PayloadHex)
				if string(req.Method) != m.Method || !bytes.Equal(req.Payload, payload) || req.HasDeadline != (m.DeadlineMS != nil) {
					t.Fatalf("request %+v", req)
				}
				if m.DeadlineMS != nil {
					if req.Deadline != *m.DeadlineMS {
						t.Errorf("deadline %d", req.Deadline)
					}
					enc = AppendRequestDeadline(nil, f.ID, req.Deadline, m.Method, payload)
				} else {
					enc = AppendRequest(nil, f.ID, m.Method, payload)
				}
			case TypeResponse:
				payload := mustHex(t, m.PayloadHex)
				if !bytes.Equal(f.Body, payload) {
					t.Fatalf("payload % x", f.Body)
				}
				if m.Int != nil && int64(binary.BigEndian.Uint64(f.Body)) != *m.Int {
					t.Errorf("int %d", int64(binary.BigEndian.Uint64(f.Body)))
				}
				if m.Float != nil {
					q := math.Float64frombits(binary.BigEndian.Uint64(f.Body))
					if q != *m.Float || math.Signbit(q) != math.Signbit(*m.Float) {
						t.Errorf("float %v", q)
					}
				}
				enc = AppendResponse(nil, f.ID, payload)
			case TypeError:
				we, err := ParseError(f.Body)
				if err != nil || we.Code != m.Code || we.Code.String() != m.CodeName || we.Msg != m.Message {
					t.Fatalf("error %v, %v", we, err)
				}
				enc = AppendError(nil, f.ID, we.Code, we.Msg)
			case TypePing, TypePong:
				body := mustHex(t, m.BodyHex)
				if !bytes.Equal(f.Body, body) {
					t.Fatalf("body % x", f.Body)
				}
				enc = AppendFrame(nil, f.Type, 0, f.ID, body)
			case TypeEvent:
				topic, payload, err := ParseEvent(f.Body)
				if err != nil || string(topic) != m.Topic || !bytes.Equal(payload, mustHex(t, m.PayloadHex)) {
					t.Fatalf("event %q % x %v", topic, payload, err)
				}
				enc = AppendEvent(nil, m.Topic, payload)
			case TypeGoodbye:
				if m.Reason == nil || string(f.Body) != *m.Reason {
					t.Fatalf("reason %q", f.Body)
				}
				enc = AppendGoodbye(nil, *m.Reason)
			}
			if !bytes.Equal(enc, data) {
				t.Errorf("re-encoded % x\n        want % x", enc, data)
			}
		})
	}
}

func mustHex(t *testing.T, s *string) []byte {
	t.Helper()
	if s == nil {
		t.Fatal("vector lacks a hex field")
	}
	b, err := hex.DecodeString(*s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
