// Package token is the Tessera risk token, format v2, written from docs/token.md alone
// (not a port of the Python code): canonical decimals, the canonical order body, and
// HMAC-SHA256 tokens, with the standard library only.
//
//	body, err := token.CanonicalOrderBody(fields)
//	t, err := token.Sign(keyID, secret, body, issuedAt, nonce)
//	result := token.Verify(keyRing, &t, body, now, token.DefaultTTLSeconds, token.DefaultSkewSeconds)
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	orderMagic       = "tessera.order.v2"
	version          = "v2"
	maxDecimalDigits = 40
	maxTokenLength   = 256
	// DefaultTTLSeconds is how long a token is valid after it was issued (§4).
	DefaultTTLSeconds = 300
	// DefaultSkewSeconds is the clock-skew allowance on both ends of the window (§4).
	DefaultSkewSeconds = 5
)

// Reason codes of Verify (§4), as the services report them.
const (
	OK            = "OK"
	Missing       = "TOKEN_MISSING"
	Malformed     = "TOKEN_MALFORMED"
	UnknownKey    = "TOKEN_UNKNOWN_KEY"
	BadSignature  = "TOKEN_BAD_SIGNATURE"
	NotYetValid   = "TOKEN_NOT_YET_VALID"
	Expired       = "TOKEN_EXPIRED"
	FieldsChanged = "TOKEN_FIELDS_CHANGED"
)

type kind int

const (
	text kind = iota
	decimal
	boolean
)

// OrderFields are the 21 signed fields, in body order (§1).
var OrderFields = []string{
	"order_id", "client_order_id", "account", "venue", "market_type", "symbol", "side", "order_type",
	"quantity", "price", "stop_price", "time_in_force", "reduce_only", "post_only", "leverage",
	"close_position", "working_type", "price_protect", "activation_price", "callback_rate", "quote_order_qty",
}

var fieldKinds = map[string]kind{
	"quantity": decimal, "price": decimal, "stop_price": decimal, "leverage": decimal,
	"activation_price": decimal, "callback_rate": decimal, "quote_order_qty": decimal,
	"reduce_only": boolean, "post_only": boolean, "close_position": boolean, "price_protect": boolean,
}

// The only fields that may be missing from the order (they then encode as empty).
var optionalFields = map[string]bool{
	"price": true, "stop_price": true, "activation_price": true, "callback_rate": true, "quote_order_qty": true,
}

var (
	decimalSyntax = regexp.MustCompile(`^([+-]?)(?:([0-9]+)(?:\.([0-9]*))?|\.([0-9]+))$`)
	keyIDSyntax   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	issuedSyntax  = regexp.MustCompile(`^(?:0|[1-9][0-9]{0,11})$`)
	nonceSyntax   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	// 32 bytes in unpadded base64url: 43 characters, the last carrying 4 bits with the two
	// unused low bits zero, so each value has exactly one spelling.
	digestSyntax = regexp.MustCompile(`^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$`)
)

// EncodingError is a value that has no canonical encoding; the message names the field
// or the value.
type EncodingError struct{ Message string }

func (e *EncodingError) Error() string { return e.Message }

func encodingError(format string, args ...interface{}) error {
	return &EncodingError{Message: fmt.Sprintf(format, args...)}
}

// CanonicalDecimal is the canonical form of a plain decimal (§2): no sign for zero or
// positive values, no leading zeros in the integer part, no trailing zeros in the
// fraction, at most 40 significant digits.
func CanonicalDecimal(value string) (string, error) {
	match := decimalSyntax.FindStringSubmatch(value)
	if match == nil {
		return "", encodingError("not a plain decimal: %q", value)
	}
	negative := match[1] == "-"
	integer := strings.TrimLeft(match[2], "0")
	fraction := match[3]
	if match[4] != "" {
		fraction = match[4]
	}
	fraction = strings.TrimRight(fraction, "0")
	if len(integer)+len(fraction) > maxDecimalDigits {
		return "", encodingError("more than %d significant digits: %s", maxDecimalDigits, value)
	}
	if integer == "" && fraction == "" {
		return "0", nil
	}
	var out strings.Builder
	if negative {
		out.WriteByte('-')
	}
	if integer == "" {
		integer = "0"
	}
	out.WriteString(integer)
	if fraction != "" {
		out.WriteByte('.')
		out.WriteString(fraction)
	}
	return out.String(), nil
}

// Fields is an order as the token sees it: the field names of §1 (snake_case) to a
// string, a bool (reduce_only, post_only; or the strings "true" / "false") or nil (an
// absent decimal). Keys not in the table are ignored.
type Fields map[string]interface{}

func netstring(value []byte) []byte {
	return append(append([]byte(strconv.Itoa(len(value))+":"), value...), ',')
}

func encodeText(name string, value interface{}) ([]byte, error) {
	s, ok := value.(string)
	if !ok {
		return nil, encodingError("%s: must be a string, got %T", name, value)
	}
	if !utf8.ValidString(s) {
		return nil, encodingError("%s: not valid UTF-8", name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return nil, encodingError("%s: contains a control character", name)
		}
	}
	return []byte(s), nil
}

func encodeDecimal(name string, value interface{}) ([]byte, error) {
	if value == nil {
		return nil, nil
	}
	s, ok := value.(string)
	if !ok {
		return nil, encodingError("%s: a decimal must be a string or null, got %T", name, value)
	}
	if s == "" {
		return nil, nil
	}
	canonical, err := CanonicalDecimal(s)
	if err != nil {
		return nil, encodingError("%s: %s", name, err)
	}
	return []byte(canonical), nil
}

