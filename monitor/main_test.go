package monitor_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/slither-go/slither/internal/leaktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}
