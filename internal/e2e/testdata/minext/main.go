// Command minext is the smallest extension that does the lifecycle right:
// register, then event/next until SHUTDOWN. It is the cold-start baseline.
package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	base := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension/"
	req, _ := http.NewRequest(http.MethodPost, base+"register", bytes.NewReader([]byte(`{"events":["INVOKE","SHUTDOWN"]}`)))
	req.Header.Set("Lambda-Extension-Name", filepath.Base(os.Args[0]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		os.Exit(1)
	}
	resp.Body.Close()
	id := resp.Header.Get("Lambda-Extension-Identifier")
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			os.Exit(1)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if bytes.Contains(b.Bytes(), []byte(`"SHUTDOWN"`)) {
			return
		}
	}
}