func encodeBool(name string, value interface{}) ([]byte, error) {
	switch v := value.(type) {
	case bool:
		return []byte(strconv.FormatBool(v)), nil
	case string:
		if v == "true" || v == "false" {
			return []byte(v), nil
		}
	}
	return nil, encodingError("%s: must be true or false, got %v", name, value)
}

// CanonicalOrderBody is the body the token's digest covers (§1).
func CanonicalOrderBody(order Fields) ([]byte, error) {
	body := []byte(orderMagic)
	for _, name := range OrderFields {
		value, present := order[name]
		if !present && !optionalFields[name] {
			return nil, encodingError("%s: missing", name)
		}
		var encoded []byte
		var err error
		switch fieldKinds[name] {
		case decimal:
			encoded, err = encodeDecimal(name, value)
		case boolean:
			encoded, err = encodeBool(name, value)
		default:
			encoded, err = encodeText(name, value)
		}
		if err != nil {
			return nil, err
		}
		body = append(body, netstring(encoded)...)
	}
	return body, nil
}

func b64(data []byte) string { return base64.RawURLEncoding.EncodeToString(data) }

// BodyDigest is base64url(SHA-256(body)), 43 characters.
func BodyDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return b64(sum[:])
}

// SigningInput is what the signature covers (§3).
func SigningInput(keyID string, issuedAt int64, nonce, digest string) string {
	return fmt.Sprintf("%s.%s.%d.%s.%s", version, keyID, issuedAt, nonce, digest)
}

func mac(secret []byte, input string) string {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(input))
	return b64(h.Sum(nil))
}

// DeriveKeyID is the default key id of a secret: "k" and the first 8 hex digits of
// SHA-256(secret) (§5).
func DeriveKeyID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "k" + hex.EncodeToString(sum[:])[:8]
}

// NewNonce is 16 random bytes from the CSPRNG as 32 lowercase hex digits.
func NewNonce() (string, error) {
	buf := make([]byte, 16)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return hex.EncodeToString(buf), nil
}

// Sign makes a token for a body.
func Sign(keyID string, secret, body []byte, issuedAt int64, nonce string) (string, error) {
	if !keyIDSyntax.MatchString(keyID) {
		return "", fmt.Errorf("invalid key id %q", keyID)
	}
	if !issuedSyntax.MatchString(strconv.FormatInt(issuedAt, 10)) {
		return "", fmt.Errorf("invalid issued-at %d", issuedAt)
	}
	if !nonceSyntax.MatchString(nonce) {
		return "", fmt.Errorf("the nonce must be 32 lowercase hex digits")
	}
	input := SigningInput(keyID, issuedAt, nonce, BodyDigest(body))
	return input + "." + mac(secret, input), nil
}

// Parsed is a token split into its parts (signature not checked).
type Parsed struct {
	KeyID        string
	IssuedAt     int64
	Nonce        string
	Digest       string
	Signature    string
	SigningInput string
}

// Parse splits a token without checking its signature; ok is false when it does not
// match §3 exactly (or is longer than 256 characters, or not ASCII).
func Parse(t string) (Parsed, bool) {
	if len(t) > maxTokenLength {
		return Parsed{}, false
	}
	for i := 0; i < len(t); i++ {
		if t[i] >= 0x80 {
			return Parsed{}, false
		}
	}
	parts := strings.Split(t, ".")
	if len(parts) != 6 || parts[0] != version || !keyIDSyntax.MatchString(parts[1]) ||
		!issuedSyntax.MatchString(parts[2]) || !nonceSyntax.MatchString(parts[3]) ||
		!digestSyntax.MatchString(parts[4]) || !digestSyntax.MatchString(parts[5]) {
		return Parsed{}, false
	}
	issuedAt, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return Parsed{}, false
	}
	return Parsed{
		KeyID: parts[1], IssuedAt: issuedAt, Nonce: parts[3], Digest: parts[4], Signature: parts[5],
		SigningInput: strings.Join(parts[:5], "."),
	}, true
}

// Result is the outcome of Verify; KeyID, IssuedAt and Nonce are set once the token
// parsed.
type Result struct {
	Reason   string
	KeyID    string
	IssuedAt int64
	Nonce    string
}

// OK says whether the token verified.
func (r Result) OK() bool { return r.Reason == OK }

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// Verify checks a token (§4) against a key ring (key id to secret) and the body the
// verifier computed from the order it received, at now (Unix seconds). A nil token is
// an absent one. The checks run in the order of §4; the first that fails is the reason.
func Verify(keyRing map[string][]byte, t *string, body []byte, now, ttl, skew float64) Result {
	if t == nil || *t == "" {
		return Result{Reason: Missing}
	}
	parsed, ok := Parse(*t)
	if !ok {
		return Result{Reason: Malformed}
	}
	result := Result{KeyID: parsed.KeyID, IssuedAt: parsed.IssuedAt, Nonce: parsed.Nonce}
	secret, known := keyRing[parsed.KeyID]
	switch {
	case !known:
		result.Reason = UnknownKey
	case !equal(mac(secret, parsed.SigningInput), parsed.Signature):
		result.Reason = BadSignature
	case float64(parsed.IssuedAt) > now+skew:
		result.Reason = NotYetValid
	case now >= float64(parsed.IssuedAt)+ttl+skew:
		result.Reason = Expired
	case !equal(BodyDigest(body), parsed.Digest):
		result.Reason = FieldsChanged
	default:
		result.Reason = OK
	}
	return result
}
