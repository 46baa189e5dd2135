package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
)

// SigV4 returns a Config.Sign that signs requests to an AWS_IAM function URL
// (service lambda, in region) with the default credential chain: a
// developer's profile for the command, the function's role in the canary.
// The credentials are retrieved per request, so that a role's rotating
// session credentials are used fresh.
func SigV4(ctx context.Context, region string) (func(*http.Request) error, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	signer := v4.NewSigner()
	return func(req *http.Request) error {
		creds, err := cfg.Credentials.Retrieve(req.Context())
		if err != nil {
			return fmt.Errorf("credentials: %w", err)
		}
		return sign(req.Context(), signer, creds, req, region)
	}, nil
}

// emptySHA256 is the payload hash of a request without a body.
var emptySHA256 = func() string { s := sha256.Sum256(nil); return hex.EncodeToString(s[:]) }()

func sign(ctx context.Context, s *v4.Signer, creds aws.Credentials, req *http.Request, region string) error {
	// Function URLs want the payload's hash in a header of its own, not
	// only in the signature.
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	if err := s.SignHTTP(ctx, creds, req, emptySHA256, "lambda", region, time.Now()); err != nil {
		return fmt.Errorf("sigv4: %w", err)
	}
	return nil
}
