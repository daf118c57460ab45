// Package faults holds nexo's fault-injection and soak tests: peers that
// stop (SIGSTOP) or whose packets vanish (nftables drop rules in a network
// namespace), a thousand connections that reset, half-open or close in
// the middle of a frame, a client process killed in the middle of a
// pipeline, file descriptors running out, and a bounded mixed load with
// connection churn. Each test states the guarantee it proves;
// docs/reliability.md lists them. The package has no code of its own.
package faults
