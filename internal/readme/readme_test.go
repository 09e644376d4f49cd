// Package readme keeps the README and the guides under docs/ honest: every Go
// program in them is built and run, and its output checked against the
// "// Output:" lines it ends with; every relative link points at a file that
// exists (and, with a #fragment, at a heading of that file).
package readme

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
)

// root is the repository root, relative to this package's directory (where
// go test runs).
const root = "../.."

// codeBlock is a fenced block with its language. A ```python block whose
// first line names a file ("# mymod.py") is written beside the next
// program's main.go, as a user's own module is.
var (
	codeBlock  = regexp.MustCompile("(?s)```(go|python)\n(.*?)```")
	pythonFile = regexp.MustCompile(`^# ([A-Za-z_][A-Za-z0-9_]*\.py)\n`)
)

// docFiles returns README.md and docs/*.md, relative to dir (the repository
// root).
func docFiles(t *testing.T, dir string) []string {
	t.Helper()
	guides, err := filepath.Glob(filepath.Join(dir, "docs", "*.md"))
	require.NoError(t, err)
	files := []string{"README.md"}
	for _, g := range guides {
		rel, err := filepath.Rel(dir, g)
		require.NoError(t, err)
		files = append(files, filepath.ToSlash(rel))
	}
	slices.Sort(files[1:])
	return files
}

type program struct {
	name  string // "docs/dispatch.md program 0", for failures
	src   string
	files map[string]string // Python modules written beside main.go
}

// programsIn returns the complete programs (```go blocks that start with
// "package main") of file, a path relative to dir.
func programsIn(t *testing.T, dir, file string) []program {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(dir, file))
	require.NoError(t, err)
	var programs []program
	files := map[string]string{}
	for _, m := range codeBlock.FindAllStringSubmatch(string(text), -1) {
		lang, body := m[1], m[2]
		if lang == "python" {
			if f := pythonFile.FindStringSubmatch(body); f != nil {
				files[f[1]] = body
			}
			continue
		}
		if strings.HasPrefix(body, "package main") {
			programs = append(programs, program{name: fmt.Sprintf("%s program %d", file, len(programs)), src: body, files: files})
			files = map[string]string{}
		}
	}
	return programs
}

// expectedOutput reads, as in Go examples, "// Output:" then the expected
// lines, each a comment, on that line and the ones that follow.
func expectedOutput(src string) []string {
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
	return want
}

func TestDocProgramsRun(t *testing.T) {
	var all []program
	for _, file := range docFiles(t, root) {
		all = append(all, programsIn(t, root, file)...)
	}
	require.NotEmpty(t, programsIn(t, root, "README.md"), "the README shows at least one complete program")
	for _, p := range all {
		t.Run(strings.NewReplacer("/", "_", " ", "_").Replace(p.name), func(t *testing.T) {
			want := expectedOutput(p.src)
			require.NotEmpty(t, want, "%s ends with // Output: lines", p.name)
			formatted, err := format.Source([]byte(p.src))
			require.NoError(t, err, "%s does not parse", p.name)
			require.Equal(t, string(formatted), p.src, "%s is gofmt-formatted", p.name)

			// Inside the module (testdata is skipped by ./... patterns), so
			// the program imports this checkout's packages.
			require.NoError(t, os.MkdirAll("testdata", 0o755))
			dir, err := os.MkdirTemp("testdata", "program-*")
			require.NoError(t, err)
			t.Cleanup(func() { os.RemoveAll(dir) })
			require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(p.src), 0o644))
			for name, body := range p.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
			}

			// Run from the program's directory, as a user runs theirs: a
			// module beside main.go is found through Config.Paths ".".
			cmd := exec.Command("go", "run", ".")
			cmd.Dir = dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, "%s:\n%s\n%s", p.name, p.src, stderr.String())
			require.Equal(t, strings.Join(want, "\n")+"\n", string(out), "%s output", p.name)
		})
	}
}

