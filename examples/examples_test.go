//go:build cgo

package examples_test

import (
	"bytes"
	"context"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/slither-go/slither/examples"
	"github.com/slither-go/slither/examples/batch_stats"
	"github.com/slither-go/slither/examples/data_etl"
	"github.com/slither-go/slither/examples/image_pipeline"
	"github.com/slither-go/slither/examples/ml_scoring"
	"github.com/slither-go/slither/examples/text_analysis"
	"github.com/slither-go/slither/internal/leaktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leaktest.Options()...)
}

// TestExamples runs every example with its baseline and checks that every
// verdict holds and the baseline reported. ml_scoring and image_pipeline
// need Debian's python3-sklearn and python3-pil (make test installs them).
func TestExamples(t *testing.T) {
	for _, ex := range []examples.Example{text_analysis.Example, batch_stats.Example, data_etl.Example,
		ml_scoring.Example, image_pipeline.Example} {
		t.Run(ex.Name, func(t *testing.T) {
			for _, m := range ex.Modules {
				if exec.Command("/usr/bin/python3", "-c", "import "+m).Run() != nil {
					t.Fatalf("%s needs %v for /usr/bin/python3: run `make test` (it installs %v)", ex.Name, ex.Modules, ex.Packages)
				}
			}
			var out bytes.Buffer
			res, err := examples.Run(context.Background(), ex, examples.Options{Baseline: true, Out: &out})
			require.NoError(t, err, out.String())
			assert.True(t, res.OK(), out.String())
			require.NotEmpty(t, res.Verdicts)
			for _, v := range res.Verdicts {
				assert.True(t, v.OK, "%s: %s", v.Check, v.Detail)
			}
			require.NotNil(t, res.Baseline, out.String())
			assert.NotEmpty(t, res.Baseline["report"])
			assert.Contains(t, out.String(), "where each Python stage ran, and why:")
		})
	}
}

func TestMissingModulesSayWhatToInstall(t *testing.T) {
	ex := examples.Example{Name: "needs", Modules: []string{"no_such_module_xyz"}, Packages: []string{"python3-no-such-package-xyz"}}
	_, err := examples.Run(context.Background(), ex, examples.Options{})
	require.ErrorIs(t, err, examples.ErrMissingDeps)
	assert.Contains(t, err.Error(), "no_such_module_xyz")
	assert.NotContains(t, err.Error(), "Traceback")
}
