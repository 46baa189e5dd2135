// Package layer packages the extension binary as a Lambda layer zip with the
// documented layout (extensions/streamlens), reproducibly: the same binary
// gives the same zip bytes (fixed times, modes and order).
package layer

import (
	"archive/zip"
	"fmt"
	"io"
	"time"
)

// epoch is the fixed modification time of every entry (zip cannot go earlier
// than 1980).
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Write writes a layer zip holding binary as extensions/<name>.
func Write(w io.Writer, name string, binary []byte) error {
	zw := zip.NewWriter(w)
	dir := &zip.FileHeader{Name: "extensions/", Method: zip.Store, Modified: epoch}
	dir.SetMode(0o755 | 0o20000000000) // a directory
	if _, err := zw.CreateHeader(dir); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	fh := &zip.FileHeader{Name: "extensions/" + name, Method: zip.Deflate, Modified: epoch}
	fh.SetMode(0o755) // Lambda runs files in /opt/extensions: they must be executable
	f, err := zw.CreateHeader(fh)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	if _, err := f.Write(binary); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	return nil
}
