// Package exactjson decodes the members of a JSON object by their exact
// names. JSON's member names are case-sensitive, but encoding/json matches
// a struct's fields without case: it takes "Token" for "token", and of the
// two the last wins. The protocol's objects (HELLO, WELCOME, a JSON-RPC
// call) are read with this package instead, so that "Token" is an unknown
// member, ignored as every unknown member is.
package exactjson

import (
	"encoding/json"
	"fmt"
)

// Member names one member of an object, and where its value is decoded.
type Member struct {
	Name string
	Into any // a pointer, as json.Unmarshal takes: left as it is when the member is absent; a null is decoded as json.Unmarshal does
}

// Unmarshal decodes the JSON object in data into members, each taken by
// its exact name. Members not named are ignored. An error is data's
// (not JSON, or not an object: json.Unmarshal's), or a member's, naming
// it and wrapping json.Unmarshal's.
func Unmarshal(data []byte, members ...Member) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for _, m := range members {
		if raw, ok := all[m.Name]; ok {
			if err := json.Unmarshal(raw, m.Into); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
	}
	return nil
}
