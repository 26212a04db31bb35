package token

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

// Vectors is docs/token-vectors.json.
type Vectors struct {
	OrderFields    []string `json:"order_fields"`
	DecimalVectors []struct {
		Input     string `json:"input"`
		Canonical string `json:"canonical"`
		Error     bool   `json:"error"`
	} `json:"decimal_vectors"`
	SigningVectors []struct {
		Name             string `json:"name"`
		KeyID            string `json:"key_id"`
		SecretHex        string `json:"secret_hex"`
		Order            Fields `json:"order"`
		CanonicalBody    string `json:"canonical_body"`
		CanonicalBodyHex string `json:"canonical_body_hex"`
		BodyDigest       string `json:"body_digest"`
		IssuedAt         int64  `json:"issued_at"`
		Nonce            string `json:"nonce"`
		SigningInput     string `json:"signing_input"`
		Token            string `json:"token"`
	} `json:"signing_vectors"`
	VerificationKeyRing struct {
		Current  vectorKey   `json:"current"`
		Previous []vectorKey `json:"previous"`
	} `json:"verification_key_ring"`
	VerificationVectors []struct {
		Name             string  `json:"name"`
		Token            *string `json:"token"`
		CanonicalBodyHex string  `json:"canonical_body_hex"`
		Now              float64 `json:"now"`
		TTLSeconds       float64 `json:"ttl_seconds"`
		SkewSeconds      float64 `json:"skew_seconds"`
		ExpectedReason   string  `json:"expected_reason"`
	} `json:"verification_vectors"`
}

type vectorKey struct {
	KeyID     string `json:"key_id"`
	SecretHex string `json:"secret_hex"`
}

// Report is the outcome of CheckVectors.
type Report struct {
	Passed       int
	Failures     []string
	Decimal      int
	Signing      int
	Verification int
}

var derivedKeyID = regexp.MustCompile(`^k[0-9a-f]{8}$`)

// LoadVectors reads a vectors file.
func LoadVectors(path string) (*Vectors, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var vectors Vectors
	if err := json.Unmarshal(data, &vectors); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &vectors, nil
}

// CheckVectors holds this package to the test vectors:
//   - every decimal vector: the canonical form, or an error where one is expected;
//   - every signing vector: the canonical body (byte for byte, against both its text and
//     its hex), the body digest, the signing input and the token; the token verifies
//     with its own key; a key id of the form k + 8 hex is the one derived from the secret;
//   - every verification vector: the reason computed for the token, body and clock.
func CheckVectors(vectors *Vectors) Report {
	var report Report
	check := func(ok bool, label string, detail string, args ...interface{}) {
		if ok {
			report.Passed++
		} else {
			report.Failures = append(report.Failures, label+": "+fmt.Sprintf(detail, args...))
		}
	}

	check(fmt.Sprint(vectors.OrderFields) == fmt.Sprint(OrderFields), "order_fields", "vectors list %v", vectors.OrderFields)

	for _, vector := range vectors.DecimalVectors {
		report.Decimal++
		label := fmt.Sprintf("decimal %q", vector.Input)
		canonical, err := CanonicalDecimal(vector.Input)
		if vector.Error {
			_, isEncoding := err.(*EncodingError)
			check(isEncoding, label, "expected an error, got %q", canonical)
		} else {
			check(err == nil && canonical == vector.Canonical, label, "got %q (%v), expected %q", canonical, err, vector.Canonical)
		}
	}

	for _, vector := range vectors.SigningVectors {
		report.Signing++
		label := "signing " + vector.Name
		secret, err := hex.DecodeString(vector.SecretHex)
		if err != nil {
			check(false, label+" secret", "%v", err)
			continue
		}
		body, err := CanonicalOrderBody(vector.Order)
		if err != nil {
			check(false, label+" body", "error %v", err)
			continue
		}
		wantHex, _ := hex.DecodeString(vector.CanonicalBodyHex)
		check(bytes.Equal(body, wantHex), label+" body (hex)", "got %x", body)
		check(bytes.Equal(body, []byte(vector.CanonicalBody)), label+" body (text)", "got %q", body)
		digest := BodyDigest(body)
		check(digest == vector.BodyDigest, label+" digest", "got %s", digest)
		input := SigningInput(vector.KeyID, vector.IssuedAt, vector.Nonce, digest)
		check(input == vector.SigningInput, label+" signing input", "got %s", input)
		signed, err := Sign(vector.KeyID, secret, body, vector.IssuedAt, vector.Nonce)
		check(err == nil && signed == vector.Token, label+" token", "got %s (%v)", signed, err)
		verified := Verify(map[string][]byte{vector.KeyID: secret}, &vector.Token, body,
			float64(vector.IssuedAt), DefaultTTLSeconds, DefaultSkewSeconds)
		check(verified.OK() && verified.KeyID == vector.KeyID && verified.Nonce == vector.Nonce &&
			verified.IssuedAt == vector.IssuedAt, label+" verifies", "reason %s", verified.Reason)
		if derivedKeyID.MatchString(vector.KeyID) {
			check(DeriveKeyID(secret) == vector.KeyID, label+" derived key id", "got %s", DeriveKeyID(secret))
		}
	}

	keyRing := map[string][]byte{}
	for _, key := range append([]vectorKey{vectors.VerificationKeyRing.Current}, vectors.VerificationKeyRing.Previous...) {
		secret, err := hex.DecodeString(key.SecretHex)
		check(err == nil, "key ring "+key.KeyID, "%v", err)
		keyRing[key.KeyID] = secret
	}
	for _, vector := range vectors.VerificationVectors {
		report.Verification++
		body, err := hex.DecodeString(vector.CanonicalBodyHex)
		if err != nil {
			check(false, "verification "+vector.Name, "body: %v", err)
			continue
		}
		result := Verify(keyRing, vector.Token, body, vector.Now, vector.TTLSeconds, vector.SkewSeconds)
		check(result.Reason == vector.ExpectedReason, "verification "+vector.Name,
			"got %s, expected %s", result.Reason, vector.ExpectedReason)
	}
	return report
}
