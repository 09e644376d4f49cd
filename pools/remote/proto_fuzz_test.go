package remote_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/slither-go/slither/pools/remote"
)

// FuzzDecode feeds arbitrary bodies to every decoder a node or a
// coordinator runs on what arrives from NATS: each must return a value or
// an error, never panic, and never read past its limit.
func FuzzDecode(f *testing.F) {
	c := &remote.Codec{MaxPayload: 1 << 20}
	f.Add([]byte{0, 0, 0, 14, 0, 0, 0, 10, 0, 0, 0, 0, '{', '"', 'm', '"', ':', '"', 'm', '"', '}', ' '})
	f.Add(frame(f, `{"m":"m","f":"f","v":[1,{"$b":0}]}`))
	f.Add(frame(f, `{"v":[1],"w":1,"p":2,"s":3}`))
	f.Add(frame(f, `{"e":{"kind":"python","type":"ValueError"}}`))
	f.Add(frame(f, `{"n":"v","a":[[[[[]]]]]}`))
	f.Add([]byte(`{"node":"a","pools":{"p":{"capacity":1}}}`))
	h := nats.Header{}
	h.Set(remote.HeaderBatch, "C-1")
	h.Set(remote.HeaderCoord, "C")
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = c.DecodeCall(ctx, h, data)
		_, _ = c.DecodeReply(ctx, h, data)
		_, _, _ = c.DecodeHostCall(data)
		_, _ = c.DecodeHostReply(data)
		_, _ = remote.ParseAdvert(data)
	})
}
