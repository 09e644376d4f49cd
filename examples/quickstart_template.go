package examples

import "embed"

// Quickstart holds the quickstart template, examples/quickstart: a user
// module's main.go, its Python module and the tests of both, under
// "quickstart/". `slither init` writes these files, beside a go.mod of its
// own, into a new module; examples/quickstart runs them in this one.
//
//go:embed quickstart/main.go quickstart/main_test.go quickstart/mymod.py quickstart/test_mymod.py quickstart/README.md
var Quickstart embed.FS
