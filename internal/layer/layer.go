// Package layer packages the extension binary as a Lambda layer zip with the
// documented layout (extensions/streamlens), reproducibly: the same inputs
// give the same zip bytes (fixed times, modes and order). The layer also
// carries the Node.js zero-code instrumentation: the exec wrapper at
// /opt/streamlens-node and its module under /opt/streamlens/node.
package layer

import (
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"
)

// epoch is the fixed modification time of every entry (zip cannot go earlier
// than 1980).
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// File is one file of the layer, at Name under /opt.
type File struct {
	Name string
	Mode uint32 // permission bits: 0o755 for what Lambda executes
	Data []byte
}

// NodeFiles are the layer paths of the Node.js instrumentation, with the
// repository files they come from and their modes: the exec wrapper that
// AWS_LAMBDA_EXEC_WRAPPER names, the module it preloads, and the client
// that module sends with (auto.js requires ./index.js).
var NodeFiles = []struct {
	Name, Source string
	Mode         uint32
}{
	{"streamlens-node", "layer/streamlens-node", 0o755},
	{"streamlens/node/auto.js", "clients/node/auto.js", 0o644},
	{"streamlens/node/index.js", "clients/node/index.js", 0o644},
}

// Write writes a layer zip holding binary as extensions/<name>, and extra
// files at their names.
func Write(w io.Writer, name string, binary []byte, extra ...File) error {
	files := append([]File{{Name: "extensions/" + name, Mode: 0o755, Data: binary}}, extra...)
	// Sorted, with every parent directory listed before its files: the
	// order, and so the bytes, never depend on the caller's order.
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	zw := zip.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || strings.HasPrefix(f.Name, "/") || strings.Contains(f.Name, "..") {
			return fmt.Errorf("layer: bad file name %q", f.Name)
		}
		var parents []string
		for d := path.Dir(f.Name); d != "."; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			dh := &zip.FileHeader{Name: d + "/", Method: zip.Store, Modified: epoch}
			dh.SetMode(0o755 | 0o20000000000) // a directory
			if _, err := zw.CreateHeader(dh); err != nil {
				return fmt.Errorf("layer: %w", err)
			}
		}
		fh := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: epoch}
		// Lambda runs files in /opt/extensions and the exec wrapper: they
		// must be executable.
		fh.SetMode(fs.FileMode(f.Mode) & fs.ModePerm)
		fw, err := zw.CreateHeader(fh)
		if err != nil {
			return fmt.Errorf("layer: %w", err)
		}
		if _, err := fw.Write(f.Data); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	return nil
}
