package top

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/backplane"
	"github.com/nexo-project/nexo/wire"
)

// ClientSource is the Source over nexo's native door: sys.clients,
// sys.cluster and sys.kick, all admins-only, on one connection. A
// connection that fails is dialled again at the next poll, so the view
// outlives a server that restarts.
type ClientSource struct {
	target string                                        // set at construction
	dial   func(context.Context) (*client.Client, error) // set at construction

	mu sync.Mutex
	c  *client.Client // guarded by mu; nil until dialled
	// notGateway is set when c's server answered sys.cluster with
	// UNKNOWN_METHOD: it is not asked again on that connection.
	notGateway bool // guarded by mu
}

// NewClientSource returns a Source that connects with dial. target names
// the server in the view ("127.0.0.1:7070").
func NewClientSource(target string, dial func(context.Context) (*client.Client, error)) *ClientSource {
	return &ClientSource{target: target, dial: dial}
}

// conn returns the connection, dialling one if there is none or it
// ended, and whether to ask the server for sys.cluster.
func (s *ClientSource) conn(ctx context.Context) (*client.Client, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil && s.c.Usable() == nil {
		return s.c, !s.notGateway, nil
	}
	if s.c != nil {
		_ = s.c.Close() // the error is why it ended, known already
		s.c = nil
	}
	c, err := s.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	s.c, s.notGateway = c, !offers(ctx, c, "sys.cluster")
	return c, !s.notGateway, nil
}

// offers reports whether the server lists method in sys.info, so that a
// server that is not a gateway is not asked for sys.cluster: the unknown
// method would count as an error of the view's own session. When sys.info
// cannot say, it reports true and the first answer decides.
func offers(ctx context.Context, c *client.Client, method string) bool {
	raw, err := c.Call(ctx, "sys.info", nil)
	var info struct {
		Methods []string `json:"methods"`
	}
	if err != nil || json.Unmarshal(raw, &info) != nil || info.Methods == nil {
		return true
	}
	return slices.Contains(info.Methods, method)
}

// Poll calls sys.clients and, unless the server is known not to be a
// gateway, sys.cluster, both at once.
func (s *ClientSource) Poll(ctx context.Context) (Sample, error) {
	c, askCluster, err := s.conn(ctx)
	if err != nil {
		return Sample{}, err
	}
	var (
		cluster    *backplane.Cluster
		clusterErr error
		wg         sync.WaitGroup
	)
	if askCluster {
		wg.Go(func() {
			raw, err := c.Call(ctx, "sys.cluster", nil)
			switch {
			case errors.Is(err, wire.CodeUnknownMethod):
				s.mu.Lock()
				if s.c == c {
					s.notGateway = true
				}
				s.mu.Unlock()
			case err != nil:
				clusterErr = fmt.Errorf("sys.cluster: %w", err)
			default:
				cluster = new(backplane.Cluster)
				if err := json.Unmarshal(raw, cluster); err != nil {
					cluster, clusterErr = nil, fmt.Errorf("sys.cluster: %w", err)
				}
			}
		})
	}
	raw, err := c.Call(ctx, "sys.clients", nil)
	wg.Wait()
	if err != nil {
		if errors.Is(err, wire.CodeUnknownMethod) {
			return Sample{}, fmt.Errorf("sys.clients: %w (it is for admins: connect over loopback, or with an admin token)", err)
		}
		return Sample{}, fmt.Errorf("sys.clients: %w", err)
	}
	smp := Sample{Time: time.Now(), Self: c.ID(), Cluster: cluster, ClusterErr: clusterErr,
		Server: c.Welcome().Server + " at " + s.target}
	if err := json.Unmarshal(raw, &smp.Clients); err != nil {
		return Sample{}, fmt.Errorf("sys.clients: %w", err)
	}
	return smp, nil
}

// Kick calls sys.kick [id]: the server gives the reason, "by admin"
// and this connection's address.
func (s *ClientSource) Kick(ctx context.Context, id uint64) (bool, error) {
	c, _, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	raw, err := c.Call(ctx, "sys.kick", fmt.Appendf(nil, "[%d]", id))
	if err != nil {
		return false, fmt.Errorf("sys.kick: %w", err)
	}
	var kicked bool
	if err := json.Unmarshal(raw, &kicked); err != nil {
		return false, fmt.Errorf("sys.kick: %w", err)
	}
	return kicked, nil
}

// Close closes the connection, if there is one.
func (s *ClientSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return nil
	}
	err := s.c.Close()
	s.c = nil
	return err
}
