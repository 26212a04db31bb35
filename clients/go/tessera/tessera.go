// Package tessera is a small Go client library for Tessera: gRPC connections to the
// services with the generated stubs (clients/go/gen), the reason code of a refused
// call, and the mapping from an Order message to the fields the risk token signs.
//
//	conns, err := tessera.Dial(ctx, tessera.Addresses{Risk: "127.0.0.1:50051", OMS: "127.0.0.1:50052"})
//	defer conns.Close()
//	answer, err := conns.Risk.ValidateOrder(ctx, &riskv1.ValidateOrderRequest{Order: intent})
//
// Every call should carry a deadline (context.WithTimeout): above 10 s for the OMS's
// SubmitOrder and cancels, which wait on the Exchange service (see proto/).
package tessera

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	commonv1 "tessera/clients/go/gen/tessera/common/v1"
	exchangev1 "tessera/clients/go/gen/tessera/exchange/v1"
	omsv1 "tessera/clients/go/gen/tessera/oms/v1"
	riskv1 "tessera/clients/go/gen/tessera/risk/v1"
	"tessera/clients/go/token"
)

// bearer sends a bearer token (a JWT naming the caller) with every call.
type bearer struct{ token string }

func (b bearer) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false: a plaintext deployment identifies callers by their
// tokens alone (use TLS wherever the network is not trusted).
func (b bearer) RequireTransportSecurity() bool { return false }

// WithBearerToken is the dial option that presents token (a JWT naming the caller, see
// docs/access.md) with every call: pass it to Dial with the transport's option.
func WithBearerToken(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearer{token: strings.TrimSpace(token)})
}

// ErrorDomain is the domain of every ErrorInfo Tessera sends.
const ErrorDomain = "tessera"

// Addresses of the services to connect to; an empty one is not dialled.
type Addresses struct {
	Risk     string
	OMS      string
	Exchange string
}

// Conns holds the connections and the service clients made on them.
type Conns struct {
	Risk     riskv1.RiskServiceClient
	OMS      omsv1.OrderManagementServiceClient
	Exchange exchangev1.ExchangeServiceClient
	conns    []*grpc.ClientConn
}

// Dial connects to the given addresses and waits until each connection is ready or ctx
// ends. Without options the connections are plaintext; pass
// grpc.WithTransportCredentials(...) for TLS, and WithBearerToken for the caller's identity
// (with grpc.WithInsecure() on a plaintext deployment).
func Dial(ctx context.Context, addresses Addresses, options ...grpc.DialOption) (*Conns, error) {
	if len(options) == 0 {
		options = []grpc.DialOption{grpc.WithInsecure()}
	}
	options = append(options, grpc.WithBlock())
	conns := &Conns{}
	dial := func(name, address string) (*grpc.ClientConn, error) {
		conn, err := grpc.DialContext(ctx, address, options...)
		if err != nil {
			conns.Close()
			return nil, fmt.Errorf("cannot connect to %s at %s: %w", name, address, err)
		}
		conns.conns = append(conns.conns, conn)
		return conn, nil
	}
	if addresses.Risk != "" {
		conn, err := dial("risk", addresses.Risk)
		if err != nil {
			return nil, err
		}
		conns.Risk = riskv1.NewRiskServiceClient(conn)
	}
	if addresses.OMS != "" {
		conn, err := dial("oms", addresses.OMS)
		if err != nil {
			return nil, err
		}
		conns.OMS = omsv1.NewOrderManagementServiceClient(conn)
	}
	if addresses.Exchange != "" {
		conn, err := dial("exchange", addresses.Exchange)
		if err != nil {
			return nil, err
		}
		conns.Exchange = exchangev1.NewExchangeServiceClient(conn)
	}
	return conns, nil
}

// Close closes every connection.
func (c *Conns) Close() {
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// Refusal is what a failed call says: its status code, its message and the ErrorInfo
// reason of the google.rpc.Status in the grpc-status-details-bin trailer (empty when
// the status carried none, as for a deadline the client itself set).
type Refusal struct {
	Code    codes.Code
	Message string
	Reason  string
	Domain  string
}

// RefusalOf decodes the error of a call; ok is false for an error that is not a gRPC
// status.
func RefusalOf(err error) (Refusal, bool) {
	s, ok := status.FromError(err)
	if !ok || err == nil {
		return Refusal{}, false
	}
	refusal := Refusal{Code: s.Code(), Message: s.Message()}
	for _, detail := range s.Details() {
		if info, isInfo := detail.(*errdetails.ErrorInfo); isInfo {
			refusal.Reason, refusal.Domain = info.GetReason(), info.GetDomain()
			break
		}
	}
	return refusal, true
}

// EnumValue is an enum value's name without its prefix ("ORDER_STATUS_FILLED" ->
// "FILLED"; the prefix is the enum's name, per the buf style guide).
func EnumValue(value protoreflect.Enum) string {
	name := string(value.Descriptor().Values().ByNumber(value.Number()).Name())
	prefix := toScreamingSnake(string(value.Descriptor().Name())) + "_"
	return strings.TrimPrefix(name, prefix)
}

func toScreamingSnake(camel string) string {
	var out strings.Builder
	for i, r := range camel {
		if i > 0 && r >= 'A' && r <= 'Z' {
			out.WriteByte('_')
		}
		out.WriteRune(r)
	}
	return strings.ToUpper(out.String())
}

// TokenFields are the fields the risk token signs, from an Order message: enum names
// without their prefix, decimals as the strings on the wire (empty means absent),
// booleans as they are. Feed the result to token.CanonicalOrderBody.
func TokenFields(order *commonv1.Order) (token.Fields, error) {
	enums := map[string]protoreflect.Enum{
		"market_type": order.GetMarketType(), "side": order.GetSide(),
		"order_type": order.GetOrderType(), "time_in_force": order.GetTimeInForce(),
	}
	fields := token.Fields{
		"order_id":         order.GetOrderId(),
		"client_order_id":  order.GetClientOrderId(),
		"account":          order.GetAccount(),
		"venue":            order.GetVenue(),
		"symbol":           order.GetSymbol(),
		"quantity":         order.GetQuantity(),
		"price":            optional(order.GetPrice()),
		"stop_price":       optional(order.GetStopPrice()),
		"reduce_only":      order.GetReduceOnly(),
		"post_only":        order.GetPostOnly(),
		"leverage":         optional(order.GetLeverage()),
		"close_position":   order.GetClosePosition(),
		"price_protect":    order.GetPriceProtect(),
		"activation_price": optional(order.GetActivationPrice()),
		"callback_rate":    optional(order.GetCallbackRate()),
		"quote_order_qty":  optional(order.GetQuoteOrderQty()),
		// Unspecified is a value of its own here: the empty string (nothing is sent to the venue).
		"working_type": "",
	}
	if order.GetWorkingType() != commonv1.WorkingType_WORKING_TYPE_UNSPECIFIED {
		fields["working_type"] = EnumValue(order.GetWorkingType())
	}
	for name, value := range enums {
		text := EnumValue(value)
		if text == "UNSPECIFIED" {
			return nil, fmt.Errorf("%s: UNSPECIFIED has no token encoding", name)
		}
		fields[name] = text
	}
	return fields, nil
}

func optional(value string) interface{} {
	if value == "" {
		return nil
	}
	return value
}

var statusNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
	codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// StatusName is a status code's canonical name ("PERMISSION_DENIED"), as
// ItemError.code and the other clients spell it.
func StatusName(code codes.Code) string {
	if name, ok := statusNames[code]; ok {
		return name
	}
	return code.String()
}
