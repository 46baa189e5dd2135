package layer

import (
	"archive/zip"
	"bytes"
	"io"
	"testing"
)

func TestLayoutAndReproducible(t *testing.T) {
	bin := bytes.Repeat([]byte("\x7fELF streamlens"), 1000)
	var a, b bytes.Buffer
	if err := Write(&a, "streamlens", bin); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, "streamlens", bin); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same input gave different zip bytes")
	}
	zr, err := zip.NewReader(bytes.NewReader(a.Bytes()), int64(a.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "extensions/streamlens" {
			if f.Mode().Perm() != 0o755 {
				t.Errorf("mode %v", f.Mode())
			}
			rc, _ := f.Open()
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, bin) {
				t.Error("binary changed in the zip")
			}
		}
	}
	if len(names) != 2 || names[0] != "extensions/" || names[1] != "extensions/streamlens" {
		t.Errorf("entries %v", names)
	}
}
