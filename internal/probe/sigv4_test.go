package probe

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// An AWS_IAM function URL wants SigV4 for service lambda in its region, with
// the payload's hash: the request carries both.
func TestSignForAFunctionURL(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "https://abc.lambda-url.eu-west-1.on.aws/?instruments=5", nil)
	creds := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret", SessionToken: "token"}
	if err := sign(context.Background(), v4.NewSigner(), creds, req, "eu-west-1"); err != nil {
		t.Fatal(err)
	}
	auth := req.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") || !strings.Contains(auth, "/eu-west-1/lambda/aws4_request") ||
		req.Header.Get("X-Amz-Security-Token") != "token" || req.Header.Get("X-Amz-Content-Sha256") != emptySHA256 {
		t.Errorf("headers %v", req.Header)
	}
}
