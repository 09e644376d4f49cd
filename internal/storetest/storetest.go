// Package storetest holds the store definitions tests of several packages
// share. Tests only.
package storetest

import (
	"context"

	"github.com/slither-go/slither/store"
)

// Prices is a store "prices" with a table "sku" holding A1 = 9.5, and a
// view "price" that Python calls as slither.view("price", sku=...).
func Prices() store.Definition {
	return store.Definition{
		Name:   "prices",
		Tables: []store.TableSpec{{Name: "sku"}},
		Load:   func(ctx context.Context, w *store.Loader) error { return w.Put("sku", "A1", 9.5) },
		Views: []store.View{{Name: "price", Fn: func(ctx context.Context, c store.ViewCall) (any, error) {
			sku, err := c.String("sku")
			if err != nil {
				return nil, err
			}
			v, _, err := c.Store.Get("sku", sku)
			return v, err
		}}},
	}
}
