// Command layer packages an extension binary as a Lambda layer zip
// (extensions/streamlens), with the Node.js zero-code instrumentation
// (/opt/streamlens-node, /opt/streamlens/node), and prints its size and
// SHA-256. `make layer` builds the binaries (static, stripped, reproducible
// flags) and calls it per architecture.
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/streamlens/streamlens/internal/layer"
)

func main() {
	bin := flag.String("bin", "", "extension binary")
	out := flag.String("out", "", "layer zip to write")
	src := flag.String("src", ".", "repository root, where the Node instrumentation's files are read from")
	flag.Parse()
	if err := run(*bin, *out, *src); err != nil {
		fmt.Fprintln(os.Stderr, "layer:", err)
		os.Exit(1)
	}
}

func run(bin, out, src string) error {
	if bin == "" || out == "" {
		return fmt.Errorf("-bin and -out are required")
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var extra []layer.File
	for _, f := range layer.NodeFiles {
		b, err := os.ReadFile(filepath.Join(src, f.Source))
		if err != nil {
			return fmt.Errorf("node instrumentation: %w", err)
		}
		extra = append(extra, layer.File{Name: f.Name, Mode: f.Mode, Data: b})
	}
	var zip bytes.Buffer
	if err := layer.Write(&zip, "streamlens", data, extra...); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, zip.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s: binary %.2f MB, zip %.2f MB, sha256 %x\n", out, float64(len(data))/1e6, float64(zip.Len())/1e6, sha256.Sum256(zip.Bytes()))
	return nil
}
