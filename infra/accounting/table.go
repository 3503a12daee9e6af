package accounting

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints the ledger as a table, one row per operation, with
// totals and a cost estimate at p.
func (l *Ledger) WriteTable(w io.Writer, p Prices) error {
	usage := l.Usage()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "service\toperation\trequests\tfailed\tbilled\tRRU\tWRU\t")
	var total Usage
	for _, k := range sortedKeys(usage) {
		u := usage[k]
		total.add(u)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f\t\n", k.Service, k.Operation, u.Requests, u.Failed, u.Billed, u.ReadUnits, u.WriteUnits)
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t%d\t%.1f\t%.1f\t\n", total.Requests, total.Failed, total.Billed, total.ReadUnits, total.WriteUnits)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, EstimateCost(usage, p))
	return err
}

// Table is WriteTable into a string, at us-east-1 prices.
func (l *Ledger) Table() string {
	var b strings.Builder
	_ = l.WriteTable(&b, USEast1) // a strings.Builder does not fail
	return b.String()
}
