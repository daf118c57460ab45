//go:build nonats

package cli

import "log/slog"

// startEmbeddedNATS explains how to get --nats-embedded: this binary was
// built slim, with -tags nonats, without the NATS server.
func startEmbeddedNATS(string, *slog.Logger) (url, listen string, stop func(), err error) {
	return "", "", nil, usageError{"--nats-embedded: this nexo was built with -tags nonats, without the NATS server; " +
		"build it without that tag ('go build ./cmd/nexo'), or run nats-server and give --nats"}
}

// natsServerBuilt says whether --nats-embedded works in this binary.
const natsServerBuilt = false
