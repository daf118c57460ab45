package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/nexo-project/nexo/client"
	"github.com/nexo-project/nexo/internal/calc"
	"github.com/nexo-project/nexo/internal/server"
	"github.com/nexo-project/nexo/service"
	"github.com/nexo-project/nexo/wire"
)

// exampleServer starts a nexo server on a free loopback port, as
// `nexo serve --native-addr 127.0.0.1:0` would.
func exampleServer() (addr string, stop func()) {
	reg := service.NewRegistry()
	if err := reg.Register(calc.Methods()...); err != nil {
		panic(err)
	}
	srv, err := server.New(server.Config{}, reg, nil)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.ServeNative(ln)
	return ln.Addr().String(), func() { srv.Shutdown(context.Background()) }
}

func Example() {
	addr, stop := exampleServer()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, addr, &client.Options{Name: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	sum, _ := c.Add(ctx, 2, 3)
	q, _ := c.Div(ctx, 7, 2)
	fmt.Println(sum, q)
	// Output: 5 3.5
}

func ExampleClient_Div_errors() {
	addr, stop := exampleServer()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, addr, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, err = c.Div(ctx, 1, 0)
	fmt.Println(errors.Is(err, wire.CodeDivisionByZero))
	_, err = c.Mul(ctx, 1<<62, 4)
	var werr *wire.Error
	if errors.As(err, &werr) {
		fmt.Println(werr.Code)
	}
	// Output:
	// true
	// OVERFLOW
}

func ExampleClient_Call() {
	addr, stop := exampleServer()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, addr, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// Raw calls take the method's payload: math.* wants a and b as
	// big-endian int64.
	resp, err := c.Call(ctx, "math.sub", calc.AppendOperands(nil, 10, 3))
	fmt.Printf("% x %v\n", resp, err)
	// Output: 00 00 00 00 00 00 00 07 <nil>
}
