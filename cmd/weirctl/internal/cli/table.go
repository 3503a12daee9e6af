package cli

import (
	"io"
	"strings"
	"unicode/utf8"
)

// table lays out rows in columns that fit a width. When they do not fit,
// the columns marked to shrink give up space (cut with "…"), the last
// first.
type table struct {
	header []string
	shrink []bool // per column: may be cut to fit
	rows   [][]string
}

const colGap = 2

// minShrunk is the narrowest a shrinking column gets.
const minShrunk = 6

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// lines renders the table; width <= 0 means no limit.
func (t *table) lines(width int) []string {
	widths := make([]int, len(t.header))
	for _, row := range append([][]string{t.header}, t.rows...) {
		for i, c := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	if width > 0 {
		total := func() int {
			n := colGap * (len(widths) - 1)
			for _, w := range widths {
				n += w
			}
			return n
		}
		for i := len(widths) - 1; i >= 0 && total() > width; i-- {
			if !t.shrink[i] {
				continue
			}
			widths[i] = max(minShrunk, widths[i]-(total()-width))
		}
	}
	var out []string
	for _, row := range append([][]string{t.header}, t.rows...) {
		var b strings.Builder
		for i, c := range row {
			c = cut(c, widths[i])
			b.WriteString(c)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+colGap))
			}
		}
		out = append(out, strings.TrimRight(b.String(), " "))
	}
	return out
}

func (t *table) write(w io.Writer, width int) error {
	for _, l := range t.lines(width) {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// cut shortens s to n runes, ending it with "…" when cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
