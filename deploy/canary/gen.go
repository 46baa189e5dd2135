//go:build ignore

// gen writes canary.tf.json from Module: `go generate ./deploy/canary`.
package main

import (
	"fmt"
	"os"

	"github.com/streamlens/streamlens/deploy/canary"
)

func main() {
	b, err := canary.Render()
	if err == nil {
		err = os.WriteFile(canary.File, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "canary gen:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", canary.File)
}
