package engine

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRemoteConfigMapsEveryField sets every field of RemoteConfig to a
// distinct non-zero value and checks that remote.Options gets each one
// under the same name: a field added to one and not mapped fails here.
func TestRemoteConfigMapsEveryField(t *testing.T) {
	var rc RemoteConfig
	v := reflect.ValueOf(&rc).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(100 + i))
		default:
			t.Fatalf("RemoteConfig.%s: a %v; teach this test its values", v.Type().Field(i).Name, f.Kind())
		}
	}
	opts := rc.options()
	o := reflect.ValueOf(opts)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		of := o.FieldByName(name)
		require.True(t, of.IsValid(), "remote.Options has no field %s", name)
		assert.Equal(t, v.Field(i).Interface(), of.Interface(), "RemoteConfig.%s reaches remote.Options", name)
	}
	assert.Nil(t, opts.Conn, "the engine sets Conn itself")
	assert.Nil(t, opts.Host)
	assert.Empty(t, opts.Name)
}
