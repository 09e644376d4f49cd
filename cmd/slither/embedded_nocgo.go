//go:build !cgo

package main

import (
	"context"

	"github.com/slither-go/slither/capacity"
)

func embedded(context.Context, int) capacity.Embedded {
	return capacity.Embedded{Reason: "this binary was built with CGO_ENABLED=0, so it cannot embed Python (process pools only)"}
}
