//go:build cgo

package cpython

// CallRaw exposes callRaw to the fuzz tests.
func (t *Thread) CallRaw(module, name string, in []byte) (any, error) {
	return t.callRaw(module, name, in)
}
