// Package otlpbody reads the body of an OTLP/HTTP request as its sender
// encoded it: gunzipped when Content-Encoding says gzip. The demo's receiver
// and the tests' collectors read what the extension sends with it.
package otlpbody

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
)

// Read returns r's body, decompressed, at most limit bytes of it (before
// and after decompression).
func Read(r *http.Request, limit int64) ([]byte, error) {
	var body io.Reader = io.LimitReader(r.Body, limit)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		body = io.LimitReader(zr, limit)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return b, nil
}
