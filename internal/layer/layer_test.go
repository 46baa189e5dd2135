package layer

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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

// Two builds of the extension with the release flags, in different
// directories, give the same layer zip: no paths, build ids or VCS stamps leak
// into the binary, and the zip has fixed times and order.
func TestReproducibleLayer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the extension twice")
	}
	var zips [2][]byte
	for i := range zips {
		out := filepath.Join(t.TempDir(), "streamlens")
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, "./cmd/streamlens")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, msg)
		}
		bin, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		if err := Write(&z, "streamlens", bin); err != nil {
			t.Fatal(err)
		}
		zips[i] = z.Bytes()
	}
	if !bytes.Equal(zips[0], zips[1]) {
		t.Errorf("two builds gave different layer zips (%d vs %d bytes)", len(zips[0]), len(zips[1]))
	}
}
