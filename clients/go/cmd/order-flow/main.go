// Command order-flow runs a complete order flow against a running Tessera stack, from
// Go, with the stubs generated from proto/ (clients/go/gen):
//
//	order-flow [-risk HOST:PORT] [-oms HOST:PORT] [-symbol BTCUSDT] [-quantity 0.01]
//	           [-account ACCOUNT] [-venue aster] [-timeout SECONDS]
//
// Addresses default to TESSERA_RISK_ADDRESS / TESSERA_OMS_ADDRESS, then
// 127.0.0.1:50051 / 127.0.0.1:50052. The stack must run in paper mode (market orders
// fill at once). The same flow as clients/node/order-flow.js:
//
//  1. CreateOrderManager (a batch for this run)
//  2. RiskService.ValidateOrder of a market order: APPROVED with a risk token whose
//     structure is docs/token.md's and whose body digest is SHA-256 of the canonical
//     body computed here from the returned order (the signature needs the secret, which
//     a client never has)
//  3. SubmitOrder with the quantity changed: PERMISSION_DENIED, TOKEN_FIELDS_CHANGED,
//     with the ErrorInfo (domain "tessera") of grpc-status-details-bin
//  4. SubmitOrder with a malformed quantity: INVALID_ARGUMENT naming quantity
//  5. SubmitOrder as approved (the refusals did not use the token up): FILLED, one trade
//  6. GetOrder: events PENDING, APPROVED, SUBMITTED, FILLED, and the trade
//  7. ListTrades for the order: the trade
//  8. StreamOrderEvents (history_only) for the order: the same four events
//
// Prints one line per check and "N passed, M failed"; exits 1 when any expectation
// fails, 2 when the flow cannot run at all (stack unreachable, unexpected error).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	commonv1 "tessera/clients/go/gen/tessera/common/v1"
	omsv1 "tessera/clients/go/gen/tessera/oms/v1"
	riskv1 "tessera/clients/go/gen/tessera/risk/v1"
	"tessera/clients/go/tessera"
	"tessera/clients/go/token"
)

var expectedEvents = []string{"PENDING", "APPROVED", "SUBMITTED", "FILLED"}

type options struct {
	risk, oms, symbol, quantity, account, venue string
	tokenFile                                   string
	timeout                                     time.Duration
}

type checks struct{ passed, failed int }

// expect records one expectation and says whether it held.
func (c *checks) expect(ok bool, label string, detail string, args ...interface{}) bool {
	if ok {
		c.passed++
		fmt.Printf("ok   %s\n", label)
	} else {
		c.failed++
		suffix := ""
		if detail != "" {
			suffix = " (" + fmt.Sprintf(detail, args...) + ")"
		}
		fmt.Printf("FAIL %s%s\n", label, suffix)
	}
	return ok
}

// expectRefusal expects err to be a gRPC status with code; returns its refusal when it is.
func (c *checks) expectRefusal(err error, code codes.Code, label string) (tessera.Refusal, bool) {
	if err == nil {
		c.expect(false, label, "unexpected success")
		return tessera.Refusal{}, false
	}
	refusal, ok := tessera.RefusalOf(err)
	if !ok {
		c.expect(false, label, "not a gRPC status: %v", err)
		return tessera.Refusal{}, false
	}
	held := c.expect(refusal.Code == code, label+": "+tessera.StatusName(refusal.Code),
		"expected %s: %s", tessera.StatusName(code), refusal.Message)
	return refusal, held
}

func env(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func randomHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf)
}

func statusOf(order *commonv1.Order) string { return tessera.EnumValue(order.GetStatus()) }

func call(parent context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, timeout)
}

