package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
)

func TestMain(m *testing.M) {
	// The remote end-to-end tests start this binary as `slither node`.
	if os.Getenv(remoteChildEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, leaktest.Options()...)
}
