// Package readme keeps the README honest: every Go program in it is built
// and run, and its output checked against the "// Output:" lines it ends with.
package readme

import (
	"bytes"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

func TestREADMEProgramsRun(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	var programs []string
	for _, m := range goBlock.FindAllStringSubmatch(string(readme), -1) {
		if strings.HasPrefix(m[1], "package main") {
			programs = append(programs, m[1])
		}
	}
	require.NotEmpty(t, programs, "the README shows at least one complete program")
	for i, src := range programs {
		// As in Go examples: "// Output:" then the expected lines, each a
		// comment, on that line and the ones that follow.
		var want []string
		in := false
		for _, line := range strings.Split(src, "\n") {
			line = strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(line, "// Output:"); ok {
				in = true
				if rest = strings.TrimSpace(rest); rest != "" {
					want = append(want, rest)
				}
				continue
			}
			if rest, ok := strings.CutPrefix(line, "//"); ok && in {
				want = append(want, strings.TrimSpace(rest))
				continue
			}
			in = false
		}
		require.NotEmpty(t, want, "README program %d ends with // Output: lines", i)
		formatted, err := format.Source([]byte(src))
		require.NoError(t, err)
		require.Equal(t, string(formatted), src, "README program %d is gofmt-formatted", i)

		// Inside the module (testdata is skipped by ./... patterns), so the
		// program imports this checkout's packages.
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		dir, err := os.MkdirTemp("testdata", "program-*")
		require.NoError(t, err)
		t.Cleanup(func() { os.RemoveAll(dir) })
		require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644))

		cmd := exec.Command("go", "run", "./"+filepath.ToSlash(dir))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "README program %d:\n%s\n%s", i, src, stderr.String())
		require.Equal(t, strings.Join(want, "\n")+"\n", string(out), "README program %d", i)
	}
}