func run(ctx context.Context, o options) (*checks, error) {
	c := &checks{}
	fmt.Printf("Tessera order flow from Go %s: risk %s, oms %s\n", runtime.Version(), o.risk, o.oms)
	dialCtx, cancel := call(ctx, o.timeout)
	dialOptions := []grpc.DialOption{grpc.WithInsecure()}
	if o.tokenFile != "" {
		token, err := os.ReadFile(o.tokenFile)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("cannot read the token file: %w", err)
		}
		dialOptions = append(dialOptions, tessera.WithBearerToken(string(token)))
	}
	conns, err := tessera.Dial(dialCtx, tessera.Addresses{Risk: o.risk, OMS: o.oms}, dialOptions...)
	cancel()
	if err != nil {
		return nil, err
	}
	defer conns.Close()

	// 1. An order manager (batch) for this run.
	batchID := "go-flow-" + randomHex(8)
	metadata, err := structpb.NewStruct(map[string]interface{}{"source": "clients/go/cmd/order-flow"})
	if err != nil {
		return nil, err
	}
	rpc, cancel := call(ctx, o.timeout)
	created, err := conns.OMS.CreateOrderManager(rpc, &omsv1.CreateOrderManagerRequest{
		UniqueIdentifier: batchID, TargetAccountUid: o.account, Metadata: metadata,
	})
	cancel()
	if err != nil {
		return nil, err
	}
	c.expect(created.GetCreated() && created.GetOrderManager().GetUniqueIdentifier() == batchID,
		fmt.Sprintf("CreateOrderManager: %s (status %s)", batchID, created.GetOrderManager().GetStatus()), "%v", created)

	// 2. Risk approves a market order and signs it.
	intent := &commonv1.OrderIntent{
		Account: o.account, Venue: o.venue, MarketType: commonv1.MarketType_MARKET_TYPE_FUTURES, Symbol: o.symbol,
		Side: commonv1.Side_SIDE_BUY, OrderType: commonv1.OrderType_ORDER_TYPE_MARKET, Quantity: o.quantity,
		TimeInForce: commonv1.TimeInForce_TIME_IN_FORCE_GTC, OrderManagerId: batchID,
	}
	rpc, cancel = call(ctx, o.timeout)
	validated, err := conns.Risk.ValidateOrder(rpc, &riskv1.ValidateOrderRequest{Order: intent})
	cancel()
	if err != nil {
		return nil, err
	}
	order, riskToken := validated.GetOrder(), validated.GetRiskToken()
	if !c.expect(statusOf(order) == "APPROVED" && riskToken != "",
		fmt.Sprintf("ValidateOrder: %s %s (%s %s %s)", statusOf(order), order.GetOrderId(),
			tessera.EnumValue(order.GetSide()), order.GetQuantity(), order.GetSymbol()),
		"%v", validated.GetViolations()) {
		return c, nil
	}
	canonical, err := token.CanonicalDecimal(o.quantity)
	c.expect(err == nil && order.GetQuantity() == canonical, "the order's quantity is canonical: "+order.GetQuantity(), "%v", err)

	// The token: its structure per docs/token.md, and its digest binds this very order.
	parsed, wellFormed := token.Parse(riskToken)
	c.expect(wellFormed, fmt.Sprintf("risk token is well-formed v1 (%d chars)", len(riskToken)), "")
	if wellFormed {
		age := float64(time.Now().UnixNano())/1e9 - float64(parsed.IssuedAt)
		c.expect(math.Abs(age) < token.DefaultTTLSeconds,
			fmt.Sprintf("risk token: key id %s, issued %.1f s ago, nonce %s", parsed.KeyID, age, parsed.Nonce), "")
		fields, err := tessera.TokenFields(order)
		var digest string
		if err == nil {
			var body []byte
			if body, err = token.CanonicalOrderBody(fields); err == nil {
				digest = token.BodyDigest(body)
			}
		}
		c.expect(err == nil && digest == parsed.Digest,
			"risk token body digest = base64url(SHA-256(canonical body)) computed here: "+digest,
			"token carries %s (%v)", parsed.Digest, err)
	}

	// 3. A tampered quantity is refused; 4. so is a malformed one. Neither uses the token up.
	tampered := proto.Clone(order).(*commonv1.Order)
	tampered.Quantity = "2"
	if canonical == "2" {
		tampered.Quantity = "3"
	}
	rpc, cancel = call(ctx, o.timeout)
	_, err = conns.OMS.SubmitOrder(rpc, &omsv1.SubmitOrderRequest{Order: tampered, RiskToken: riskToken})
	cancel()
	if refusal, ok := c.expectRefusal(err, codes.PermissionDenied, "SubmitOrder with quantity "+tampered.Quantity); ok {
		c.expect(strings.HasPrefix(refusal.Message, "TOKEN_FIELDS_CHANGED"), "  message: "+refusal.Message, "")
		c.expect(refusal.Domain == tessera.ErrorDomain && refusal.Reason == "TOKEN_FIELDS_CHANGED",
			fmt.Sprintf("  ErrorInfo (grpc-status-details-bin): domain %s, reason %s", refusal.Domain, refusal.Reason), "")
	}
	malformed := proto.Clone(order).(*commonv1.Order)
	malformed.Quantity = "1e5"
	rpc, cancel = call(ctx, o.timeout)
	_, err = conns.OMS.SubmitOrder(rpc, &omsv1.SubmitOrderRequest{Order: malformed, RiskToken: riskToken})
	cancel()
	if refusal, ok := c.expectRefusal(err, codes.InvalidArgument, "SubmitOrder with quantity 1e5"); ok {
		c.expect(strings.Contains(refusal.Message, "quantity"), "  message: "+refusal.Message, "")
	}

	// 5. Submitted as approved: filled on paper, with its trade.
	rpc, cancel = call(ctx, o.timeout)
	submitted, err := conns.OMS.SubmitOrder(rpc, &omsv1.SubmitOrderRequest{Order: order, RiskToken: riskToken})
	cancel()
	if err != nil {
		return nil, err
	}
	s := submitted.GetOrder()
	c.expect(statusOf(s) == "FILLED" && s.GetFilledQuantity() == order.GetQuantity(),
		fmt.Sprintf("SubmitOrder: %s %s @ %s", statusOf(s), s.GetFilledQuantity(), s.GetAverageFillPrice()), "%v", s)
	trades := submitted.GetTrades()
	c.expect(len(trades) == 1, fmt.Sprintf("SubmitOrder answered %d trade(s)", len(trades)), "")
	var trade *commonv1.Trade
	if len(trades) > 0 {
		trade = trades[0]
		c.expect(trade.GetOrderId() == order.GetOrderId() && trade.GetQuantity() == order.GetQuantity(),
			fmt.Sprintf("  trade %s: %s @ %s, commission %s %s", trade.GetTradeId(), trade.GetQuantity(),
				trade.GetPrice(), trade.GetCommission(), trade.GetCommissionAsset()), "")
	}

	// 6. GetOrder: the persisted lifecycle.
	rpc, cancel = call(ctx, o.timeout)
	got, err := conns.OMS.GetOrder(rpc, &omsv1.GetOrderRequest{OrderId: order.GetOrderId()})
	cancel()
	if err != nil {
		return nil, err
	}
	var events []string
	sequential := true
	for i, event := range got.GetEvents() {
		events = append(events, tessera.EnumValue(event.GetToStatus()))
		sequential = sequential && event.GetSequence() == int64(i+1)
	}
	c.expect(strings.Join(events, " > ") == strings.Join(expectedEvents, " > "),
		"GetOrder events: "+strings.Join(events, " > "), "expected %s", strings.Join(expectedEvents, " > "))
	c.expect(sequential, "  event sequence 1..n", "")
	c.expect(len(got.GetTrades()) == 1 && (trade == nil || got.GetTrades()[0].GetTradeId() == trade.GetTradeId()),
		fmt.Sprintf("  GetOrder trades: %d", len(got.GetTrades())), "")

	// 7. ListTrades for the order.
	rpc, cancel = call(ctx, o.timeout)
	listed, err := conns.OMS.ListTrades(rpc, &omsv1.ListTradesRequest{OrderId: order.GetOrderId(), Account: o.account})
	cancel()
	if err != nil {
		return nil, err
	}
	found := false
	for _, t := range listed.GetTrades() {
		found = found || (trade != nil && t.GetTradeId() == trade.GetTradeId())
	}
	c.expect(found, fmt.Sprintf("ListTrades: %d trade(s) for the order", len(listed.GetTrades())), "")

	// 8. StreamOrderEvents: the stored history of the order, then the server ends the stream.
	rpc, cancel = call(ctx, o.timeout)
	defer cancel()
	stream, err := conns.OMS.StreamOrderEvents(rpc, &omsv1.StreamOrderEventsRequest{
		OrderId: order.GetOrderId(), Account: o.account, HistoryOnly: true,
	})
	if err != nil {
		return nil, err
	}
	var streamed []string
	ownWithCursor := true
	for {
		message, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		event := message.GetEvent()
		streamed = append(streamed, tessera.EnumValue(event.GetToStatus()))
		ownWithCursor = ownWithCursor && event.GetOrderId() == order.GetOrderId() && event.GetCursor() > 0
	}
	c.expect(strings.Join(streamed, " > ") == strings.Join(expectedEvents, " > "),
		"StreamOrderEvents (history_only): "+strings.Join(streamed, " > "), "expected %s", strings.Join(expectedEvents, " > "))
	c.expect(ownWithCursor, "  every streamed event is this order's, with a cursor", "")

	rpc, cancel = call(ctx, o.timeout)
	manager, err := conns.OMS.GetOrderManager(rpc, &omsv1.GetOrderManagerRequest{UniqueIdentifier: batchID})
	cancel()
	if err != nil {
		return nil, err
	}
	inBatch := false
	for _, o := range manager.GetOrders() {
		inBatch = inBatch || o.GetOrderId() == order.GetOrderId()
	}
	c.expect(inBatch, fmt.Sprintf("GetOrderManager: %d order(s), status %s", len(manager.GetOrders()),
		manager.GetOrderManager().GetStatus()), "")
	return c, nil
}

