//go:build !cgo

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newDemo() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Count primes on the embedded free-threaded pool (needs a cgo build)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("demo: the embedded thread pool is not in this binary: it was built with CGO_ENABLED=0 (process pools only)")
		},
	}
}
