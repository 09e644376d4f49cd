package engine

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProcessConfigMapsEveryField sets every field of ProcessConfig to a
// distinct non-zero value and checks that process.Options gets each one
// under the same name: a field added to one and not mapped fails here.
func TestProcessConfigMapsEveryField(t *testing.T) {
	var pc ProcessConfig
	v := reflect.ValueOf(&pc).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("s" + v.Type().Field(i).Name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(100 + i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"e" + v.Type().Field(i).Name}))
		default:
			t.Fatalf("ProcessConfig.%s: a %v; teach this test its values", v.Type().Field(i).Name, f.Kind())
		}
	}
	opts := pc.options([]string{"/shared"})
	o := reflect.ValueOf(opts)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		of := o.FieldByName(name)
		require.True(t, of.IsValid(), "process.Options has no field %s", name)
		want := v.Field(i).Interface()
		if name == "Paths" {
			want = []string{"/shared", "ePaths"}
		}
		assert.Equal(t, want, of.Interface(), "ProcessConfig.%s reaches process.Options", name)
	}
	assert.Nil(t, opts.Host, "the engine sets Host itself")
	assert.Nil(t, opts.Telemetry)
}
