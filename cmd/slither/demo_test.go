//go:build cgo

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoCountsPrimesInParallel(t *testing.T) {
	var out bytes.Buffer
	err := runDemo(context.Background(), &out, demoOptions{workers: 2, limit: 30_000, chunk: 1_000})
	require.NoError(t, err, out.String())
	s := out.String()
	assert.Contains(t, s, "free-threaded build: true")
	assert.Contains(t, s, "1 worker(s): 3245 primes")
	assert.Contains(t, s, "2 worker(s): 3245 primes")
	assert.Contains(t, s, "every count matches Go's sieve")
}

func TestDemoRejectsBadFlags(t *testing.T) {
	cmd := newRoot()
	cmd.SetArgs([]string{"demo", "--workers", "0"})
	cmd.SetOut(&bytes.Buffer{})
	err := cmd.Execute()
	assert.ErrorContains(t, err, "--workers (0)")
}

func TestSieveCounts(t *testing.T) {
	assert.Equal(t, []int{4, 4, 2}, sieveCounts([][2]int{{0, 10}, {10, 20}, {20, 30}}, 30))
}
