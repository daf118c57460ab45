//go:build !nonats

package cli

import (
	"log/slog"

	"github.com/nexo-project/nexo/internal/natsembed"
)

// startEmbeddedNATS runs a NATS server in this process (--nats-embedded).
// It is built in by default, so that one binary runs a whole cluster on
// one machine; -tags nonats leaves it out for a slimmer binary.
func startEmbeddedNATS(addr string, log *slog.Logger) (url, listen string, stop func(), err error) {
	ns, err := natsembed.Start(addr, log)
	if err != nil {
		return "", "", nil, err
	}
	return ns.URL(), ns.Addr().String(), ns.Stop, nil
}

// natsServerBuilt says whether --nats-embedded works in this binary.
const natsServerBuilt = true
