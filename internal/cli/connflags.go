package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/certs"
	"github.com/nexo-project/nexo/wire"
)

// connFlags are the flags of every command that connects to the native
// door as a client: the token and the TLS settings.
type connFlags struct {
	token                  *string
	tls                    *bool
	ca, cert, key, srvName *string
}

func addConnFlags(fs *pflag.FlagSet) *connFlags {
	return &connFlags{
		token:   fs.String("token", "", "`token` to present in HELLO (prefer NEXO_TOKEN)"),
		tls:     fs.Bool("tls", false, "connect over TLS, verifying the server against the system's roots (implied by --tls-ca)"),
		ca:      fs.String("tls-ca", "", "PEM CA `file` that signed the server's certificate"),
		cert:    fs.String("tls-cert", "", "PEM client certificate `file`, for servers that require one (mutual TLS)"),
		key:     fs.String("tls-key", "", "PEM private key `file` of --tls-cert"),
		srvName: fs.String("tls-server-name", "", "`name` to verify the server's certificate against (default: the host of --addr)"),
	}
}

// connFlagsOf reads the connection flags addConnFlags defined on fs.
func connFlagsOf(fs *pflag.FlagSet) *connFlags {
	str := func(name string) *string { v, _ := fs.GetString(name); return &v }
	tls, _ := fs.GetBool("tls")
	return &connFlags{token: str("token"), tls: &tls, ca: str("tls-ca"), cert: str("tls-cert"), key: str("tls-key"), srvName: str("tls-server-name")}
}

// options returns the client options for a connection named name.
func (f *connFlags) options(name string) (*client.Options, error) {
	o := &client.Options{Name: name, Token: *f.token}
	if *f.tls || *f.ca != "" || *f.cert != "" || *f.key != "" || *f.srvName != "" {
		cfg, err := certs.ClientConfig(*f.ca, *f.cert, *f.key, *f.srvName)
		if err != nil {
			return nil, usageError{err.Error()}
		}
		o.TLS = cfg
	}
	return o, nil
}

// dialHint adds to a refused connection the likely reason: no server
// listens there.
func dialHint(err error) error {
	if we, ok := errors.AsType[*wire.Error](err); ok {
		return describeError(we) // the server refused the handshake, and said why
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return fmt.Errorf("%w (the server does not speak TLS at this address: leave out --tls and --tls-ca, or give the TLS door's address)", err)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (is `nexo serve` running? its native door listens on 127.0.0.1:7070 by default)", err)
	}
	return err
}

// forAdmins explains a refusal of an admins-only method: the server
// answers UNKNOWN_METHOD to others, so as not to tell them it exists.
func forAdmins(method string, err error) error {
	if we, ok := errors.AsType[*wire.Error](err); ok && we.Code == wire.CodeUnknownMethod && strings.Contains(we.Msg, "not permitted") {
		return fmt.Errorf("%s was refused: it is for admins, that is callers on loopback when the server has no admin token, and callers that give the admin token (--token or NEXO_TOKEN)", method)
	}
	return describeError(err)
}

// checkAddr refuses an address a client cannot dial (no port, say) as a
// mistake in the command line.
func checkAddr(flag, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return usageError{fmt.Sprintf("%s %q: want HOST:PORT (127.0.0.1:7070)", flag, addr)}
	}
	return nil
}

// clientFlags are the flags of a command that makes a few calls and ends
// (call, describe, kick): the native door's address, a time limit, and
// the token and TLS settings.
type clientFlags struct {
	addr    *string
	timeout *time.Duration
	conn    *connFlags
}

func addClientFlags(fs *pflag.FlagSet) clientFlags {
	return clientFlags{
		addr:    fs.String("addr", "127.0.0.1:7070", "server `address` (native door)"),
		timeout: fs.Duration("timeout", 10*time.Second, "give up after this long"),
		conn:    addConnFlags(fs),
	}
}

// dial connects as name. The context it returns, bounded by --timeout,
// is for the calls that follow; done closes the connection and ends it.
func (f clientFlags) dial(ctx context.Context, name string) (c *client.Client, callCtx context.Context, done func(), err error) {
	if err := checkAddr("--addr", *f.addr); err != nil {
		return nil, nil, nil, err
	}
	opts, err := f.conn.options(name)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	if c, err = client.Dial(ctx, *f.addr, opts); err != nil {
		cancel()
		return nil, nil, nil, dialHint(err)
	}
	return c, ctx, func() { c.Close(); cancel() }, nil
}
