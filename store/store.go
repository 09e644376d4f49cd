// Package store holds shared tables that Go owns and Python reads: reads
// are lock-free and run concurrently with writes; writes are serialized per
// store and applied in order; Reload fills fresh tables and swaps them in
// atomically, so a reader sees all old tables or all new ones, never a mix
// and never a half-loaded table. Python reaches a store through named
// views (see [Registry]): slither.view("name", **args).
//
// The tables are github.com/puzpuzpuz/xsync maps (see the README for why
// not haxmap, the card's choice).
package store

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v4"

	"github.com/slither-go/slither/internal/safecall"
	"github.com/slither-go/slither/telemetry"
)

// Kind is a table's kind.
type Kind int

const (
	// Set holds one value per key (the default).
	Set Kind = iota
	// Bag holds a list of values per key; Put appends.
	Bag
)

// TableSpec declares a table.
type TableSpec struct {
	Name string
	Kind Kind
}

// Definition declares a store: its tables, its views, and the loader that
// fills fresh tables at Open and at every Reload.
type Definition struct {
	Name   string
	Tables []TableSpec
	// Load fills the tables through w; an error, or a panic (an error
	// matching safecall.ErrPanic), leaves the store as it was (at Open: no
	// store).
	Load func(ctx context.Context, w *Loader) error
	// Views are registered globally when the store is added to a
	// [Registry].
	Views []View
	// Telemetry receives store.write and store.reload.* events.
	Telemetry *telemetry.Bus
}

// Entry is one key and its value (for a Bag, a []any of values).
type Entry struct {
	Key   string
	Value any
}

var (
	// ErrNoTable is matched by errors naming a table the store lacks.
	ErrNoTable = errors.New("store: no such table")
	// ErrClosed is matched by writes to a closed store.
	ErrClosed = errors.New("store: closed")
)

type table struct {
	spec TableSpec
	m    *xsync.Map[string, any]
}

type tables map[string]*table

// Store is a started store. Reads are safe from any goroutine at any time;
// writes and reloads are serialized.
type Store struct {
	def    Definition
	cur    atomic.Pointer[tables]
	wmu    sync.Mutex // serializes writes and reloads
	closed bool       // guarded by wmu
}