func main() {
	var o options
	var timeout float64
	flag.StringVar(&o.risk, "risk", env("TESSERA_RISK_ADDRESS", "127.0.0.1:50051"), "Risk service address")
	flag.StringVar(&o.oms, "oms", env("TESSERA_OMS_ADDRESS", "127.0.0.1:50052"), "OMS address")
	flag.StringVar(&o.symbol, "symbol", "BTCUSDT", "instrument")
	flag.StringVar(&o.quantity, "quantity", "0.01", "quantity of the market order")
	flag.StringVar(&o.account, "account", "go-"+randomHex(6), "account (default: a fresh one)")
	flag.StringVar(&o.venue, "venue", "aster", "venue")
	flag.StringVar(&o.tokenFile, "token-file", env("TESSERA_TOKEN_FILE", ""), "bearer token (JWT) naming the caller")
	flag.Float64Var(&timeout, "timeout", 15, "deadline of each call, seconds")
	flag.Parse()
	if flag.NArg() > 0 || !(timeout > 0) {
		fmt.Fprintln(os.Stderr, "order-flow: unexpected arguments, or a timeout that is not positive")
		flag.Usage()
		os.Exit(2)
	}
	o.timeout = time.Duration(timeout * float64(time.Second))

	// A last resort: never hang (every call has its own deadline already).
	ctx, cancel := context.WithTimeout(context.Background(), 4*o.timeout)
	defer cancel()
	c, err := run(ctx, o)
	if err != nil {
		if refusal, ok := tessera.RefusalOf(err); ok {
			err = fmt.Errorf("%s: %s", tessera.StatusName(refusal.Code), refusal.Message)
		}
		fmt.Fprintf(os.Stderr, "order-flow: the flow could not run: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("%d passed, %d failed\n", c.passed, c.failed)
	if c.failed > 0 {
		os.Exit(1)
	}
}
