// Package js embeds nexo's JavaScript client, nexo.js, so that the web
// door can serve it to the GUI: there is one JavaScript client, used by
// the browser GUI, by browser pages and by Node.
package js

import (
	"bytes"
	_ "embed"
	"io"
)

//go:embed nexo.js
var module []byte

// Reader returns the client module's source.
func Reader() io.ReadSeeker { return bytes.NewReader(module) }
