// Command streamlens-gen writes the Terraform JSON modules (dashboards/,
// alarms/, slo/) from the metric definitions and slo/slos.json. The files are
// committed; a test regenerates them and fails on any difference.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/streamlens/streamlens/internal/gen"
	"github.com/streamlens/streamlens/slo"
)

func main() {
	spec := flag.String("spec", "slo/slos.json", "SLO spec file")
	root := flag.String("root", ".", "repository root to write into")
	flag.Parse()
	specs, err := slo.Load(*spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamlens-gen:", err)
		os.Exit(1)
	}
	files, err := gen.Files(specs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamlens-gen:", err)
		os.Exit(1)
	}
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(*root, p)
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "streamlens-gen:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", full)
	}
}
