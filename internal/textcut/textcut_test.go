package textcut

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBytesNeverSplitsACharacter(t *testing.T) {
	s := strings.Repeat("é", 10) // 2 bytes each
	for n := range 25 {
		got := Bytes(s, n)
		if len(got) > n || !utf8.ValidString(got) || !strings.HasPrefix(s, got) {
			t.Fatalf("Bytes(%d) = %q", n, got)
		}
		if want := min(n, 20) / 2 * 2; len(got) != want {
			t.Fatalf("Bytes(%d) kept %d bytes, want %d", n, len(got), want)
		}
	}
	if Bytes("short", 10) != "short" || Bytes("x", -1) != "" {
		t.Fatal("short or negative budgets")
	}
}
