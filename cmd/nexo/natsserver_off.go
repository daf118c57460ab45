//go:build !natsserver

package main

import "log/slog"

// startEmbeddedNATS explains how to get --nats-embedded: this binary was
// built without the NATS server, which would nearly double its size.
func startEmbeddedNATS(string, *slog.Logger) (url, listen string, stop func(), err error) {
	return "", "", nil, usageError{"--nats-embedded: this nexo was built without the NATS server; " +
		"build it with 'go build -tags natsserver ./cmd/nexo', or run nats-server and give --nats"}
}

// natsServerBuilt says whether --nats-embedded works in this binary.
const natsServerBuilt = false
