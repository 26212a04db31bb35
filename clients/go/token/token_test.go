package token

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// vectorsPath is $TESSERA_TOKEN_VECTORS, or the repository's docs/token-vectors.json
// (go test runs in the package's directory, clients/go/token; ".." is resolved by the
// file system, so the path holds through clients/go/go.sh's symlink).
func vectorsPath(t *testing.T) string {
	if path := os.Getenv("TESSERA_TOKEN_VECTORS"); path != "" {
		return path
	}
	return "../../../docs/token-vectors.json"
}

func TestEveryVector(t *testing.T) {
	vectors, err := LoadVectors(vectorsPath(t))
	if err != nil {
		t.Fatal(err)
	}
	report := CheckVectors(vectors)
	for _, failure := range report.Failures {
		t.Error(failure)
	}
	if report.Decimal == 0 || report.Signing == 0 || report.Verification == 0 {
		t.Fatalf("vectors missing: %+v", report)
	}
}

func TestCanonicalDecimal(t *testing.T) {
	for input, want := range map[string]string{"1.50": "1.5", "-0.00": "0", ".5": "0.5", "+7": "7", "5.": "5"} {
		if got, err := CanonicalDecimal(input); err != nil || got != want {
			t.Errorf("CanonicalDecimal(%q) = %q, %v; want %q", input, got, err, want)
		}
	}
	var encoding *EncodingError
	if _, err := CanonicalDecimal("1e5"); !errors.As(err, &encoding) {
		t.Errorf("1e5: want an EncodingError, got %v", err)
	}
}

func TestBodyRefusesWhatHasNoEncoding(t *testing.T) {
	order := Fields{}
	for _, name := range OrderFields {
		order[name] = "x"
	}
	order["quantity"], order["price"], order["stop_price"], order["leverage"] = "1", nil, nil, nil
	order["reduce_only"], order["post_only"] = false, "true"
	order["close_position"], order["price_protect"] = false, false
	order["activation_price"], order["callback_rate"], order["quote_order_qty"] = nil, "0.5", nil
	if _, err := CanonicalOrderBody(order); err != nil {
		t.Fatalf("valid order refused: %v", err)
	}
	for field, value := range map[string]interface{}{"symbol": "BTC\nUSDT", "quantity": "1e5", "reduce_only": "yes"} {
		changed := Fields{}
		for k, v := range order {
			changed[k] = v
		}
		changed[field] = value
		if _, err := CanonicalOrderBody(changed); err == nil || !strings.HasPrefix(err.Error(), field+":") {
			t.Errorf("%s=%q: want an error naming the field, got %v", field, value, err)
		}
	}
	delete(order, "account")
	if _, err := CanonicalOrderBody(order); err == nil || err.Error() != "account: missing" {
		t.Errorf("missing account: got %v", err)
	}
}

func TestTamperedBodyIsFieldsChanged(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	signed, err := Sign("k1", secret, []byte("body"), 1000, "00112233445566778899aabbccddeeff")
	if err != nil {
		t.Fatal(err)
	}
	ring := map[string][]byte{"k1": secret}
	if r := Verify(ring, &signed, []byte("body"), 1000, DefaultTTLSeconds, DefaultSkewSeconds); !r.OK() {
		t.Fatalf("own token: %s", r.Reason)
	}
	if r := Verify(ring, &signed, []byte("other"), 1000, DefaultTTLSeconds, DefaultSkewSeconds); r.Reason != FieldsChanged {
		t.Errorf("other body: %s", r.Reason)
	}
	if r := Verify(ring, nil, []byte("body"), 1000, DefaultTTLSeconds, DefaultSkewSeconds); r.Reason != Missing {
		t.Errorf("nil token: %s", r.Reason)
	}
}
