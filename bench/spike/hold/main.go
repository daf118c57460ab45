// Command hold opens connections to a TCP server and holds them, saying
// nothing: the idle clients of a server with no handshake (Redis), for the
// spike's memory per client.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:6391", "server `address`")
	n := flag.Int("n", 19000, "connections")
	d := flag.Duration("d", 6*time.Second, "how long to hold them")
	flag.Parse()
	conns := make([]net.Conn, 0, *n)
	for range *n {
		c, err := net.Dial("tcp", *addr)
		if err != nil {
			log.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	fmt.Printf("holding %d connections\n", len(conns))
	time.Sleep(*d)
	for _, c := range conns {
		c.Close()
	}
}
