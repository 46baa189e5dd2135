package extapi

import "testing"

func TestDecodeEvent(t *testing.T) {
	ev, err := DecodeEvent([]byte(`{"eventType":"INVOKE","deadlineMs":1732300003000,"requestId":"r1","invokedFunctionArn":"arn:aws:lambda:us-east-1:1:function:f","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}}`))
	if err != nil || ev.RequestID != "r1" || ev.DeadlineMs != 1732300003000 || ev.Tracing.Value == "" {
		t.Errorf("%+v %v", ev, err)
	}
	ev, err = DecodeEvent([]byte(`{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1}`))
	if err != nil || ev.ShutdownReason != "spindown" {
		t.Errorf("%+v %v", ev, err)
	}
	for _, bad := range []string{``, `null`, `[]`, `{"eventType":"INVOKE"}`, `{"eventType":"RESTART"}`, `{"eventType":7}`} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{`{"eventType":"INVOKE","deadlineMs":1,"requestId":"r"}`, `{"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":2}`, `{`, `{"eventType":"INVOKE","requestId":""}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := DecodeEvent(b)
		if err == nil && ev.EventType != Invoke && ev.EventType != Shutdown {
			t.Fatalf("accepted event type %q", ev.EventType)
		}
		if err == nil && ev.EventType == Invoke && ev.RequestID == "" {
			t.Fatal("accepted INVOKE without request id")
		}
	})
}
