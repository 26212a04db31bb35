// Command check-vectors holds the Go risk-token code (package token) to the test
// vectors:
//
//	check-vectors [path/to/token-vectors.json]
//
// The default path is docs/token-vectors.json of the repository the command runs in.
// Prints one line per failure and "N passed, M failed"; exits 1 on any failure, 2 when
// the file cannot be read.
package main

import (
	"fmt"
	"os"

	"tessera/clients/go/token"
)

func main() {
	path := "docs/token-vectors.json"
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	vectors, err := token.LoadVectors(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "check-vectors: %v\n", err)
		os.Exit(2)
	}
	report := token.CheckVectors(vectors)
	for _, failure := range report.Failures {
		fmt.Printf("FAIL %s\n", failure)
	}
	fmt.Printf("vectors: %d decimal, %d signing, %d verification (%s)\n",
		report.Decimal, report.Signing, report.Verification, path)
	fmt.Printf("%d passed, %d failed\n", report.Passed, len(report.Failures))
	if len(report.Failures) > 0 || report.Decimal == 0 || report.Signing == 0 || report.Verification == 0 {
		os.Exit(1)
	}
}