var (
	fence    = regexp.MustCompile("(?ms)^```.*?^```")
	mdLink   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading  = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	external = regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`) // https:, mailto:, ...
)

// anchors returns the fragments GitHub gives a Markdown file's headings:
// lower case, punctuation other than - and _ dropped, spaces to hyphens, and
// -1, -2, ... on repeats.
func anchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
				b.WriteRune(r)
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

// checkLinks returns one line per relative link in file (a path relative to
// dir) that names no existing file, or a heading that file does not have.
func checkLinks(t *testing.T, dir, file string) []string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(dir, file))
	require.NoError(t, err)
	var broken []string
	for _, m := range mdLink.FindAllStringSubmatch(fence.ReplaceAllString(string(text), ""), -1) {
		link := m[1]
		if external.MatchString(link) {
			continue
		}
		target, frag, _ := strings.Cut(link, "#")
		path := filepath.Join(dir, filepath.Dir(file), filepath.FromSlash(target))
		if target == "" {
			path = filepath.Join(dir, file)
		}
		if _, err := os.Stat(path); err != nil {
			broken = append(broken, fmt.Sprintf("%s: link %q: %v", file, link, err))
			continue
		}
		if frag == "" || !strings.HasSuffix(path, ".md") {
			continue
		}
		body, err := os.ReadFile(path)
		require.NoError(t, err)
		if !anchors(string(body))[frag] {
			broken = append(broken, fmt.Sprintf("%s: link %q: %s has no heading #%s", file, link, target, frag))
		}
	}
	return broken
}

func TestDocRelativeLinksResolve(t *testing.T) {
	var broken []string
	for _, file := range docFiles(t, root) {
		broken = append(broken, checkLinks(t, root, file)...)
	}
	require.Empty(t, broken, "relative links that point nowhere")
}

// The link check itself must catch a missing file and a missing heading, or
// a passing TestDocRelativeLinksResolve says nothing.
func TestCheckLinksCatchesBrokenLinks(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "docs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docs", "a.md"), []byte("# A\n\n## Using `slither doctor`, twice\n\n## Using `slither doctor`, twice\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte(
		"[ok](docs/a.md) [ok](docs/a.md#using-slither-doctor-twice-1) [ok](#top) [web](https://example.com/x)\n"+
			"[gone](docs/b.md) [no heading](docs/a.md#nope)\n\n# Top\n\n```go\n// [in code](nowhere.md)\n```\n"), 0o644))
	broken := checkLinks(t, dir, "README.md")
	require.Len(t, broken, 2, "%q", broken)
	require.Contains(t, broken[0], `README.md: link "docs/b.md"`)
	require.Contains(t, broken[1], `README.md: link "docs/a.md#nope": docs/a.md has no heading #nope`)
}

// A guide's programs are found like the README's, named by their file, and
// fragments that are not complete programs are left alone.
func TestProgramsInGuidesAreFound(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "docs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte("# R\n"), 0o644))
	guide := "# G\n\n```go\np.Close(ctx)\n```\n\n```go\npackage main\n\nfunc main() {\n\tprintln()\n\t// Output:\n\t// a\n\t// b\n}\n```\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docs", "guide.md"), []byte(guide), 0o644))
	require.Equal(t, []string{"README.md", "docs/guide.md"}, docFiles(t, dir))
	programs := programsIn(t, dir, "docs/guide.md")
	require.Len(t, programs, 1)
	require.Equal(t, "docs/guide.md program 0", programs[0].name)
	require.Equal(t, []string{"a", "b"}, expectedOutput(programs[0].src))
}

// A ```python block whose first line names a file goes beside the next
// program only; one without a name is prose.
func TestPythonModulesGoWithTheNextProgram(t *testing.T) {
	dir := t.TempDir()
	doc := "# R\n\n```python\nprint('prose')\n```\n\n```python\n# mymod.py\nx = 1\n```\n\n" +
		"```go\npackage main\n\nfunc main() {}\n```\n\n```go\npackage main\n\nfunc main() {}\n```\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.md"), []byte(doc), 0o644))
	programs := programsIn(t, dir, "README.md")
	require.Len(t, programs, 2)
	require.Equal(t, map[string]string{"mymod.py": "# mymod.py\nx = 1\n"}, programs[0].files)
	require.Empty(t, programs[1].files)
}
