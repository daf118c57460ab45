package backplane

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/nexo-project/nexo/wire"
)

// BatchHeader marks a message that carries several requests (or their
// answers) of one method, with their count. A gateway batches the requests
// of a method that arrive together (one client's pipelined burst, or many
// clients at once), so that one NATS message carries many of them; a single
// request travels alone, in the plain format any NATS client can send.
//
// A request batch is, per request: the deadline as big-endian uint64 Unix
// milliseconds (0: none), the payload length as uint32, the payload. An
// answer batch holds, per request and in the same order: the code as
// uint16 (0: success), the length as uint32, then the response payload,
// or the error message.
const BatchHeader = "Nexo-Batch"

// Sizes of the batch entry headers.
const (
	reqEntryHeader  = 8 + 4
	respEntryHeader = 2 + 4
)

// maxBatch bounds the requests in one batch message.
const maxBatch = 1024

var errBadBatch = errors.New("backplane: malformed batch")

// appendRequestEntry appends one request to a request batch.
func appendRequestEntry(b []byte, deadlineMS int64, payload []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(deadlineMS))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// nextRequestEntry splits the first request off a request batch.
func nextRequestEntry(b []byte) (deadlineMS int64, payload, rest []byte, err error) {
	if len(b) < reqEntryHeader {
		return 0, nil, nil, errBadBatch
	}
	deadlineMS = int64(binary.BigEndian.Uint64(b))
	n := binary.BigEndian.Uint32(b[8:])
	if uint64(n) > uint64(len(b)-reqEntryHeader) {
		return 0, nil, nil, errBadBatch
	}
	end := reqEntryHeader + int(n)
	return deadlineMS, b[reqEntryHeader:end:end], b[end:], nil
}

// appendResponseEntry appends one answer to an answer batch: payload for
// code 0, else the error message.
func appendResponseEntry(b []byte, code wire.Code, body []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// nextResponseEntry splits the first answer off an answer batch.
func nextResponseEntry(b []byte) (code wire.Code, body, rest []byte, err error) {
	if len(b) < respEntryHeader {
		return 0, nil, nil, errBadBatch
	}
	code = wire.Code(binary.BigEndian.Uint16(b))
	n := binary.BigEndian.Uint32(b[2:])
	if uint64(n) > uint64(len(b)-respEntryHeader) {
		return 0, nil, nil, errBadBatch
	}
	end := respEntryHeader + int(n)
	return code, b[respEntryHeader:end:end], b[end:], nil
}

// batchCount reads the BatchHeader value: 0 when absent, -1 when invalid.
func batchCount(v string) int {
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxBatch {
		return -1
	}
	return n
}
