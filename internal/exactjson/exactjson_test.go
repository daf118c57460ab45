package exactjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestUnmarshal: members are taken by their exact names, whatever else
// the object holds; an absent one leaves its destination alone, a null
// is decoded as encoding/json does; a member of the wrong type is named;
// what is not an object is refused.
func TestUnmarshal(t *testing.T) {
	var name, token string
	var id json.RawMessage
	name = "unchanged"
	err := Unmarshal([]byte(`{"Name":"no","token":"t","TOKEN":"no","id":null,"x":1e999}`),
		Member{Name: "name", Into: &name}, Member{Name: "token", Into: &token}, Member{Name: "id", Into: &id})
	if err != nil || name != "unchanged" || token != "t" || string(id) != "null" {
		t.Errorf("name %q, token %q, id %s, err %v", name, token, id, err)
	}
	err = Unmarshal([]byte(`{"token":5}`), Member{Name: "token", Into: &token})
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || !strings.HasPrefix(err.Error(), "token: ") {
		t.Errorf("a number for a string: %v; want a type error naming token", err)
	}
	for _, bad := range []string{`[]`, `"x"`, `{"a":`} {
		if err := Unmarshal([]byte(bad), Member{Name: "a", Into: &token}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