// Open validates def, runs its loader into fresh tables and returns the
// store.
func Open(ctx context.Context, def Definition) (*Store, error) {
	if def.Name == "" {
		return nil, errors.New("store: Definition.Name is empty")
	}
	seen := map[string]bool{}
	for _, t := range def.Tables {
		if t.Name == "" {
			return nil, fmt.Errorf("store %s: a table has no name", def.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("store %s: table %q is declared twice", def.Name, t.Name)
		}
		seen[t.Name] = true
	}
	s := &Store{def: def}
	ts, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	s.cur.Store(&ts)
	return s, nil
}

// Name is the store's name.
func (s *Store) Name() string { return s.def.Name }

// Tables lists the table names in declaration order.
func (s *Store) Tables() []string {
	var names []string
	for _, t := range s.def.Tables {
		names = append(names, t.Name)
	}
	return names
}

func (s *Store) fresh() tables {
	ts := tables{}
	for _, spec := range s.def.Tables {
		ts[spec.Name] = &table{spec: spec, m: xsync.NewMap[string, any]()}
	}
	return ts
}

func (s *Store) load(ctx context.Context) (tables, error) {
	ts := s.fresh()
	if s.def.Load == nil {
		return ts, nil
	}
	// A panicking loader is a failed load: the old tables stay.
	err := safecall.Call("loader", func() error { return s.def.Load(ctx, &Loader{s: s, ts: ts}) })
	if errors.Is(err, safecall.ErrPanic) {
		return nil, fmt.Errorf("store %s: %w", s.def.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: loader: %w", s.def.Name, err)
	}
	return ts, nil
}

func (s *Store) table(name string) (*table, error) {
	t, ok := (*s.cur.Load())[name]
	if !ok {
		return nil, fmt.Errorf("%w: store %s has no table %q (tables: %v)", ErrNoTable, s.def.Name, name, s.Tables())
	}
	return t, nil
}

// Snapshot is a consistent view of every table at one moment: reads
// through it all see the same generation, even across a Reload.
type Snapshot struct {
	s  *Store
	ts tables
}

// Snapshot returns the current generation of the tables.
func (s *Store) Snapshot() Snapshot { return Snapshot{s: s, ts: *s.cur.Load()} }

func (sn Snapshot) table(name string) (*table, error) {
	t, ok := sn.ts[name]
	if !ok {
		return nil, fmt.Errorf("%w: store %s has no table %q (tables: %v)", ErrNoTable, sn.s.def.Name, name, sn.s.Tables())
	}
	return t, nil
}

// Get returns key's value in table (for a Bag, its []any of values).
func (sn Snapshot) Get(table, key string) (any, bool, error) {
	t, err := sn.table(table)
	if err != nil {
		return nil, false, err
	}
	v, ok := t.m.Load(key)
	return v, ok, nil
}

// Size is the number of keys in table.
func (sn Snapshot) Size(table string) (int, error) {
	t, err := sn.table(table)
	if err != nil {
		return 0, err
	}
	return t.m.Size(), nil
}

// All iterates table's entries (in no particular order); writes made
// during the iteration may or may not be seen.
func (sn Snapshot) All(table string) iter.Seq2[string, any] {
	t, err := sn.table(table)
	if err != nil {
		return func(func(string, any) bool) {}
	}
	return t.m.All()
}

// Select returns table's entries for which keep is true, sorted by key.
func (sn Snapshot) Select(table string, keep func(key string, v any) bool) ([]Entry, error) {
	t, err := sn.table(table)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for k, v := range t.m.All() {
		if keep(k, v) {
			out = append(out, Entry{k, v})
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out, nil
}

// Get reads key from table in the current generation.
func (s *Store) Get(table, key string) (any, bool, error) { return s.Snapshot().Get(table, key) }

// Size is the number of keys in table now.
func (s *Store) Size(table string) (int, error) { return s.Snapshot().Size(table) }

// All iterates table's entries now.
func (s *Store) All(table string) iter.Seq2[string, any] { return s.Snapshot().All(table) }

// Select returns table's matching entries now, sorted by key.
func (s *Store) Select(table string, keep func(key string, v any) bool) ([]Entry, error) {
	return s.Snapshot().Select(table, keep)
}

// Fold folds fn over table's entries (in no particular order).
func Fold[T any](sn Snapshot, table string, init T, fn func(acc T, key string, v any) T) (T, error) {
	t, err := sn.table(table)
	if err != nil {
		return init, err
	}
	acc := init
	for k, v := range t.m.All() {
		acc = fn(acc, k, v)
	}
	return acc, nil
}

// write runs f with the write lock held on the current tables.
func (s *Store) write(ctx context.Context, op, tname string, items int, f func(t *table) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return fmt.Errorf("store %s: %s on %s: %w", s.def.Name, op, tname, ErrClosed)
	}
	t, err := s.table(tname)
	if err == nil {
		err = f(t)
	}
	s.wmu.Unlock()
	if err != nil {
		return err
	}
	s.def.Telemetry.Emit(telemetry.StoreWrite, telemetry.Measurements{Duration: time.Since(start), Items: items},
		telemetry.Metadata{"store": s.def.Name, "table": tname, "op": op})
	return nil
}

func put(t *table, key string, v any) {
	if t.spec.Kind == Bag {
		old, _ := t.m.Load(key)
		list, _ := old.([]any)
		t.m.Store(key, append(slices.Clip(list), v)) // copy on write: readers keep their slice
		return
	}
	t.m.Store(key, v)
}

// Put sets key to v in table (for a Bag, appends v to key's values).
func (s *Store) Put(ctx context.Context, tbl, key string, v any) error {
	return s.write(ctx, "put", tbl, 1, func(t *table) error {
		put(t, key, v)
		return nil
	})
}

// Update replaces key's value with fn(old, found) atomically with respect
// to every other write of the store; fn runs with the write lock held, so
// it must be quick and must not write to the store itself. An error from
// fn, or a panic (an error matching safecall.ErrPanic), leaves the value as
// it was. Update returns the new value.
func (s *Store) Update(ctx context.Context, tbl, key string, fn func(old any, found bool) (any, error)) (any, error) {
	var nv any
	err := s.write(ctx, "update", tbl, 1, func(t *table) error {
		old, ok := t.m.Load(key)
		v, err := safecall.Values("update function", func() (any, error) { return fn(old, ok) })
		if err != nil {
			return fmt.Errorf("store %s: update of %s[%q]: %w", s.def.Name, tbl, key, err)
		}
		t.m.Store(key, v)
		nv = v
		return nil
	})
	return nv, err
}

// Delete removes key from table.
func (s *Store) Delete(ctx context.Context, tbl, key string) error {
	return s.write(ctx, "delete", tbl, 1, func(t *table) error {
		t.m.Delete(key)
		return nil
	})
}

// BulkInsert puts every entry under one hold of the write lock.
func (s *Store) BulkInsert(ctx context.Context, tbl string, entries []Entry) error {
	return s.write(ctx, "bulk_insert", tbl, len(entries), func(t *table) error {
		for _, e := range entries {
			put(t, e.Key, e.Value)
		}
		return nil
	})
}

// Reload runs the loader into fresh tables and swaps them in atomically;
// writes wait meanwhile. If the loader fails (or ctx ends) the old tables
// stay and the error is returned.
func (s *Store) Reload(ctx context.Context) error {
	md := telemetry.Metadata{"store": s.def.Name}
	s.def.Telemetry.Emit(telemetry.StoreReloadStart, telemetry.Measurements{}, md)
	start := time.Now()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return fmt.Errorf("store %s: reload: %w", s.def.Name, ErrClosed)
	}
	ts, err := s.load(ctx)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("store %s: reload: %w", s.def.Name, context.Cause(ctx))
	}
	stop := telemetry.Metadata{"store": s.def.Name, "ok": err == nil}
	if err != nil {
		stop["error"] = err.Error()
	} else {
		s.cur.Store(&ts)
	}
	s.def.Telemetry.Emit(telemetry.StoreReloadStop, telemetry.Measurements{Duration: time.Since(start)}, stop)
	return err
}

// Close refuses further writes and reloads; reads keep working on the last
// tables.
func (s *Store) Close() {
	s.wmu.Lock()
	s.closed = true
	s.wmu.Unlock()
}

// Loader fills fresh tables; it is valid only inside the loader call.
type Loader struct {
	s  *Store
	ts tables
}

// Put sets (or, for a Bag, appends) key's value in the fresh table.
func (l *Loader) Put(table, key string, v any) error {
	t, ok := l.ts[table]
	if !ok {
		return fmt.Errorf("%w: store %s has no table %q (tables: %v)", ErrNoTable, l.s.def.Name, table, l.s.Tables())
	}
	put(t, key, v)
	return nil
}
